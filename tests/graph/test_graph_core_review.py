"""Adversarial checks of the graph core: definitions that go stale, programs that leak."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import (  # noqa: E402
    make_branching_graph,
    make_featureset,
    mse_on,
    train_phase,
)

from modjax import AddNode, BatchNorm, Linear, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.flow import FlowBuilder
from modjax.train.programs import clear_program_cache  # noqa: E402


def _flow_in_model_graph(fs):
    enc = (FlowBuilder.from_(Linear(4)).through(BatchNorm()).tag("bn").through(Linear(1))
           .label("enc").build())
    node = ModelNode("net", enc, upstream_ref=fs.reference(), register=False)
    g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}),
                   register=False).build()
    return enc, g


def _losses(phase, g):
    return np.asarray(phase.execute(g, show_training_progress=False).metrics.series("train_loss"))


def test_training_override_inside_a_flow_model_changes_the_model_graph_definition():
    fs = make_featureset(register=False)
    enc, g = _flow_in_model_graph(fs)
    x = {"fs": jax.random.normal(jax.random.key(1), (8, 4)) * 3 + 2}
    before_def = g.definition
    before = np.asarray(g.forward(x)["net"])
    enc.set_training_at("bn", True)  # batch statistics even in eval forwards
    assert g.definition != before_def
    got = np.asarray(g.forward(x)["net"])
    enc2, fresh = _flow_in_model_graph(fs)
    fresh.set_variables(g.variables)
    enc2.set_training_at("bn", True)
    want = np.asarray(fresh.forward(x)["net"])
    assert not np.allclose(before, want)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cached_program_never_runs_a_graph_mutated_after_it_was_made():
    # a program compiled for graph A's definition is reused, and retraced for new batch
    # counts, by any graph of that structure: A's later in-place edits must not reach it
    clear_program_cache()
    fs, small = make_featureset(register=False), make_featureset(n=128, seed=1, register=False)
    enc_a, a = _flow_in_model_graph(fs)
    _losses(train_phase(node="net", n_epochs=1), a)
    enc_a.set_training_at("bn", False)
    _, b = _flow_in_model_graph(small)
    start = b.variables
    got = _losses(train_phase(node="net", n_epochs=2), b)
    clear_program_cache()
    _, ref = _flow_in_model_graph(small)
    ref.set_variables(start)
    np.testing.assert_allclose(got, _losses(train_phase(node="net", n_epochs=2), ref), rtol=1e-6)


def _merge_graph(fs):
    a = ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x0", "x1"]), register=False)
    b = ModelNode("enc_b", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x2", "x3"]), register=False)
    m = AddNode("merge", [a, b], register=False)
    head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=m,
                     register=False)
    return ModelGraph([a, b, m, head], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}),
                      register=False).build()


def _two_heads(n_epochs=1):
    from modjax import InputBinding, SimpleSampler, TrainPhase

    s = SimpleSampler(32, seed=0)
    return TrainPhase("t", input_sources=[
        InputBinding.for_training(node="enc_a", sampler=s, split="train"),
        InputBinding.for_training(node="enc_b", sampler=s, split="train")],
        losses=[mse_on("head")], n_epochs=n_epochs)


def test_renaming_a_node_does_not_reach_a_program_of_the_old_definition():
    clear_program_cache()
    fs, small = make_featureset(register=False), make_featureset(n=128, seed=1, register=False)
    a = _merge_graph(fs)
    _losses(_two_heads(), a)
    next(n for n in a.nodes.values() if n.label == "head").label = "out"
    b = _merge_graph(small)  # labelled "head": the old definition's structure
    start = b.variables
    got = _losses(_two_heads(2), b)
    clear_program_cache()
    ref = _merge_graph(small)
    ref.set_variables(start)
    np.testing.assert_allclose(got, _losses(_two_heads(2), ref), rtol=1e-6)


def test_in_place_edit_of_a_merge_node_gives_a_new_definition():
    fs = make_featureset(register=False)
    g = _merge_graph(fs)
    before = g.definition
    t = {"enc_a": {"targets": jnp.zeros((3, 1))}, "enc_b": {"targets": jnp.ones((3, 1))}}
    assert float(before.route_targets(t)["merge"].sum()) == 0.0
    next(n for n in g.nodes.values() if n.label == "merge").target_strategy = "last"
    assert g.definition != before
    assert float(g.definition.route_targets(t)["merge"].sum()) == 3.0
    assert float(before.route_targets(t)["merge"].sum()) == 0.0  # the old value is unchanged


def test_freezing_a_tied_use_freezes_the_shared_weights():
    from modjax import AppliedLoss
    from modjax.train.step import init_train_carry, make_train_step

    lin = Linear(3)
    g = (FlowBuilder.from_(Linear(3)).tag("pre").through(lin).tag("one").through(lin).tag("two")
         .label("net").build(input_shape=(3,)))
    assert g.parameters_at("two") == {}  # the second use holds no parameters of its own
    g.freeze("two")
    assert g.frozen_paths == ("one",) and g.is_frozen("one") and g.is_frozen("two")
    assert not g.is_frozen("pre")
    opt = Optimizer("sgd", opt_kwargs={"lr": 0.1})
    step = make_train_step(g, [AppliedLoss("mse", on="net")], opt)
    carry = init_train_carry(g.variables, opt, jax.random.key(0), frozen_paths=g.frozen_paths)
    batch = {"x": {"features": jnp.ones((4, 3)), "targets": jnp.zeros((4, 3))}}
    carry, _ = jax.jit(step)(carry, batch)
    new = carry["variables"]["params"]
    np.testing.assert_array_equal(new["one"]["kernel"], g.variables["params"]["one"]["kernel"])
    assert not np.array_equal(new["pre"]["kernel"], g.variables["params"]["pre"]["kernel"])
    g.thaw("two")
    assert g.frozen_paths == () and not g.is_frozen("one")
    g.freeze("one")
    assert g.is_frozen("two")


def test_a_child_in_two_parents_is_never_a_silent_view_of_the_wrong_one():
    import gc

    import pytest

    from modjax.errors import GraphStructureError

    enc = FlowBuilder.from_(Linear(4)).tag("h").label("enc").build()
    p1 = FlowBuilder.from_(enc).through(Linear(1)).label("p1").build(input_shape=(3,))
    w1 = p1.variables["params"]["enc"]
    p2 = FlowBuilder.from_(enc).through(Linear(2)).label("p2").build(input_shape=(3,), seed=5)
    assert p2.variables is not None
    with pytest.raises(GraphStructureError, match="p1.*p2|p2.*p1"):
        p1.child_graph("enc").variables  # noqa: B018
    del p2
    gc.collect()
    got = p1.child_graph("enc").variables["params"]
    np.testing.assert_array_equal(got["h"]["kernel"], w1["h"]["kernel"])


def test_node_order_in_the_constructor_is_not_structure():
    fs = make_featureset(register=False)

    def build(first, second):
        a = ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                      upstream_ref=fs.reference(features=["x0", "x1"]), register=False)
        b = ModelNode("enc_b", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                      upstream_ref=fs.reference(features=["x2", "x3"]), register=False)
        m = AddNode("merge", [a, b], register=False)
        head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=m,
                         register=False)
        nodes = {"a": a, "b": b}
        return ModelGraph([nodes[first], nodes[second], m, head], register=False).build()

    g1, g2 = build("a", "b"), build("b", "a")
    assert g1.node_labels != g2.node_labels  # another execution order, the same function
    assert g1.definition == g2.definition
    assert g1.definition_hash() == g2.definition_hash() is not None
    x = {"enc_a": jnp.ones((3, 2)), "enc_b": jnp.full((3, 2), 0.5)}
    g2.set_variables(g1.variables)
    np.testing.assert_array_equal(g1.forward(x)["head"], g2.forward(x)["head"])


def test_stage_wise_check_runs_for_a_cached_program_too():
    import pytest

    from modjax import InputBinding, SimpleSampler, TrainPhase

    def phase():
        s = SimpleSampler(32, seed=0)
        return TrainPhase("t", input_sources=[
            InputBinding.for_training(node="enc_a", sampler=s, split="train"),
            InputBinding.for_training(node="enc_b", sampler=s, split="train")],
            losses=[mse_on("head")], n_epochs=1)

    def opt():
        return Optimizer("adam", opt_kwargs={"lr": 1e-2})

    fs = make_featureset(register=False)
    g = make_branching_graph(fs, register=False, node_optimizers={"enc_b": opt(), "head": opt()})
    g.freeze("enc_a")  # a frozen node needs no optimizer
    _losses(phase(), g)
    g.unfreeze("enc_a")  # now it trains, and it has none: the documented error, not a skip
    before = g.variables
    with pytest.raises(ValueError, match="'enc_a' has none"):
        phase().execute(g, show_training_progress=False)
    assert g.variables is before


def test_a_training_mode_override_is_not_architecture(tmp_path):
    enc = FlowBuilder.from_(Linear(4)).through(BatchNorm()).tag("bn").label("enc").build()
    model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(3,))
    model.save_checkpoint(tmp_path / "ck", at="enc")
    before = model.definition_hash("enc")
    model.set_training_at("enc.bn", False)  # batch-norm on running statistics: a training choice
    assert model.definition_hash("enc") == before
    assert model.load_subgraph_checkpoint("enc", tmp_path / "ck").hash_matched


def test_a_definition_does_not_keep_the_graphs_arrays_alive():
    import gc
    import weakref

    fs = make_featureset(register=False)
    flow = FlowBuilder.from_(Linear(4)).tag("h").build(input_shape=(3,))
    for g, leaf in ((_merge_graph(fs), lambda v: v["params"]["head"]["layer_0"]["kernel"]),
                    (flow, lambda v: v["params"]["h"]["kernel"])):
        definition = g.definition  # held, as a cached program holds it
        ref = weakref.ref(leaf(g.variables))
        g.set_variables(jax.tree.map(lambda a: a + 1, g.variables))
        gc.collect()
        assert ref() is None
        assert g.definition is definition  # values changed, structure did not


def test_a_merge_strategy_naming_an_input_node_is_structure_not_identity():
    fs = make_featureset(register=False)

    def build(pick):
        a = ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                      upstream_ref=fs.reference(features=["x0", "x1"]), register=False)
        b = ModelNode("enc_b", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                      upstream_ref=fs.reference(features=["x2", "x3"]), register=False)
        m = AddNode("merge", [a, b], target_strategy=(a, b)[pick], register=False)
        head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=m,
                         register=False)
        return ModelGraph([a, b, m, head], register=False).build()

    assert build(0).definition == build(0).definition  # new node ids, same structure
    assert build(0).definition != build(1).definition


def test_a_node_replacing_a_frozen_one_under_its_label_brings_its_own_frozen_flag():
    fs = make_featureset(register=False)

    def fresh_enc():
        return ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=2, hidden_dim=8),
                         upstream_ref=fs.reference(features=["x0", "x1"]), register=False)

    g = _merge_graph(fs)
    g.freeze(["enc_a", "head.layer_0"])
    new = fresh_enc()
    g.replace_node("enc_a", new)
    g.build()
    # a new, untrained node must train: the old node's frozen flag does not pass to it
    assert not new.is_frozen and g.frozen_paths == {"head.layer_0"}
    frozen_new = fresh_enc()
    frozen_new._frozen = True  # frozen before it joined, as ModelNode.freeze() leaves it
    g.replace_node("enc_a", frozen_new)
    g.build()
    assert frozen_new.is_frozen and g.frozen_paths == {"enc_a", "head.layer_0"}
