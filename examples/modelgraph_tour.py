"""A tour of ModelGraph, following seed 000 ("How to: Create and Use a ModelGraph").

Run: ``python examples/modelgraph_tour.py``. Everything the notebook does with torch
models is done here with modjax's JAX models; mutations print the connectivity the seed
states (``A -> B -> C`` minus ``B`` is ``A -> C``, and so on).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np

from modjax import ConcatNode, FeatureSet, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.context import ExperimentContext


def connectivity(mg: ModelGraph) -> None:
    for node in mg.nodes.values():
        print(f"  {node.label} <- {node.upstream_labels}")


def section(title: str) -> None:
    print(f"\n== {title} ==")


def main() -> None:
    # overwrite policy: re-creating nodes with the same labels replaces them quietly
    ctx = ExperimentContext(registration_policy="overwrite")
    with ctx.activate():
        run()


def run() -> None:
    rng = np.random.default_rng(42)
    fs = FeatureSet.from_dict(
        label="SensorData",
        data={"voltage": list(rng.standard_normal((500, 10))),
              "soh": list(rng.standard_normal((500, 1)))},
        feature_keys="voltage",
        target_keys="soh",
    )
    fs_ref = fs.reference(features="voltage", targets="soh")
    print(f"FeatureSet {fs.label}: features {fs_ref.feature_shape}, targets {fs_ref.target_shape}")

    section("simple linear graph")
    node = ModelNode(label="SimpleMLP",
                     model=SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32),
                     upstream_ref=fs_ref)
    mg = ModelGraph(nodes=[node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3}),
                    label="simple-graph")
    print(f"Label:  {mg.label}")
    print(f"Nodes:  {mg.node_labels}")
    print(f"Built:  {mg.is_built}")

    section("multi-node chain")
    encoder = ModelNode(label="Encoder",
                        model=SequentialMLP(output_shape=(1, 8), n_layers=2, hidden_dim=32),
                        upstream_ref=fs_ref)
    regressor = ModelNode(label="Regressor",
                          model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=16),
                          upstream_ref=encoder)
    mg_chain = ModelGraph(nodes=[encoder, regressor], optimizer=Optimizer("adam"))
    print(f"Node labels: {mg_chain.node_labels}")
    print(mg_chain.visualize())

    section("branching graph")
    enc_a = ModelNode(label="EncoderA",
                      model=SequentialMLP(output_shape=(1, 8), n_layers=1, hidden_dim=16),
                      upstream_ref=fs_ref)
    enc_b = ModelNode(label="EncoderB",
                      model=SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=16),
                      upstream_ref=fs_ref)
    merge = ConcatNode(label="Merge", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                       concat_axis_targets="first")
    head = ModelNode(label="Head", model=SequentialMLP(n_layers=1, hidden_dim=8),
                     upstream_ref=merge)
    mg_branch = ModelGraph(nodes=[enc_a, enc_b, merge, head], optimizer=Optimizer("adam"))
    print(f"Node labels: {mg_branch.node_labels}")
    print(mg_branch.visualize())

    section("nodes by label")
    mg_by_label = ModelGraph(nodes=["EncoderA", "EncoderB", "Merge", "Head"],
                             optimizer=Optimizer("adam"))
    print(f"Node labels: {mg_by_label.node_labels}")

    section("without a global optimizer")
    node_with_opt = ModelNode(
        label="StageWiseMLP",
        model=SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32),
        upstream_ref=fs_ref, optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3}))
    mg_no_global = ModelGraph(nodes=[node_with_opt], optimizer=None)
    print(f"Global optimizer: {mg_no_global.backend}")

    section("build")
    mg_branch.build()
    print(f"Built: {mg_branch.is_built}")
    for n in mg_branch.nodes.values():
        in_shape = n.input_shape if hasattr(n, "input_shape") else list(n.input_shapes.values())
        print(f"  {n.label}: {in_shape} -> {n.output_shape}")
    print(mg_branch.visualize())  # edges now carry shapes
    mg_branch.build()  # no-op: already built
    mg_branch.build(force=True)
    print(f"Rebuilt: {mg_branch.is_built}")

    section("graph properties")
    print(f"Label:       {mg_branch.label}")
    print(f"Built:       {mg_branch.is_built}")
    print(f"Backend:     {mg_branch.backend}")
    print(f"Node labels: {mg_branch.node_labels}")
    print("Head nodes:", [n.label for n in mg_branch.head_nodes.values()])
    print("Tail nodes:", [n.label for n in mg_branch.tail_nodes.values()])
    for n_id, n in mg_branch.nodes.items():
        print(f"  {n.label}  (id={n_id[:8]}...)")
    print(mg_branch.summary())

    section("forward")
    x = np.asarray(fs.get_features(), dtype=np.float32)  # (500, 1, 10)
    inputs = {n.label: x for n in mg_branch.head_nodes.values()}
    print(f"Number of input entries: {len(inputs)}")
    outputs = mg_branch.forward(inputs)
    print("Outputs per node:")
    for label, out in outputs.items():
        print(f"  {label}: features={tuple(out.shape)}")

    section("active nodes")
    partial = mg_branch.forward(inputs, active_nodes=[merge])
    print("Executed nodes:", sorted(partial))

    section("add_node")
    base_node = ModelNode(label="Base",
                          model=SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=16),
                          upstream_ref=fs_ref)
    mg_mut = ModelGraph(nodes=[base_node], optimizer=Optimizer("adam"))
    print(f"Before: {mg_mut.node_labels}")
    added = ModelNode(label="Added",
                      model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=8),
                      upstream_ref=base_node)
    mg_mut.add_node(added)
    print(f"After:  {mg_mut.node_labels}")
    connectivity(mg_mut)
    print(mg_mut.visualize())

    section("remove_node")
    n1 = ModelNode(label="N1", model=SequentialMLP(output_shape=(1, 8), n_layers=1,
                                                   hidden_dim=16), upstream_ref=fs_ref)
    n2 = ModelNode(label="N2", model=SequentialMLP(output_shape=(1, 4), n_layers=1,
                                                   hidden_dim=8), upstream_ref=n1)
    n3 = ModelNode(label="N3", model=SequentialMLP(output_shape=(1, 1), n_layers=1,
                                                   hidden_dim=8), upstream_ref=n2)
    mg_rem = ModelGraph(nodes=[n1, n2, n3], optimizer=Optimizer("adam"))
    print(f"Before: {mg_rem.node_labels}")
    mg_rem.remove_node("N2")
    print(f"After:  {mg_rem.node_labels}")
    connectivity(mg_rem)
    print(mg_rem.visualize())

    section("replace_node")
    old_enc = ModelNode(label="OldEncoder", model=SequentialMLP(output_shape=(1, 8), n_layers=1,
                                                                hidden_dim=16), upstream_ref=fs_ref)
    reg = ModelNode(label="Reg", model=SequentialMLP(output_shape=(1, 1), n_layers=1,
                                                     hidden_dim=8), upstream_ref=old_enc)
    mg_rep = ModelGraph(nodes=[old_enc, reg], optimizer=Optimizer("adam"))
    print(f"Before: {mg_rep.node_labels}")
    new_enc = ModelNode(label="NewEncoder", model=SequentialMLP(output_shape=(1, 8), n_layers=3,
                                                                hidden_dim=64), upstream_ref=fs_ref)
    mg_rep.replace_node(old_node="OldEncoder", new_node=new_enc)
    print(f"After:  {mg_rep.node_labels}")
    connectivity(mg_rep)
    print(mg_rep.visualize())

    section("insert_node_between")
    a = ModelNode(label="A", model=SequentialMLP(output_shape=(1, 8), n_layers=1, hidden_dim=16),
                  upstream_ref=fs_ref)
    b = ModelNode(label="B", model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=8),
                  upstream_ref=a)
    mg_ins = ModelGraph(nodes=[a, b], optimizer=Optimizer("adam"))
    print(f"Before: {mg_ins.node_labels}")
    c = ModelNode(label="C", model=SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=16),
                  upstream_ref=fs_ref)  # rewired by the insert
    mg_ins.insert_node_between(new_node=c, upstream=a, downstream=b)
    print(f"After:  {mg_ins.node_labels}")
    connectivity(mg_ins)  # A -> C -> B
    print(mg_ins.visualize())

    section("insert_node_before")
    p = ModelNode(label="P", model=SequentialMLP(output_shape=(1, 8), n_layers=1, hidden_dim=16),
                  upstream_ref=fs_ref)
    q = ModelNode(label="Q", model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=8),
                  upstream_ref=p)
    mg_ib = ModelGraph(nodes=[p, q], optimizer=Optimizer("adam"))
    pre_q = ModelNode(label="PreQ", model=SequentialMLP(output_shape=(1, 4), n_layers=1,
                                                        hidden_dim=16), upstream_ref=fs_ref)
    mg_ib.insert_node_before(new_node=pre_q, downstream=q)
    print("After insert_node_before:")
    connectivity(mg_ib)  # PreQ takes over Q's inputs; Q reads only PreQ
    print(mg_ib.visualize())

    section("insert_node_after")
    post_p = ModelNode(label="PostP", model=SequentialMLP(output_shape=(1, 1), n_layers=1,
                                                          hidden_dim=8), upstream_ref=fs_ref)
    mg_ib.insert_node_after(new_node=post_p, upstream=p)
    print("After insert_node_after:")
    connectivity(mg_ib)  # a new branch from P
    print(f"Tail nodes: {[n.label for n in mg_ib.tail_nodes.values()]}")
    mg_ib.build()
    print(mg_ib.visualize())

    section("freeze")
    mg_branch.build(force=True)
    mg_branch.freeze(nodes=[enc_a])
    print(f"Frozen nodes: {[n.label for n in mg_branch.frozen_nodes.values()]}")
    print(mg_branch.visualize(show_frozen=True))
    mg_branch.unfreeze(nodes=[enc_a])
    print(f"Frozen nodes: {[n.label for n in mg_branch.frozen_nodes.values()]}")
    mg_branch.freeze()
    print(f"All frozen: {[n.label for n in mg_branch.frozen_nodes.values()]}")
    mg_branch.unfreeze()
    print(f"All unfrozen: {[n.label for n in mg_branch.frozen_nodes.values()]}")

    section("optimizer parameters")
    opt_info = mg_branch.get_optimizer_parameters()
    print(f"Backend: {opt_info['backend']}")
    print(f"Contributing nodes: {len(opt_info['contributing_nodes'])}")
    print(f"Total parameters: {len(opt_info['parameters'])}")

    section("config and state")
    config = mg_branch.get_config()
    print(f"Config keys: {list(config.keys())}")
    print(f"Number of node configs: {len(config['nodes'])}")
    print(f"Optimizer config: {config['optimizer'] is not None}")
    state = mg_branch.get_state()
    print(f"State keys: {list(state.keys())}")
    print(f"Number of node states: {len(state['nodes'])}")
    print(f"Is built: {state['is_built']}")
    rebuilt = ModelGraph.from_config(config)
    rebuilt.set_state(state)
    same = all(np.array_equal(rebuilt.forward(inputs)[k], outputs[k]) for k in outputs)
    print(f"Round trip reproduces outputs: {same}")

    section("save and load")
    with tempfile.TemporaryDirectory() as tmp:
        path = mg_branch.save(Path(tmp) / "my_graph", overwrite=True)
        print(f"Saved to: {path.name}")
        # overwrite=True: the reloaded nodes take back their labels and ids
        loaded = ModelGraph.load(path, overwrite=True)
        print(f"Loaded graph labels: {loaded.node_labels}")
        same = all(np.array_equal(loaded.forward(inputs)[k], outputs[k]) for k in outputs)
        print(f"Loaded graph reproduces outputs: {same}")
        print(loaded.visualize())

        section("checkpointing")
        ckpt = mg_branch.save_checkpoint(Path(tmp) / "checkpoint_epoch5", overwrite=True,
                                         meta={"epoch": 5, "val_loss": 0.032})
        print(f"Checkpoint saved to: {ckpt.name}")
        # scramble the weights, then restore the checkpoint into the same graph
        mg_branch.set_variables(jax.tree.map(lambda v: v * 0.0, mg_branch.variables))
        mg_branch.restore_checkpoint(ckpt)
        print(f"Restored. Built: {mg_branch.is_built}")
        same = all(np.array_equal(mg_branch.forward(inputs)[k], outputs[k]) for k in outputs)
        print(f"Restored graph reproduces outputs: {same}")


if __name__ == "__main__":
    main()
