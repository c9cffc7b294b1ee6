"""ModelGraph: validation, shapes, pure apply, mutations, freezing, config/state, views."""

from __future__ import annotations

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import (
    AddNode,
    BatchNorm,
    ConcatNode,
    Dropout,
    FeatureSet,
    Identity,
    Linear,
    MeanNode,
    ModelGraph,
    ModelNode,
    SequentialMLP,
    StackNode,
)
from modjax.context import ExperimentContext
from modjax.errors import GraphStructureError, LabelPathError, ShapeMismatchError
from modjax.graph import NodeReference
from modjax.graph.models import FunctionModel
from modjax.graph.shapes import label_seed

N = 8


@pytest.fixture(scope="module")
def fs():
    rng = np.random.default_rng(42)
    return FeatureSet.from_dict(
        "SensorData", {"voltage": rng.standard_normal((N, 10)).astype(np.float32),
                       "soh": rng.standard_normal((N, 1)).astype(np.float32)},
        feature_keys="voltage", target_keys="soh", register=False)


@pytest.fixture(scope="module")
def ref(fs):
    return fs.reference(features="voltage", targets="soh")


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((N, 1, 10)).astype(np.float32)


def mlp(out=None, n=1, h=8):
    return SequentialMLP(output_shape=out, n_layers=n, hidden_dim=h)


def branch(ref):
    a = ModelNode("EncoderA", mlp((1, 8)), ref)
    b = ModelNode("EncoderB", mlp((1, 4)), ref)
    m = ConcatNode("Merge", [a, b], concat_axis=-1, concat_axis_targets="first")
    h = ModelNode("Head", mlp(), m)
    return ModelGraph([a, b, m, h], label="branch"), (a, b, m, h)


def links(g):
    return {n.label: g.upstream_of(n) for n in g.nodes.values()}


# ---------------------------------------------------------------- construction / validation
def test_construction_by_instance_label_and_context(ref, fresh_context):
    g, (a, b, m, h) = branch(ref)
    assert g.node_labels == ["EncoderA", "EncoderB", "Merge", "Head"]
    assert [n.label for n in g.head_nodes.values()] == ["EncoderA", "EncoderB"]
    assert [n.label for n in g.tail_nodes.values()] == ["Head"]
    assert fresh_context.model_graph is g and not g.is_built and g.backend is None
    g2 = ModelGraph(["Head", "Merge", "EncoderB", "EncoderA"])
    assert g2.node_labels == ["EncoderB", "EncoderA", "Merge", "Head"] or \
        set(g2.node_labels) == set(g.node_labels)
    assert links(g2) == links(g)
    g3 = ModelGraph(None)
    assert set(g3.node_labels) == {"EncoderA", "EncoderB", "Merge", "Head"}
    with pytest.raises(Exception, match="'Hed'.*Head"):
        ModelGraph(["Hed"])


def test_validation_errors_name_nodes(ref):
    a = ModelNode("A", mlp((1, 2)), ref)
    a2 = ModelNode("A", mlp((1, 2)), ref, register=False)
    with pytest.raises(GraphStructureError, match="two nodes are labelled 'A'"):
        ModelGraph([a, a2])
    b = ModelNode("B", mlp((1, 2)), a)
    with pytest.raises(GraphStructureError, match="'B' has upstream 'A', which is not a node"):
        ModelGraph([b])
    c1 = ModelNode("C1", Identity(), NodeReference("C2"))
    c2 = ModelNode("C2", Identity(), c1)
    with pytest.raises(GraphStructureError, match="cycle: C[12] -> C[12] -> C[12]"):
        ModelGraph([c1, c2])
    with pytest.raises(GraphStructureError, match="takes one upstream_ref"):
        ModelNode("D", Identity(), [a, b])
    with pytest.raises(ValueError, match="invalid node label 'a.b'"):
        ModelNode("a.b", Identity(), ref)
    m = ConcatNode("M", [a, b], concat_axis_targets=NodeReference("Z"))
    with pytest.raises(GraphStructureError, match="'M' takes targets/tags from 'Z'"):
        ModelGraph([a, b, m])


# ---------------------------------------------------------------- build / shapes
def test_build_infers_shapes_and_target_shape_for_tail(ref):
    g, (a, b, m, h) = branch(ref)
    assert g.build() is g and g.is_built
    assert (a.input_shape, a.output_shape) == ((1, 10), (1, 8))
    assert m.input_shapes == {"EncoderA": (1, 8), "EncoderB": (1, 4)} and m.output_shape == (1, 12)
    assert (h.input_shape, h.output_shape) == ((1, 12), (1, 1))
    assert g.node_shapes("Merge").target_shape == (1, 1)
    v = g.variables
    assert set(v["params"]) == set(v["state"]) == {"EncoderA", "EncoderB", "Head"}
    assert v["params"]["Head"]["layer_0"]["kernel"].shape == (12, 1)


def test_shape_mismatch_names_both_nodes_and_shapes(ref):
    a = ModelNode("Enc", mlp((1, 4)), ref)
    h = ModelNode("Reg", SequentialMLP(output_shape=(1,), input_shape=(8,)), a)
    g = ModelGraph([a, h])
    with pytest.raises(ShapeMismatchError, match=r"'Reg' expects input shape \(8,\) but its "
                       r"upstream 'Enc' produces \(1, 4\)"):
        g.build()
    assert not g.is_built
    b = ModelNode("Other", mlp((2, 4)), ref)
    add = AddNode("Sum", [a, b])
    g2 = ModelGraph([a, b, add])
    with pytest.raises(ShapeMismatchError, match=r"AddNode 'Sum'.*Enc \(1, 4\), Other \(2, 4\)"):
        g2.build()


def test_apply_matches_hand_computed_branch(ref, x):
    g, _ = branch(ref)
    g.build(key=jax.random.key(7))
    p = g.variables["params"]
    out, new_state = jax.jit(g.apply)(g.variables, {"EncoderA": x, "EncoderB": x})

    def lin(params, v):
        return v.reshape(v.shape[0], -1) @ params["layer_0"]["kernel"] + params["layer_0"]["bias"]

    ea = lin(p["EncoderA"], x).reshape(N, 1, 8)
    eb = lin(p["EncoderB"], x).reshape(N, 1, 4)
    merged = jnp.concatenate([ea, eb], axis=-1)
    head = lin(p["Head"], merged).reshape(N, 1, 1)
    chex.assert_trees_all_close(out, {"EncoderA": ea, "EncoderB": eb, "Merge": merged,
                                      "Head": head}, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(new_state, g.variables["state"])
    # same inputs keyed by FeatureSet label, or as batch dicts
    out2 = g.forward({"SensorData": {"features": x}})
    chex.assert_trees_all_close(out2["Head"], head, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="'EncoderA' reads FeatureSet 'SensorData'"):
        g.apply(g.variables, {"Nope": x})
    with pytest.raises(ShapeMismatchError, match=r"'EncoderA' expects .*\(1, 10\).*\(8, 10\)"):
        g.apply(g.variables, {"SensorData": x[:, 0]})


def test_active_nodes_and_route_targets(ref, x):
    g, (a, b, m, h) = branch(ref)
    g.build()
    part = g.forward({"SensorData": x}, active_nodes=[m])
    assert sorted(part) == ["EncoderA", "EncoderB", "Merge"]
    only_a = g.forward({"SensorData": x}, active_nodes=["EncoderA"])
    assert list(only_a) == ["EncoderA"]
    y = jnp.arange(N, dtype=jnp.float32).reshape(N, 1, 1)
    routed = g.route_targets({"SensorData": y})
    chex.assert_trees_all_equal(routed, {"EncoderA": y, "EncoderB": y, "Merge": y, "Head": y})
    c = ConcatNode("Cat", [a, b], concat_axis=-1, concat_axis_targets=0)
    g2 = ModelGraph([a, b, c])
    routed2 = g2.route_targets({"EncoderA": y, "EncoderB": 2 * y})
    chex.assert_trees_all_equal(routed2["Cat"], jnp.concatenate([y, 2 * y], axis=1))
    g3 = ModelGraph([a, b, ConcatNode("Pick", [a, b], concat_axis_targets=b)])
    assert np.array_equal(g3.route_targets({"EncoderA": y, "EncoderB": 2 * y})["Pick"], 2 * y)
    g4 = ModelGraph([a, b, ConcatNode("Avg", [a, b], concat_axis_targets="mean",
                                      concat_axis_tags="last")])
    assert np.allclose(g4.route_targets({"EncoderA": y, "EncoderB": 2 * y})["Avg"], 1.5 * y)
    tags = g4.route_tags({"EncoderA": {"tags": {"cell": y}}, "EncoderB": {"tags": {"cell": -y}}})
    chex.assert_trees_all_equal(tags["Avg"], {"cell": -y})
    assert g4.route_targets({"EncoderA": {"features": y}})["EncoderB"] is None


def test_forward_is_compiled_once(ref, x):
    # a structure no other test builds: programs are shared by graphs of equal structure
    a = ModelNode("EncoderA", mlp((1, 8), h=13), ref)
    b = ModelNode("EncoderB", mlp((1, 4), h=13), ref)
    m = ConcatNode("Merge", [a, b], concat_axis=-1, concat_axis_targets="first")
    g = ModelGraph([a, b, m, ModelNode("Head", mlp(h=13), m)], label="branch")
    g.build()
    traces = []
    orig = g.apply

    def counting(*args, **kw):
        traces.append(1)
        return orig(*args, **kw)

    g.apply = counting
    for _ in range(3):
        g.forward({"SensorData": x})
    assert len(traces) == 1
    g.forward({"SensorData": x}, active_nodes=["Merge"])
    g.forward({"SensorData": x}, active_nodes=["Merge"])
    assert len(traces) == 2


def test_init_is_deterministic_and_per_label(ref):
    g, _ = branch(ref)
    v1 = g.init(jax.random.key(3))
    v2 = jax.jit(g.init)(jax.random.key(3))
    chex.assert_trees_all_equal(v1, v2)
    g.build(key=jax.random.key(3))
    chex.assert_trees_all_equal(g.variables, v1)
    # a node's values depend only on the root key and its label
    solo = ModelNode("EncoderA", mlp((1, 8)), ref)
    gs = ModelGraph([solo])
    chex.assert_trees_all_equal(gs.init(jax.random.key(3))["params"]["EncoderA"],
                                v1["params"]["EncoderA"])
    direct, _ = solo.model.init(jax.random.fold_in(jax.random.key(3), label_seed("EncoderA")),
                                (1, 10))
    chex.assert_trees_all_equal(direct, v1["params"]["EncoderA"])
    assert not np.allclose(g.init(jax.random.key(4))["params"]["Head"]["layer_0"]["kernel"],
                           v1["params"]["Head"]["layer_0"]["kernel"])


def test_grouped_init_equals_each_node_init_on_its_own_key(ref):
    """Nodes are initialised together (shared draws, broadcast constants, per-model
    maps); every node's values must still be exactly ``init(fold_in(key, label))``."""
    from modjax import Conv1D
    from modjax.graph import model_init as mg

    small = [ModelNode(f"S{i}", mlp((1, 4), n=2, h=6), ref) for i in range(2)]
    lin = ModelNode("Lin", Linear(5), small[0])
    big = ModelNode("Big", mlp((1, 8), n=2, h=64), ref)  # > 4x the draws: its own bucket
    nodes = [*small, lin, big, ModelNode("BN", BatchNorm(), small[1]),
             ModelNode("Conv", Conv1D(2, kernel_size=3), ref),  # draws normals: own init
             ModelNode("Id", Identity(), lin)]
    g = ModelGraph(nodes)
    key = jax.random.key(11)
    v = jax.jit(g.init)(key)

    @jax.jit
    def one_by_one(k):
        return {n.label: n.model.init(jax.random.fold_in(k, label_seed(n.label)), n.input_shape)
                for n in nodes}

    want = one_by_one(key)
    chex.assert_trees_all_equal({lab: (v["params"][lab], v["state"][lab]) for lab in want},
                                want)
    # buckets: largest first; a group joins while it needs >= 1/4 of the bucket's draws
    assert mg._draw_buckets([408, 280, 136, 0, None, 2000], True) == [[5], [0, 1, 2]]
    assert mg._draw_buckets([408, 280, 408, 0], False) == [[0, 2], [1]]
    assert mg._prefix_draws(key)
    with jax.threefry_partitionable(False):  # draws are then not prefixes of longer ones
        assert not mg._prefix_draws(key)
    model, shp = mlp((1, 4), n=3, h=5), (2, 3)
    model.build(shp)
    u = jax.random.uniform(key, (model.init_draws(shp),), jnp.float32, -1.0, 1.0)
    chex.assert_trees_all_equal(model.init_from_draws(u, shp), model.init(key, shp))


def test_train_mode_state_and_dropout_keys(ref, x):
    a = ModelNode("BN", BatchNorm(momentum=0.5), ref)
    d = ModelNode("Drop", Dropout(0.5), a)
    g = ModelGraph([a, d]).build()
    out, st = g.apply(g.variables, {"SensorData": x}, key=jax.random.key(1), train=True)
    np.testing.assert_allclose(st["BN"]["mean"], 0.5 * x.mean(0)[0], rtol=1e-5, atol=1e-6)
    out2, _ = g.apply(g.variables, {"SensorData": x}, key=jax.random.key(1), train=True)
    chex.assert_trees_all_equal(out, out2)
    with pytest.raises(ValueError, match="node 'Drop': Dropout.*needs a key"):
        g.apply(g.variables, {"SensorData": x}, train=True)
    ev, st_ev = g.apply(g.variables, {"SensorData": x})
    chex.assert_trees_all_equal(st_ev, g.variables["state"])


# ---------------------------------------------------------------- mutations (seed 000)
def test_add_remove_replace_and_atomic_failures(ref):
    n1 = ModelNode("N1", mlp((1, 8)), ref)
    n2 = ModelNode("N2", mlp((1, 4)), n1)
    n3 = ModelNode("N3", mlp((1, 1)), n2)
    g = ModelGraph([n1, n2, n3]).build()
    kept = g.variables["params"]["N1"]
    assert g.remove_node("N2") is g
    assert links(g) == {"N1": ["SensorData"], "N3": ["N1"]} and not g.is_built
    g.build()
    assert g.variables["params"]["N1"] is kept  # unchanged node keeps its values
    assert g.variables["params"]["N3"]["layer_0"]["kernel"].shape == (8, 1)

    # [A, B] -> C -> D: removing C needs D to accept two inputs
    a = ModelNode("A", mlp((1, 2)), ref)
    b = ModelNode("B", mlp((1, 2)), ref)
    c = ConcatNode("C", [a, b], concat_axis=-1)
    d = ModelNode("D", mlp((1, 1)), c)
    g2 = ModelGraph([a, b, c, d])
    before = (links(g2), g2.node_labels)
    with pytest.raises(GraphStructureError, match="cannot remove node 'C'.*'D'.*accepts 1"):
        g2.remove_node(c)
    assert (links(g2), g2.node_labels) == before and d.upstream_labels == ["C"]
    e = ModelNode("E", Identity(), c)
    mean = MeanNode("Mean", [c, e])
    g3 = ModelGraph([a, b, c, e, mean])
    g3.remove_node("E")
    assert links(g3)["Mean"] == ["C"]

    new = ModelNode("NewEncoder", mlp((1, 8), n=3, h=16), ref)
    g.replace_node(old_node="N1", new_node=new)
    assert links(g) == {"NewEncoder": ["SensorData"], "N3": ["NewEncoder"]}
    with pytest.raises(GraphStructureError, match="already in graph"):
        g.add_node(new)
    bad = ModelNode("N3", Identity(), new, register=False)
    with pytest.raises(GraphStructureError, match="two nodes are labelled 'N3'"):
        g.add_node(bad)
    assert g.node_labels == ["NewEncoder", "N3"]
    added = ModelNode("Added", mlp((1, 1)), new)
    g.add_node(added)
    assert [n.label for n in g.tail_nodes.values()] == ["N3", "Added"]


def test_insert_between_before_after(ref):
    a = ModelNode("A", mlp((1, 8)), ref)
    b = ModelNode("B", mlp((1, 1)), a)
    g = ModelGraph([a, b])
    c = ModelNode("C", mlp((1, 4)), ref)
    g.insert_node_between(new_node=c, upstream=a, downstream=b)
    assert links(g) == {"A": ["SensorData"], "C": ["A"], "B": ["C"]}
    stray = ModelNode("Stray", Identity(), ref)
    with pytest.raises(GraphStructureError, match="'A' and 'B': they are not connected"):
        g.insert_node_between(new_node=stray, upstream=a, downstream=b)
    assert links(g) == {"A": ["SensorData"], "C": ["A"], "B": ["C"]}
    pre = ModelNode("PreB", mlp((1, 4)), ref)
    g.insert_node_before(new_node=pre, downstream=b)
    assert links(g) == {"A": ["SensorData"], "C": ["A"], "PreB": ["C"], "B": ["PreB"]}
    post = ModelNode("PostA", mlp((1, 1)), ref)
    g.insert_node_after(new_node=post, upstream=a)
    assert links(g)["PostA"] == ["A"]
    assert [n.label for n in g.tail_nodes.values()] == ["B", "PostA"]
    g.build()
    assert g.node_shapes("B").input_shapes == ((1, 4),)
    # inserting a single-input node before a merge of two is refused, graph unchanged
    m = ConcatNode("M", [b, post], concat_axis=-1)
    g.add_node(m)
    snapshot = links(g)
    with pytest.raises(GraphStructureError, match="cannot insert 'X' before 'M'"):
        g.insert_node_before(new_node=ModelNode("X", Identity(), ref), downstream=m)
    assert links(g) == snapshot


# ---------------------------------------------------------------- freezing / optimizer view
def test_freeze_unfreeze_paths_and_optimizer_parameters(ref):
    g, (a, b, m, h) = branch(ref)
    g.build()
    g.freeze(nodes=[a])
    assert g.frozen_paths == {"EncoderA"} and list(g.frozen_nodes) == [a.node_id]
    g.unfreeze(nodes=[a])
    assert g.frozen_paths == set()
    g.freeze(nodes=[b.node_id, "Head"])  # by id and by label
    assert g.frozen_paths == {"EncoderB", "Head"} and b.is_frozen and h.is_frozen
    assert set(g.frozen_nodes) == {b.node_id, h.node_id}
    g.unfreeze([b.node_id])
    assert g.frozen_paths == {"Head"}
    g.unfreeze()
    g.freeze()
    assert g.frozen_paths == {"EncoderA", "EncoderB", "Head"}
    g.unfreeze("Head.layer_0.bias")
    assert g.frozen_paths == {"EncoderA", "EncoderB", "Head.layer_0.kernel"}
    assert not h.is_frozen
    info = g.get_optimizer_parameters()
    assert info["contributing_nodes"] == {h.node_id}
    assert list(info["parameters"]) == ["Head.layer_0.bias"]
    mask = info["trainable_mask"]
    assert mask["Head"]["layer_0"] == {"bias": True, "kernel": False}
    assert not mask["EncoderA"]["layer_0"]["kernel"]
    g.unfreeze()
    info = g.get_optimizer_parameters()
    assert len(info["contributing_nodes"]) == 3 and len(info["parameters"]) == 6
    with pytest.raises(GraphStructureError, match="cannot freeze 'Merge': it is a ConcatNode"):
        g.freeze(["Merge"])
    with pytest.raises(LabelPathError, match="'Head.layer_9'"):
        g.freeze(["Head.layer_9"])
    assert g.frozen_paths == set()
    before = jax.tree.map(lambda v: v, g.variables)
    g.freeze("EncoderB")
    assert g.is_built and g.variables is not None
    chex.assert_trees_all_equal(g.variables, before)


def test_parameters_at_and_nested_models(ref, x):
    class Inner:
        """A nested-graph-like model: params keyed by inner labels, tagged values."""

        input_shape = output_shape = None

        def init(self, key, input_shape):
            return {"scan": {"w": jnp.ones(input_shape)}, "proj": {"w": jnp.zeros(())}}, {}

        def apply(self, params, state, x, *, key=None, train=False):
            return x * params["scan"]["w"] + params["proj"]["w"], state

        def apply_capture(self, params, state, x, *, key=None, train=False, capture=()):
            y, s = self.apply(params, state, x)
            tags = {"hidden": x * params["scan"]["w"]}
            return y, s, {c: tags[c] for c in capture}

        def get_config(self):
            return {}

    enc = ModelNode("Encoder", Inner(), ref)
    head = ModelNode("Head", mlp((1, 1)), enc)
    g = ModelGraph([enc, head]).build()
    assert g.parameters_at("Encoder.scan.w").shape == (1, 10)
    with pytest.raises(LabelPathError, match="'Encoder.scna'.*scan"):
        g.parameters_at("Encoder.scna")
    g.freeze("Encoder.scan")
    assert g.frozen_paths == {"Encoder.scan"}
    assert g.frozen_mask()["Encoder"] == {"scan": {"w": True}, "proj": {"w": False}}
    out, _ = g.apply(g.variables, {"SensorData": x}, capture=("Encoder.hidden",))
    np.testing.assert_array_equal(out["Encoder.hidden"], x)
    assert "Encoder.hidden" not in g.apply(g.variables, {"SensorData": x})[0]
    with pytest.raises(LabelPathError, match="'Head.hidden'.*apply_capture"):
        g.apply(g.variables, {"SensorData": x}, capture=("Head.hidden",))


# ---------------------------------------------------------------- variables / config / state
def test_set_variables_validates_and_is_atomic(ref):
    g, _ = branch(ref)
    g.build()
    v = g.variables
    bad = jax.tree.map(lambda a: a, v)
    bad["params"]["Head"]["layer_0"]["kernel"] = jnp.zeros((3, 1))
    with pytest.raises(ShapeMismatchError, match=r"'Head.layer_0.kernel'.*\(3, 1\).*\(12, 1\)"):
        g.set_variables({"params": bad["params"], "state": v["state"]})
    missing = {"params": {k: p for k, p in v["params"].items() if k != "Head"},
               "state": v["state"]}
    with pytest.raises(LabelPathError, match="missing.*Head"):
        g.set_variables(missing)
    assert g.variables is v
    new = jax.tree.map(lambda a: a + 1, v)
    g.set_variables(new)
    chex.assert_trees_all_equal(g.variables, new)


def test_config_and_state_round_trip(fs, ref, x, fresh_context):
    g, (a, b, m, h) = branch(ref)
    g.build(key=jax.random.key(5))
    g.freeze(["EncoderA"])
    cfg = json.loads(json.dumps(g.get_config()))
    assert [c["class"] for c in cfg["nodes"]] == ["ModelNode", "ModelNode", "ConcatNode",
                                                  "ModelNode"]
    assert cfg["frozen_paths"] == ["EncoderA"]
    state = g.get_state()
    assert state["is_built"] and set(state["nodes"]) == {"EncoderA", "EncoderB", "Head"}
    with ExperimentContext(registration_policy="error").activate() as ctx:
        ctx.register_experiment_node(fs)  # the loaded reference resolves through the context
        g2 = ModelGraph.from_config(cfg)
        assert [n.node_id for n in g2.nodes.values()] == [n.node_id for n in g.nodes.values()]
        assert g2.frozen_paths == {"EncoderA"} and not g2.is_built
        g2.set_state(state)
        chex.assert_trees_all_equal(g2.forward({"SensorData": x}), g.forward({"SensorData": x}))
        merge2 = g2.nodes[m.node_id]
        assert merge2.concat_axis == -1 and merge2.target_strategy == "first"


def test_visualize_and_summary(ref):
    g, (a, b, m, h) = branch(ref)
    text = g.visualize()
    assert text.startswith("flowchart LR") and "-->|" not in text
    g.build()
    g.freeze([a])
    text = g.visualize(show_features=True, show_targets=True)
    assert '-->|"(1, 8)"| n2' in text and '-->|"(1, 12)"| n3' in text
    assert "features: voltage" in text and "targets: soh" in text
    assert "EncoderA<br/>SequentialMLP (frozen)" in text and "class n0 frozen" in text
    assert "(frozen)" not in g.visualize(show_frozen=False)
    fs2 = FeatureSet.from_dict("Split", {"v": np.zeros((4, 3)), "y": np.zeros(4),
                                         "cell": np.arange(4.0)}, "v", "y", "cell",
                               register=False)
    fs2.split_random({"train": 0.5, "val": 0.5})
    split_graph = ModelGraph([ModelNode("P", Identity(), fs2.reference())])
    assert "splits: train, val" in split_graph.visualize(show_splits=True)
    assert "splits" not in split_graph.visualize()
    assert "tags: cell" in split_graph.visualize(show_tags=True)
    assert "tags" not in split_graph.visualize(show_features=True, show_targets=True)
    # references differing only in tags are two FeatureSet inputs
    two = ModelGraph([ModelNode("T1", Identity(), fs2.reference(tags="cell")),
                      ModelNode("T2", Identity(), fs2.reference(tags=[]))])
    assert two.visualize().count("FeatureSet: Split") == 2
    s = g.summary()
    assert "EncoderA" in s and "(1, 8) + (1, 4)" in s
    assert "total params: 145  trainable: 57  frozen: 88" in s


def test_merge_node_variants(ref, x):
    a = ModelNode("A", Identity(), ref)
    b = ModelNode("B", FunctionModel(lambda k, s: {}, lambda p, v: 2 * v), ref)
    nodes = [a, b, AddNode("Add", [a, b]), MeanNode("Mean", [a, b]), StackNode("Stack", [a, b]),
             ConcatNode("Cat0", [a, b])]
    c = ModelNode("C", Linear(3), ref)
    pad = ConcatNode("Pad", [a, c], concat_axis=0, pad_inputs=True, pad_value=-1.0)
    g = ModelGraph([*nodes, c, pad]).build()
    out = g.forward({"SensorData": x})
    np.testing.assert_allclose(out["Add"], 3 * x, rtol=1e-6)
    np.testing.assert_allclose(out["Mean"], 1.5 * x, rtol=1e-6)
    assert out["Stack"].shape == (N, 2, 1, 10) and out["Cat0"].shape == (N, 2, 10)
    assert g.node_shapes("Pad").output_shape == (2, 10)
    np.testing.assert_array_equal(out["Pad"][:, 1, 3:], -1.0)
    np.testing.assert_allclose(out["Pad"][:, 1, :3], out["C"][:, 0], rtol=1e-6)
    strict = ConcatNode("Strict", [a, c], concat_axis=0)
    with pytest.raises(ShapeMismatchError, match=r"'Strict'.*A \(1, 10\), C \(1, 3\)"):
        ModelGraph([a, c, strict]).build()



def test_flow_graph_as_node_model_nests_labels_and_captures(ref, x):
    from modjax.flow import FlowBuilder

    flow = FlowBuilder.from_(Linear(8)).tag("hidden").through(Linear(4)).build()
    enc = ModelNode("Encoder", flow, ref)
    head = ModelNode("Head", mlp((1, 1)), enc)
    g = ModelGraph([enc, head]).build()
    assert g.node_shapes("Encoder").output_shape == (1, 4)
    inner = g.parameters_at("Encoder")
    first = sorted(k for k in inner if inner[k])[0]
    assert g.parameters_at(f"Encoder.{first}") is inner[first]
    out, _ = g.apply(g.variables, {"SensorData": x}, capture=["Encoder.hidden"])
    assert out["Encoder.hidden"].shape == (N, 1, 8) and out["Encoder"].shape == (N, 1, 4)
    g.freeze(f"Encoder.{first}")
    assert g.frozen_paths == {f"Encoder.{first}"}
    mask = g.frozen_mask()
    assert all(jax.tree.leaves(mask["Encoder"][first]))
    assert not any(jax.tree.leaves(mask["Head"]))


def test_renaming_a_node_rekeys_variables_and_frozen_paths(ref, x, fresh_context):
    g, (a, b, m, h) = branch(ref)
    g.build()
    kernel = g.variables["params"]["Head"]["layer_0"]["kernel"]
    g.freeze("Head.layer_0")
    h.label = "Regressor"
    assert fresh_context.get_node("Regressor") is h
    assert g.node_labels == ["EncoderA", "EncoderB", "Merge", "Regressor"]
    assert g.variables["params"]["Regressor"]["layer_0"]["kernel"] is kernel
    assert g.frozen_paths == {"Regressor.layer_0"}
    assert "Regressor" in g.forward({"SensorData": x})
    with pytest.raises(ValueError, match="invalid node label"):
        h.label = "bad.label"
    fresh_context.set_registration_policy("rename")
    dup = ModelNode("EncoderA", Identity(), ref)
    assert dup.label == "EncoderA_1"


def test_flax_and_function_models_as_node_models_with_hand_checked_forward(ref, x):
    """Linen module, NNX module and a plain function pair: no extra user code."""
    import flax.linen as nn
    from flax import nnx

    lin_node = ModelNode("Linen", nn.Dense(4), ref)  # lazy: Dense infers its input width
    nnx_node = ModelNode("NNX", nnx.Linear(4, 3, rngs=nnx.Rngs(0)), lin_node)
    fn_node = ModelNode("Fn", (lambda key, shape: {"s": jnp.full(shape, 2.0)},
                               lambda p, v: v * p["s"] + 1.0), nnx_node)
    g = ModelGraph([lin_node, nnx_node, fn_node]).build(key=jax.random.key(2))
    assert [(n.input_shape, n.output_shape) for n in g.nodes.values()] == [
        ((1, 10), (1, 4)), ((1, 4), (1, 3)), ((1, 3), (1, 3))]
    assert [n.backend for n in g.nodes.values()] == ["jax"] * 3
    p = g.variables["params"]
    assert p["Linen"]["kernel"].shape == (10, 4) and p["NNX"]["kernel"].shape == (4, 3)
    out = g.forward({"SensorData": x})
    h1 = np.asarray(x) @ np.asarray(p["Linen"]["kernel"]) + np.asarray(p["Linen"]["bias"])
    h2 = h1 @ np.asarray(p["NNX"]["kernel"]) + np.asarray(p["NNX"]["bias"])
    np.testing.assert_allclose(out["Linen"], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["NNX"], h2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["Fn"], 2.0 * h2 + 1.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(p["Fn"]["s"], np.full((1, 3), 2.0, np.float32))
    # the same key gives the same variables, bit for bit
    chex.assert_trees_all_equal(g.init(jax.random.key(2)), g.variables)
    bad = ModelNode("Bad", nnx.Linear(5, 3, rngs=nnx.Rngs(0)), lin_node)
    with pytest.raises(ShapeMismatchError, match=r"'Bad'.*\(1, 4\).*'Linen'"):
        ModelGraph([lin_node, bad]).build()


def test_concat_axes_pad_modes_and_strategies_hand_checked():
    a = jnp.arange(2 * 1 * 16 * 16, dtype=jnp.float32).reshape(2, 1, 16, 16)
    b = -jnp.arange(2 * 1 * 16 * 8, dtype=jnp.float32).reshape(2, 1, 16, 8)
    # seed 001 axis semantics (per-sample axes, batch axis excluded)
    assert ConcatNode("C2", ["A", "B"], concat_axis=2).merge([a, b]).shape == (2, 1, 16, 24)
    assert ConcatNode("Cm1", ["A", "B"], concat_axis=-1).merge([a, b]).shape == (2, 1, 16, 24)
    u, v = jnp.ones((2, 1, 16)), jnp.zeros((2, 1, 16))
    chex.assert_trees_all_equal(ConcatNode("C0", ["A", "B"]).merge([u, v]),
                                jnp.stack([u[:, 0], v[:, 0]], axis=1))
    with pytest.raises(ShapeMismatchError, match=r"'C1' cannot concatenate A \(1, 16, 16\), "
                       r"B \(1, 16, 8\) along axis 0.*pad_inputs"):
        ConcatNode("C1", ["A", "B"], concat_axis=0).merge([a, b])
    with pytest.raises(ShapeMismatchError, match=r"'R' needs inputs of equal rank"):
        ConcatNode("R", ["A", "B"]).merge([u, a])

    # padding of the non-concatenated axes, each mode checked by hand: (1, 3) and (1, 1)
    # concatenated on axis 0 pad the short row to length 3 at its end
    p = jnp.array([[[1.0, 2.0, 3.0]]])
    q = jnp.array([[[5.0, 6.0]]])
    expect = {"constant": [5.0, 6.0, -1.0], "reflect": [5.0, 6.0, 5.0],
              "replicate": [5.0, 6.0, 6.0], "circular": [5.0, 6.0, 5.0]}
    for mode, row in expect.items():
        node = ConcatNode(f"P_{mode}", ["A", "B"], concat_axis=0, pad_inputs=True,
                          pad_mode=mode, pad_value=-1.0)
        np.testing.assert_array_equal(node.merge([p, q]), [[[1.0, 2.0, 3.0], row]])
    r = jnp.array([[[7.0]]])
    np.testing.assert_array_equal(
        ConcatNode("Pr", ["A", "B"], pad_inputs=True, pad_mode="replicate").merge([p, r]),
        [[[1.0, 2.0, 3.0], [7.0, 7.0, 7.0]]])
    with pytest.raises(ValueError, match="'Bad': unknown pad_mode 'mirror'"):
        ConcatNode("Bad", ["A", "B"], pad_mode="mirror")

    # target / tag strategies: int axis, "first", "last", "mean", a node reference
    ta, tb = jnp.full((2, 1, 1), 1.0), jnp.full((2, 1, 1), 3.0)
    both = [ta, tb]
    cases = {-1: jnp.concatenate(both, axis=-1), 0: jnp.concatenate(both, axis=1),
             "first": ta, "last": tb, "mean": jnp.full((2, 1, 1), 2.0),
             NodeReference("B"): tb}
    for strategy, want in cases.items():
        node = ConcatNode("S", ["A", "B"], concat_axis_targets=strategy,
                          concat_axis_tags=strategy, register=False)
        chex.assert_trees_all_equal(node.merge_targets(both), want)
        chex.assert_trees_all_equal(node.merge_tags([{"t": ta}, {"t": tb}]), {"t": want})
    assert ConcatNode("Ax", ["A", "B"], concat_axis_targets=0).target_axis == 0
    with pytest.raises(TypeError, match="'F' merges targets with 'first', not along an axis"):
        _ = ConcatNode("F", ["A", "B"], concat_axis_targets="first").target_axis
    with pytest.raises(TypeError, match="'F2' merges tags with 'mean'"):
        _ = ConcatNode("F2", ["A", "B"], concat_axis_tags="mean").tags_axis
    with pytest.raises(ValueError, match="'U': unknown target strategy 'median'"):
        ConcatNode("U", ["A", "B"], concat_axis_targets="median")
    with pytest.raises(ValueError, match="'Miss': cannot concatenate targets"):
        ConcatNode("Miss", ["A", "B"]).merge_targets([ta, None])
    chex.assert_trees_all_equal(ConcatNode("Fi", ["A", "B"], concat_axis_targets="first")
                                .merge_targets([None, tb]), None)
    # every setting survives the JSON config round trip
    full = ConcatNode("Full", ["A", "B"], concat_axis=2, concat_axis_targets=NodeReference("B"),
                      concat_axis_tags="last", pad_inputs=True, pad_mode="reflect",
                      pad_value=3.5, register=False)
    again = ConcatNode.from_config(json.loads(json.dumps(full.get_config())), register=False)
    assert again.get_config() == full.get_config()
    assert (again.concat_axis, again.pad_mode, again.pad_value, again.tags_strategy) == (
        2, "reflect", 3.5, "last")
    assert again.target_strategy == NodeReference("B")


def _snapshot(g, extra=()):
    """Everything a mutation could touch: order, wiring, refs, build state, values."""
    nodes = list(g.nodes.values()) + list(extra)
    return (g.node_labels, links(g), g.is_built, g._variables,
            {n.label: n.get_upstream_refs() for n in nodes},
            sorted(g.frozen_paths), list(g.head_nodes), list(g.tail_nodes))


def test_remove_node_rules_of_seed_001(ref):
    # A -> B -> [C, D] minus B is A -> [C, D]
    a = ModelNode("A", mlp((1, 4)), ref)
    b = ModelNode("B", mlp((1, 4)), a)
    c = ModelNode("C", mlp((1, 1)), b)
    d = ModelNode("D", mlp((1, 2)), b)
    g = ModelGraph([a, b, c, d])
    g.remove_node(b)
    assert links(g) == {"A": ["SensorData"], "C": ["A"], "D": ["A"]}
    assert g.downstream_of("A") == ["C", "D"]
    # [A, B] -> C -> D minus C is [A, B] -> D when D accepts several inputs
    a2 = ModelNode("A2", mlp((1, 2)), ref)
    b2 = ModelNode("B2", mlp((1, 2)), ref)
    c2 = AddNode("C2", [a2, b2])
    d2 = ConcatNode("D2", [c2], concat_axis=-1)
    g2 = ModelGraph([a2, b2, c2, d2]).build()
    g2.remove_node("C2")
    assert links(g2) == {"A2": ["SensorData"], "B2": ["SensorData"], "D2": ["A2", "B2"]}
    assert g2.build().node_shapes("D2").output_shape == (1, 4)
    # removing a head: its consumer takes over the FeatureSet input
    g.remove_node("A")
    assert links(g) == {"C": ["SensorData"], "D": ["SensorData"]}
    assert list(g.head_nodes) == [c.node_id, d.node_id]


def test_failed_mutations_leave_the_graph_exactly_as_it_was(ref):
    a = ModelNode("A", mlp((1, 2)), ref)
    b = ModelNode("B", mlp((1, 2)), ref)
    c = ConcatNode("C", [a, b], concat_axis=-1)
    d = ModelNode("D", mlp((1, 1)), c)
    g = ModelGraph([a, b, c, d]).build()
    g.freeze(["B"])
    outsider = ModelNode("Outsider", Identity(), ref)
    newcomers = {
        "orphan": ModelNode("Orphan", Identity(), outsider),
        "dup": ModelNode("D", Identity(), a, register=False),
        "single": ModelNode("Single", Identity(), ref),
    }
    before = _snapshot(g, newcomers.values())
    failures = [
        (lambda: g.add_node(newcomers["orphan"]), "'Orphan' has upstream 'Outsider'"),
        (lambda: g.add_node(newcomers["dup"]), "two nodes are labelled 'D'"),
        (lambda: g.add_node(a), "'A'.*already in graph"),
        (lambda: g.remove_node("C"), "cannot remove node 'C'.*'D'.*accepts 1"),
        (lambda: g.remove_node("Nope"), "node 'Nope' is not in graph"),
        (lambda: g.replace_node("C", newcomers["single"]),
         "cannot replace 'C' with 'Single'.*accepts 1.*2"),
        (lambda: g.replace_node("A", newcomers["dup"]),
         "cannot replace 'A' with 'D'.*two nodes are labelled 'D'"),
        (lambda: g.insert_node_between(newcomers["single"], upstream="A", downstream="D"),
         "between 'A' and 'D': they are not connected"),
        (lambda: g.insert_node_before(newcomers["single"], downstream="C"),
         "cannot insert 'Single' before 'C'"),
        (lambda: g.insert_node_after(newcomers["single"], upstream="Nope"),
         "upstream 'Nope' is not in graph"),
        (lambda: g.insert_node_after(newcomers["dup"], upstream="A"),
         "two nodes are labelled 'D'"),
        (lambda: g.freeze(["C"]), "cannot freeze 'C'"),
    ]
    for call, msg in failures:
        with pytest.raises(GraphStructureError, match=msg):
            call()
        assert _snapshot(g, newcomers.values()) == before, msg
    assert g.is_built and g.frozen_paths == {"B"}
    # the graph still works exactly as before
    out = g.forward({"SensorData": np.ones((2, 1, 10), np.float32)})
    assert out["D"].shape == (2, 1, 1)
