"""How-to 03: compose ModelNodes and a ConcatNode into a ModelGraph; build, inspect,
forward, mutate, freeze, serialize and checkpoint it.

The ModularML how-to "Create and Use a ModelGraph" on modjax. Model constructors are
modjax's JAX ``SequentialMLP``; ``backend="torch"`` arguments are accepted and ignored.
Run: ``python examples/howto/03_modelgraph.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from modjax import (
    ConcatNode,
    Experiment,
    FeatureSet,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
)
from modjax.graph import SampleData


def mlp(out: tuple[int, ...] | None, n_layers: int, hidden: int) -> SequentialMLP:
    return SequentialMLP(output_shape=out, n_layers=n_layers, hidden_dim=hidden)


def chain(fs_ref, *specs: tuple[str, tuple[int, ...], int]) -> list[ModelNode]:
    nodes, up = [], fs_ref
    for label, out, hidden in specs:
        up = ModelNode(label=label, model=mlp(out, 1, hidden), upstream_ref=up)
        nodes.append(up)
    return nodes


def wiring(mg: ModelGraph) -> None:
    for node in mg.nodes.values():
        print(f"  {node.label} <- {[r.node_label for r in node.get_upstream_refs()]}")


def main() -> dict:
    warnings.simplefilter("ignore")  # repeated labels are overwritten on purpose
    Experiment(label="create_modelgraph", registration_policy="overwrite")
    rng = np.random.default_rng(42)
    fs = FeatureSet.from_dict(label="SensorData",
                              data={"voltage": list(rng.standard_normal((500, 10))),
                                    "soh": list(rng.standard_normal((500, 1)))},
                              feature_keys="voltage", target_keys="soh")
    fs_ref = fs.reference(features="voltage", targets="soh")

    # -- creating
    node = ModelNode(label="SimpleMLP", model=mlp((1, 1), 2, 32), upstream_ref=fs_ref)
    mg = ModelGraph(nodes=[node], label="simple-graph",
                    optimizer=Optimizer(opt="adam", opt_kwargs={"lr": 1e-3}, backend="torch"))
    print(f"Label: {mg.label}  Nodes: {sorted(mg.node_labels)}  Built: {mg.is_built}")
    enc_a = ModelNode(label="EncoderA", model=mlp((1, 8), 1, 16), upstream_ref=fs_ref)
    enc_b = ModelNode(label="EncoderB", model=mlp((1, 4), 1, 16), upstream_ref=fs_ref)
    merge = ConcatNode(label="Merge", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                       concat_axis_targets="first")
    head = ModelNode(label="Head", model=mlp(None, 1, 8), upstream_ref=merge)
    branch = ModelGraph(nodes=[enc_a, enc_b, merge, head], optimizer=Optimizer(opt="adam"))
    by_label = ModelGraph(nodes=["EncoderA", "EncoderB", "Merge", "Head"],
                          optimizer=Optimizer(opt="adam"))
    print(f"Node labels: {sorted(by_label.node_labels)}")

    # -- building and properties
    branch.build()
    for n in branch.nodes.values():
        shapes = branch.node_shapes(n.label)
        print(f"  {n.label}: {shapes.input_shapes} -> {shapes.output_shape}")
    branch.build(force=True)
    print("Head nodes:", [n.label for n in branch.head_nodes.values()])
    print("Tail nodes:", [n.label for n in branch.tail_nodes.values()])

    # -- forward: ModularML's {(head node id, reference): SampleData} form returns
    # {node_id: SampleData}; modjax's own form keys arrays by head or FeatureSet label
    fsv = fs_ref.resolve()
    sample_data = SampleData(features=fsv.get_features(fmt="numpy"),
                             targets=fsv.get_targets(fmt="numpy"))
    inputs = {(n_id, ref): sample_data for n_id, node in branch.head_nodes.items()
              for ref in node.get_upstream_refs()}
    print(f"Number of input entries: {len(inputs)}")
    for n_id, out in branch.forward(inputs).items():
        print(f"  {branch.nodes[n_id].label}: features={tuple(out.features.shape)}")
    outputs = branch.forward({"SensorData": sample_data.features})
    partial = branch.forward({"SensorData": sample_data.features}, active_nodes=[merge])
    print("Executed nodes:", list(partial))

    # -- mutation
    n1, n2, n3 = chain(fs_ref, ("N1", (1, 8), 16), ("N2", (1, 4), 8), ("N3", (1, 1), 8))
    mg_rem = ModelGraph(nodes=[n1, n2, n3], optimizer=Optimizer(opt="adam"))
    mg_rem.remove_node("N2")
    print(f"After remove: {sorted(mg_rem.node_labels)}")
    a, b = chain(fs_ref, ("A", (1, 8), 16), ("B", (1, 1), 8))
    mg_ins = ModelGraph(nodes=[a, b], optimizer=Optimizer(opt="adam"))
    c = ModelNode(label="C", model=mlp((1, 4), 1, 16), upstream_ref=fs_ref)
    mg_ins.insert_node_between(new_node=c, upstream=a, downstream=b)
    wiring(mg_ins)

    # -- freezing
    branch.freeze(nodes=[enc_a])
    print(f"Frozen nodes: {[n.label for n in branch.frozen_nodes.values()]}")
    branch.unfreeze(nodes=[enc_a])
    branch.freeze()
    print(f"All frozen: {sorted(n.label for n in branch.frozen_nodes.values())}")
    branch.unfreeze()
    info = branch.get_optimizer_parameters()
    print(f"Contributing nodes: {len(info['contributing_nodes'])}")

    # -- serialization and checkpoints
    print(f"Number of node configs: {len(branch.get_config()['nodes'])}")
    state = branch.get_state()
    print(f"Number of node states: {len(state['nodes'])}  Is built: {state['is_built']}")
    with tempfile.TemporaryDirectory() as tmp:
        path = branch.save(Path(tmp) / "my_graph", overwrite=True)
        loaded = ModelGraph.load(path, overwrite=True)
        print(f"Loaded graph labels: {sorted(loaded.node_labels)}")
        ckpt = branch.save_checkpoint(Path(tmp) / "checkpoint_epoch5", overwrite=True,
                                      meta={"epoch": 5, "val_loss": 0.032})
        branch.restore_checkpoint(ckpt)
        print(f"Restored. Built: {branch.is_built}")
    return {"graph": branch, "outputs": outputs}


if __name__ == "__main__":
    main()
