"""How-to 04: merge parallel branches with a ConcatNode; axes, target/tag strategies,
padding, building inside a graph and calling merge nodes by hand.

The ModularML how-to "Create and Use a MergeNode" on modjax. Model constructors are
modjax's JAX ``SequentialMLP``; ``backend="torch"`` arguments are accepted and ignored.
Run: ``python examples/howto/04_mergenode.py``.
"""

from __future__ import annotations

import warnings

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
from modjax.data import DataFormat
from modjax.graph import MergeStrategy, SampleData


def encoder(label: str, out: tuple[int, ...], fs_ref: object) -> ModelNode:
    return ModelNode(label=label, upstream_ref=fs_ref,
                     model=SequentialMLP(output_shape=out, n_layers=1, hidden_dim=16))


def describe(merge: ConcatNode) -> None:
    print(f"MergeNode({merge.label!r})")
    for k, shape in merge.input_shapes.items():
        print(f" - Data from {k.resolve().label}: {shape}")
    print(f" - Merged output shape: {merge.output_shape}")


def two_encoder_graph(fs_ref: object, out_a: tuple[int, ...], out_b: tuple[int, ...],
                      concat_axis: int) -> ModelGraph:
    enc_a, enc_b = encoder("EncoderA", out_a, fs_ref), encoder("EncoderB", out_b, fs_ref)
    merge = ConcatNode(label="Merge", upstream_refs=[enc_a, enc_b], concat_axis=concat_axis,
                       pad_inputs=True)
    reg = ModelNode(label="Regressor", model=SequentialMLP(n_layers=1, hidden_dim=8),
                    upstream_ref=merge)
    mg = ModelGraph(nodes=[enc_a, enc_b, merge, reg],
                    optimizer=Optimizer(opt="adam", backend="torch")).build()
    describe(merge)
    return mg


def strategies(fs_ref: object, sample_data: SampleData) -> dict:
    enc_a, enc_b = encoder("EncoderA", (1, 8), fs_ref), encoder("EncoderB", (1, 8), fs_ref)
    merge = ConcatNode(label="Merge", upstream_refs=[enc_a, enc_b], concat_axis=0)
    print(f"Feature axis: {merge.concat_axis}  Target strategy: {merge.target_strategy}  "
          f"Tags strategy: {merge.tags_strategy}")
    first = ConcatNode(label="MergeFirst", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                       concat_axis_targets="first")
    mean = ConcatNode(label="MergeMean", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                      concat_axis_targets=MergeStrategy.MEAN)
    by_ref = ConcatNode(label="MergeRef", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                        concat_axis_targets=enc_a)
    print(f"target_strategy: {first.target_strategy}")
    print(f"target_strategy: {mean.target_strategy}")
    print(f"target_strategy: {by_ref.target_strategy.node_label}")
    reg = ModelNode(label="Reg_demo", model=SequentialMLP(n_layers=1, hidden_dim=8),
                    upstream_ref=first)
    ModelGraph(nodes=[enc_a, enc_b, first, reg], optimizer=Optimizer(opt="adam")).build()
    input_shapes = {enc_a.reference(): enc_a.output_shape, enc_b.reference(): enc_b.output_shape}
    concat = ConcatNode(label="MergeConcat", upstream_refs=[enc_a, enc_b], concat_axis=-1)
    for m in (mean, by_ref, concat):
        m.build(input_shapes=input_shapes, includes_batch_dim=False, backend="torch")
    inputs = {enc_a.reference(): enc_a(sample_data), enc_b.reference(): enc_b(sample_data)}
    outs = {name: m.forward(inputs) for name, m in
            [("concat", concat), ("first", first), ("mean", mean), ("ref", by_ref)]}
    print(f"Input targets shape:            {sample_data.targets.shape}")
    print(f"concat (default) targets shape: {outs['concat'].targets.shape}")
    print(f"'first' strategy targets shape: {outs['first'].targets.shape}")
    print(f"'mean' strategy targets shape:  {outs['mean'].targets.shape}")
    print(f"select-by-ref targets shape:    {outs['ref'].targets.shape}")
    for a, b in (("first", "ref"), ("first", "mean")):
        same = np.array_equal(np.asarray(outs[a].targets), np.asarray(outs[b].targets))
        print(f"Targets match ({a} == {b}): {same}")
    return outs


def padding(fs_ref: object) -> tuple[ModelNode, ModelNode, ConcatNode]:
    wide, tall = encoder("WideEncoder", (2, 8), fs_ref), encoder("TallEncoder", (3, 6), fs_ref)
    padded = ConcatNode(label="PaddedMerge", upstream_refs=[wide, tall], concat_axis=0,
                        concat_axis_targets="first", pad_inputs=True, pad_mode="constant",
                        pad_value=0.0)
    reg = ModelNode(label="Regressor", upstream_ref=padded,
                    model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=8))
    ModelGraph(nodes=[wide, tall, padded, reg], optimizer=Optimizer(opt="adam")).build()
    describe(padded)
    no_pad = ConcatNode(label="NoPadMerge", upstream_refs=[wide, tall], concat_axis=0)
    try:
        no_pad.build(input_shapes={wide.reference(): wide.output_shape,
                                   tall.reference(): tall.output_shape},
                     includes_batch_dim=False)
    except ValueError as e:
        print(f"ValueError: {e}")
    return wide, tall, padded


def main() -> dict:
    warnings.simplefilter("ignore")  # repeated labels are overwritten on purpose
    Experiment(label="create_mergenode", registration_policy="overwrite")
    rng = np.random.default_rng(42)
    fs = FeatureSet.from_dict(label="Data A",
                              data={"X": list(rng.standard_normal((200, 10))),
                                    "Y": list(rng.standard_normal((200, 1)))},
                              feature_keys="X", target_keys="Y")
    fs_ref = fs.reference(features="X", targets="Y")
    fsv = fs_ref.resolve()
    sample_data = SampleData(features=fsv.get_features(fmt=DataFormat.NUMPY),
                             targets=fsv.get_targets(fmt=DataFormat.NUMPY))

    # -- feature axes: (1, 10) + (1, 5) padded on axis 0, then the three axis choices
    two_encoder_graph(fs_ref, (1, 10), (1, 5), concat_axis=0)
    two_encoder_graph(fs_ref, (1, 8), (1, 8), concat_axis=0)
    two_encoder_graph(fs_ref, (1, 8), (1, 8), concat_axis=1)
    two_encoder_graph(fs_ref, (1, 8), (1, 16), concat_axis=-1)

    # -- target/tag strategies and padding
    outs = strategies(fs_ref, sample_data)
    wide, tall, padded = padding(fs_ref)

    # -- a full graph with a non-default target strategy
    enc_a, enc_b = encoder("EncoderA", (1, 8), fs_ref), encoder("EncoderB", (1, 4), fs_ref)
    merge = ConcatNode(label="Merge", upstream_refs=[enc_a, enc_b], concat_axis=-1,
                       concat_axis_targets=enc_a)
    regressor = ModelNode(label="Regressor", model=SequentialMLP(n_layers=1, hidden_dim=8),
                          upstream_ref=merge)
    mg = ModelGraph(nodes=[enc_a, enc_b, merge, regressor],
                    optimizer=Optimizer(opt="adam", backend="torch")).build()
    print("Graph built successfully!")
    for node in mg.nodes.values():
        in_shape = node.input_shape if hasattr(node, "input_shape") else None
        print(f"  {node.label}: {in_shape} -> {node.output_shape}")

    # -- tracing a forward pass node by node
    out_a, out_b = enc_a(sample_data), enc_b(sample_data)
    print(f"EncoderA features: {out_a.features.shape}  EncoderB features: {out_b.features.shape}")
    out_merge = merge.forward({enc_a.reference(): out_a, enc_b.reference(): out_b})
    print(f"Merge features: {out_merge.features.shape}  Merge targets: "
          f"{out_merge.targets.shape} (selected from EncoderA)")
    out_final = regressor(out_merge)
    print(f"Regressor output: {out_final.features.shape}")
    graph_out = mg.forward({"Data A": sample_data.features})["Regressor"]
    print(f"Same as graph forward: {np.array_equal(np.asarray(graph_out), out_final.features)}")

    # -- the padded merge by hand: TallEncoder's (3, 6) is padded to (3, 8) with zeros
    print(f"PaddedMerge output_shape: {padded.output_shape}")
    out_padded = padded.forward({wide.reference(): wide(sample_data),
                                 tall.reference(): tall(sample_data)})
    print(f"Padded merge output: {out_padded.features.shape}")
    region = np.asarray(out_padded.features)[:, 2:5, 6:8]
    print(f"Padded region values (should be all zeros): {np.unique(region)}")
    return {"graph": mg, "strategies": outs, "padded": out_padded}


if __name__ == "__main__":
    main()
