"""Node-level calls (build_model, node(x), freeze, get/set_state, save/load), merge-node
build/forward, MergeStrategy and ModelGraph.forward in ModularML's keyed form."""

import jax
import numpy as np
import pytest

from modjax import ConcatNode, FeatureSet, ModelGraph, ModelNode, SequentialMLP
from modjax.context import ExperimentContext
from modjax.errors import GraphStructureError, LabelPathError, ShapeMismatchError
from modjax.graph import MergeStrategy, SampleData


@pytest.fixture()
def data():
    with ExperimentContext().activate():
        rng = np.random.default_rng(0)
        fs = FeatureSet.from_dict("D", {"x": rng.standard_normal((6, 4)).astype(np.float32),
                                        "y": rng.standard_normal((6, 1)).astype(np.float32)},
                                  "x", "y")
        ref = fs.reference(features="x", targets="y")
        view = ref.resolve()
        sd = SampleData(features=view.get_features(fmt="numpy"),
                        targets=view.get_targets(fmt="numpy"))
        yield fs, ref, sd


def mlp(out=(1, 2)):
    return SequentialMLP(output_shape=out, n_layers=2, hidden_dim=5)


def test_standalone_build_equals_graph_build_and_call(data):
    _, ref, sd = data
    node = ModelNode("Enc", mlp(), ref)
    assert not node.is_built
    node.build_model()
    assert node.is_built and node.input_shape == (1, 4) and node.output_shape == (1, 2)
    own = node.get_state()["model"]["weights"]
    out = node(sd)
    assert out.features.shape == (6, 1, 2) and out.targets is sd.targets
    g = ModelGraph([node], register=False).build()
    graph_out = g.forward({"D": sd.features})["Enc"]
    np.testing.assert_array_equal(np.asarray(out.features), np.asarray(graph_out))
    for path, arr in node.get_state()["model"]["weights"].items():
        np.testing.assert_array_equal(arr, own[path])  # same initial values, bit for bit


def test_auto_build_and_shape_errors(data):
    _, ref, sd = data
    node = ModelNode("Auto", SequentialMLP(n_layers=1), ref)
    y = node(sd.features)  # first call builds from the FeatureSet (targets give (1, 1))
    assert node.is_built and y.shape == (6, 1, 1)
    with pytest.raises(ShapeMismatchError, match=r"'Auto' takes features of per-sample shape "
                                                 r"\(1, 4\), got an array of shape \(6, 4\)"):
        node(sd.features[:, 0, :])
    down = ModelNode("Down", mlp(), node)
    with pytest.raises(GraphStructureError, match="'Down' reads node 'Auto': pass input_shape"):
        down.build_model()
    down.build_model(input_shape=(1, 1))
    assert down(y).shape == (6, 1, 2)


def test_node_reads_and_writes_its_graph(data):
    _, ref, sd = data
    enc = ModelNode("Enc", mlp(), ref)
    head = ModelNode("Head", SequentialMLP(n_layers=1), enc)
    g = ModelGraph([enc, head], register=False).build()
    state = enc.get_state()
    assert state["label"] == "Enc" and sorted(state["model"]["weights"]) == [
        "layer_0.bias", "layer_0.kernel", "layer_1.bias", "layer_1.kernel"]
    zeros = {k: np.zeros_like(v) for k, v in state["model"]["weights"].items()}
    enc.set_state({"model": {"weights": zeros}})
    assert float(np.abs(g.forward({"D": sd.features})["Enc"]).max()) == 0.0
    before = jax.tree.map(np.asarray, g.variables)
    bad = dict(zeros, **{"layer_0.kernel": np.zeros((3, 5), np.float32)})
    with pytest.raises(ShapeMismatchError, match="'Enc': weights at 'layer_0.kernel' has shape"):
        enc.set_state({"model": {"weights": bad}})
    with pytest.raises(LabelPathError, match="missing \\['layer_1.kernel'\\]"):
        enc.set_state({"model": {"weights": {k: v for k, v in zeros.items()
                                             if k != "layer_1.kernel"}}})
    after = jax.tree.map(np.asarray, g.variables)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before),
                                                     jax.tree.leaves(after)))
    enc.freeze()
    assert enc.is_frozen and list(g.frozen_nodes.values()) == [enc]
    enc.unfreeze()
    assert not enc.is_frozen and not g.frozen_nodes


def test_save_load_through_subgraph_checkpoints(data, tmp_path):
    _, ref, sd = data
    enc = ModelNode("Enc", mlp(), ref)
    ModelGraph([enc], register=False).build(key=3)
    path = enc.save(tmp_path / "enc")
    twin = ModelNode("Enc2", mlp(), ref)
    twin.build_model()  # standalone: different initial values (another label)
    assert not np.array_equal(np.asarray(twin(sd.features)), np.asarray(enc(sd.features)))
    report = twin.load(path)
    assert report is not None
    np.testing.assert_array_equal(np.asarray(twin(sd.features)), np.asarray(enc(sd.features)))
    other = ModelNode("Other", mlp((1, 3)), ref)
    other.build_model()
    with pytest.raises(Exception, match="architecture|shape"):
        other.load(path)
    lonely = ModelNode("Lonely", mlp(), enc)
    lonely.build_model(input_shape=(1, 2))
    with pytest.raises(GraphStructureError, match="cannot save node 'Lonely' on its own"):
        lonely.save(tmp_path / "x")


def test_forward_with_node_id_and_reference_keys(data):
    _, ref, sd = data
    a = ModelNode("A", mlp((1, 3)), ref)
    b = ModelNode("B", mlp((1, 2)), ref)
    m = ConcatNode("M", [a, b], concat_axis=-1, concat_axis_targets="first")
    g = ModelGraph([a, b, m], register=False).build()
    plain = g.forward({"D": sd.features})
    keyed = g.forward({(a.node_id, ref): sd, (b.node_id, ref): sd})
    assert list(keyed) == [a.node_id, b.node_id, m.node_id]
    np.testing.assert_array_equal(np.asarray(keyed[m.node_id].features), np.asarray(plain["M"]))
    assert keyed[m.node_id].targets.shape == sd.targets.shape == (6, 1, 1)
    partial = g.forward({(a.node_id, ref): sd}, active_nodes=[a])
    assert list(partial) == [a.node_id]
    fs2 = FeatureSet.from_dict("E", {"x": np.zeros((2, 4)), "y": np.zeros(2)}, "x", "y")
    with pytest.raises(GraphStructureError, match="node 'A' reads \\['D'\\]"):
        g.forward({(a.node_id, fs2.reference()): sd})


def test_merge_build_forward_and_strategies(data):
    _, ref, sd = data
    a = ModelNode("A", mlp((2, 8)), ref)
    b = ModelNode("B", mlp((3, 6)), ref)
    g = ModelGraph([a, b], register=False).build()
    assert g.is_built
    pad = ConcatNode("Pad", [a, b], concat_axis=0, pad_inputs=True,
                     concat_axis_targets=MergeStrategy.MEAN)
    pad.build(input_shapes={a.reference(): (2, 8), b.reference(): (3, 6)})
    assert pad.is_built and pad.output_shape == (5, 8)
    assert [k.resolve() for k in pad.input_shapes] == [a, b]
    nopad = ConcatNode("NoPad", [a, b], concat_axis=0)
    with pytest.raises(ValueError, match="'NoPad' cannot concatenate A \\(2, 8\\), B \\(3, 6\\)"):
        nopad.build(input_shapes={a: (2, 8), b: (3, 6)})
    out = pad.forward({a.reference(): a(sd), b.reference(): b(sd)})
    assert out.features.shape == (6, 5, 8)
    assert np.all(np.asarray(out.features)[:, 2:5, 6:8] == 0.0)
    np.testing.assert_array_equal(np.asarray(out.targets), sd.targets)
    by_ref = ConcatNode("R", [a, b], concat_axis=-1, concat_axis_targets=b, pad_inputs=True)
    assert by_ref.target_strategy.node_label == "B"
    cat = ConcatNode("C", [a, b], concat_axis=0, pad_inputs=True)
    assert cat.forward({"A": a(sd), "B": b(sd)}).targets.shape == (6, 1, 2)
    with pytest.raises(KeyError, match="no entry for upstream \\['B'\\]"):
        cat.forward({"A": a(sd)})


def test_merge_strategy_enum_and_config():
    s = ConcatNode("S", ["A", "B"], concat_axis_targets="LAST", register=False)
    assert s.target_strategy is MergeStrategy.LAST and f"{s.target_strategy}" == \
        "MergeStrategy.LAST"
    cfg = s.get_config()
    assert cfg["concat_axis_targets"] == "last"
    assert ConcatNode.from_config(cfg, register=False).target_strategy is MergeStrategy.LAST
    with pytest.raises(ValueError, match="CONCAT needs an axis"):
        ConcatNode("T", ["A", "B"], concat_axis_targets=MergeStrategy.CONCAT, register=False)


def test_torch_in_torch_out(data):
    torch = pytest.importorskip("torch")
    _, ref, sd = data
    node = ModelNode("T", mlp(), ref)
    out = node(SampleData(features=torch.tensor(sd.features), targets=torch.tensor(sd.targets)))
    assert isinstance(out.features, torch.Tensor) and tuple(out.features.shape) == (6, 1, 2)
    np.testing.assert_allclose(out.features.numpy(), np.asarray(node(sd.features)), rtol=1e-6)
