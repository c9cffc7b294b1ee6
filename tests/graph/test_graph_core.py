"""The graph core: hashable definitions, programs keyed on structure, views, ties, hashes."""

from __future__ import annotations

import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import make_featureset, mse_on, train_phase  # noqa: E402

from modjax import (
    AddNode,
    AppliedLoss,
    Linear,
    MeanNode,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
)
from modjax.errors import CheckpointError  # noqa: E402
from modjax.flow import FlowBuilder
from modjax.graph.definition import GraphDef, apply, definition_hash  # noqa: E402
from modjax.train.step import init_train_carry, make_eval_step, make_train_step  # noqa: E402


class Compiles:
    """Counts backend compilations (``jax.monitoring``) while active."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1

    def __enter__(self) -> Compiles:
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self)


def _merge_graph(fs, merge_cls, seed=0):
    a = ModelNode("enc_a", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x0", "x1"]), register=False)
    b = ModelNode("enc_b", SequentialMLP(output_shape=(1, 4), n_layers=1, hidden_dim=8),
                  upstream_ref=fs.reference(features=["x2", "x3"]), register=False)
    m = merge_cls("merge", [a, b], register=False)
    head = ModelNode("head", SequentialMLP(n_layers=1, hidden_dim=8), upstream_ref=m,
                     register=False)
    opt = Optimizer("adam", opt_kwargs={"lr": 1e-2})
    return ModelGraph([a, b, m, head], optimizer=opt, register=False).build(key=seed)


def _two_heads_phase(n_epochs=2):
    from modjax import InputBinding, SimpleSampler, TrainPhase

    s = SimpleSampler(32, seed=0)
    return TrainPhase("t", input_sources=[
        InputBinding.for_training(node="enc_a", sampler=s, split="train"),
        InputBinding.for_training(node="enc_b", sampler=s, split="train")],
        losses=[mse_on("head")], n_epochs=n_epochs)


# ------------------------------------------------------------------ definitions
def test_definitions_compare_by_structure():
    fs = make_featureset(register=False)
    g1, g2 = _merge_graph(fs, AddNode), _merge_graph(fs, AddNode, seed=3)
    assert isinstance(g1.definition, GraphDef)
    assert g1.definition == g2.definition and hash(g1.definition) == hash(g2.definition)
    assert g1.definition != _merge_graph(fs, MeanNode).definition
    before = g1.definition
    g1.replace_node("merge", MeanNode("merge", ["enc_a", "enc_b"], register=False))
    g1.build()
    assert g1.definition != before  # a mutation gives a new value


def test_mutated_graph_never_reuses_a_stale_epoch():
    fs = make_featureset(register=False)
    g = _merge_graph(fs, AddNode)
    phase = _two_heads_phase()
    phase.execute(g, show_training_progress=False)
    g.replace_node("merge", MeanNode("merge", ["enc_a", "enc_b"], register=False))
    g.build()
    start, start_opt, state = g.variables, g.opt_state, phase.get_state()
    res = phase.execute(g, show_training_progress=False)
    # the same run (same variables, moments, batches and keys) on a freshly built graph
    fresh = _merge_graph(fs, MeanNode)
    fresh.set_variables(start)
    fresh.set_opt_state(start_opt)
    ref = _two_heads_phase()
    ref.set_state(state)
    fresh_res = ref.execute(fresh, show_training_progress=False)
    np.testing.assert_allclose(res.metrics.series("train_loss"),
                               fresh_res.metrics.series("train_loss"), rtol=1e-5)


def test_forward_after_mutation_uses_the_new_merge():
    fs = make_featureset(register=False)
    g = _merge_graph(fs, AddNode)
    x = {"enc_a": jnp.ones((5, 2)), "enc_b": jnp.full((5, 2), 0.5)}
    out_add = g.forward(x)["merge"]
    g.replace_node("merge", MeanNode("merge", ["enc_a", "enc_b"], register=False))
    g.build()
    out_mean = g.forward(x)["merge"]
    np.testing.assert_allclose(np.asarray(out_mean), np.asarray(out_add) / 2, rtol=1e-6)
    # a program jitted over the definition follows the graph (the definition is static)
    f = jax.jit(lambda d, v, xs: apply(d, v, xs)[0]["merge"], static_argnums=0)
    np.testing.assert_allclose(np.asarray(f(g.definition, g.variables, x)),
                               np.asarray(out_mean), rtol=1e-6)


def test_second_phase_of_same_structure_compiles_nothing():
    fs = make_featureset(register=False)
    g = _merge_graph(fs, AddNode)
    _two_heads_phase().execute(g, show_training_progress=False)
    # a new phase object, new loss and optimizer objects configured alike, another graph
    # object of the same structure: nothing compiles
    other = _merge_graph(fs, AddNode, seed=7)
    phase = _two_heads_phase(n_epochs=3)
    with Compiles() as c:
        phase.execute(other, show_training_progress=False)
    assert c.n == 0 and phase.n_traces == 0
    # another learning rate is another program
    third = _merge_graph(fs, AddNode)
    third._optimizer = Optimizer("adam", opt_kwargs={"lr": 5e-3})
    phase = _two_heads_phase()
    phase.execute(third, show_training_progress=False)
    assert phase.n_traces == 1


# ------------------------------------------------------------------ optax
def test_raw_optax_and_any_chain_work_where_an_optimizer_does():
    fs = make_featureset(register=False)
    g = _merge_graph(fs, AddNode)
    losses = [mse_on("head")]
    batch = {"enc_a": {"features": jnp.ones((4, 2)), "targets": jnp.zeros((4, 1))},
             "enc_b": {"features": jnp.ones((4, 2)), "targets": jnp.zeros((4, 1))}}
    for tx in (optax.adam(1e-3), optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2)),
               optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)):
        step = make_train_step(g, losses, tx)
        carry = init_train_carry(g.variables, tx, jax.random.key(0), frozen_paths=["enc_a"])
        new, m = jax.jit(step)(carry, batch)
        assert np.isfinite(float(m["loss"]))
        chex.assert_trees_all_equal(new["variables"]["params"]["enc_a"],
                                    g.variables["params"]["enc_a"])
        assert not np.allclose(np.asarray(new["variables"]["params"]["head"]["layer_0"]["kernel"]),
                               np.asarray(g.variables["params"]["head"]["layer_0"]["kernel"]))


def test_frozen_signed_zero_stays_bit_identical_under_adamw():
    from modjax.train.optim import freezable

    tx = freezable(optax.adamw(0.1, weight_decay=0.5))
    params = {"a": jnp.array([-0.0, 0.0, 1.5]), "b": jnp.ones(3)}
    state = tx.init(params)
    upd, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params,
                       frozen={"a": np.bool_(True), "b": np.bool_(False)})
    new = optax.apply_updates(params, upd)
    assert np.asarray(new["a"]).tobytes() == np.asarray(params["a"]).tobytes()


# ------------------------------------------------------------------ flow graphs in steps
def test_make_train_and_eval_step_accept_a_flow_graph():
    g = FlowBuilder.from_(Linear(8)).tag("h").through(Linear(1)).label("net").build(
        input_shape=(3,))
    x, y = jnp.ones((6, 3)), jnp.zeros((6, 1))
    loss = AppliedLoss("mse", on="net")
    step = make_train_step(g, [loss], Optimizer("sgd", opt_kwargs={"lr": 0.01}))
    carry = init_train_carry(g.variables, Optimizer("sgd", opt_kwargs={"lr": 0.01}),
                             jax.random.key(0))
    batch = {"x": {"features": x, "targets": y}}
    _, m0 = jax.jit(step)(carry, batch)
    carry, _ = jax.jit(step)(carry, batch)
    _, m1 = jax.jit(step)(carry, batch)
    assert float(m1["loss"]) < float(m0["loss"])
    want = float(jnp.mean((g.forward(x) - y) ** 2))
    ev = make_eval_step(g, [loss], record=["net"])
    m = ev(g.variables, batch)
    assert float(m["loss"]) == pytest.approx(want, rel=1e-6)
    assert m["records"]["outputs"]["net"]["default"].shape == (6, 1)


# ------------------------------------------------------------------ child graph views
def test_child_graph_is_a_view_onto_the_parents_variables(tmp_path):
    enc = FlowBuilder.from_(Linear(4)).tag("h").through(Linear(4)).label("encoder").build()
    model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
    trained = jax.tree.map(lambda a: a + 1.0, model.variables)
    model.set_variables(trained)  # what a training loop writes back
    child = model.child_graph("encoder")
    chex.assert_trees_all_equal(child.variables["params"], trained["params"]["encoder"])
    child.save_checkpoint(tmp_path / "enc")
    fresh = FlowBuilder.from_(Linear(4)).tag("h").through(Linear(4)).label("encoder").build(
        input_shape=(2,))
    fresh.restore_checkpoint(tmp_path / "enc")
    chex.assert_trees_all_equal(fresh.variables["params"], trained["params"]["encoder"])
    # writes go to the parent
    child.set_variables(jax.tree.map(jnp.zeros_like, child.variables))
    assert float(jnp.abs(model.variables["params"]["encoder"]["Linear_0"]["kernel"]).sum()) == 0
    # a child's forward does not change what the parent's forward tagged
    model.set_variables(trained)
    model(jnp.ones((3, 2)))
    seen = model.tagged_at("encoder.h")
    child(jnp.zeros((3, 2)))
    np.testing.assert_array_equal(np.asarray(model.tagged_at("encoder.h")), np.asarray(seen))


# ------------------------------------------------------------------ tied modules
def test_one_module_used_twice_is_one_set_of_tied_parameters():
    shared = Linear(4)
    g = FlowBuilder.from_(Linear(4)).through(shared).through(shared).build(input_shape=(4,))
    p = g.variables["params"]
    assert p["Linear_2"] == {} and set(p["Linear_1"]) == {"kernel", "bias"}
    x = jnp.arange(8.0).reshape(2, 4)
    w, b = p["Linear_1"]["kernel"], p["Linear_1"]["bias"]
    h = x @ p["Linear_0"]["kernel"] + p["Linear_0"]["bias"]
    np.testing.assert_allclose(np.asarray(g.forward(x)), np.asarray((h @ w + b) @ w + b),
                               rtol=1e-5)

    def loss(params):
        return jnp.sum(g.apply(params, g.variables["state"], x)[0])

    grads = jax.grad(loss)(p)

    def by_hand(w):
        return jnp.sum((h @ w + b) @ w + b)

    # one parameter entry whose gradient sums both uses
    np.testing.assert_allclose(np.asarray(grads["Linear_1"]["kernel"]),
                               np.asarray(jax.grad(by_hand)(w)), rtol=1e-5)
    back = type(g).from_config(g.get_config())
    back.build((4,))
    assert back.variables["params"]["Linear_2"] == {}


def test_tied_module_with_another_input_shape_is_an_error():
    from modjax.errors import ShapeMismatchError

    shared = Linear(4)
    with pytest.raises(ShapeMismatchError, match="reuses the module of node 'Linear_0'"):
        FlowBuilder.from_(shared).through(Linear(3)).through(shared).build(input_shape=(4,))


# ------------------------------------------------------------------ architecture hash
def _encoder(act):
    return FlowBuilder.from_(SequentialMLP(output_shape=(4,), n_layers=1, hidden_dim=8,
                                           activation=act)).label("encoder").build()


def test_subgraph_hash_covers_the_architecture(tmp_path):
    relu = FlowBuilder.from_(_encoder("relu")).through(Linear(1)).build(input_shape=(3,))
    gelu = FlowBuilder.from_(_encoder("gelu")).through(Linear(1)).build(input_shape=(3,))
    assert definition_hash(relu, "encoder") != definition_hash(gelu, "encoder")
    relu.save_checkpoint(tmp_path / "enc", at="encoder")
    before = gelu.variables
    with pytest.raises(CheckpointError, match="another architecture"):
        gelu.load_subgraph_checkpoint("encoder", tmp_path / "enc")
    chex.assert_trees_all_equal(gelu.variables, before)  # nothing loaded
    rep = gelu.load_subgraph_checkpoint("encoder", tmp_path / "enc", match="shapes")
    assert rep.is_complete
    chex.assert_trees_all_equal(gelu.variables["params"]["encoder"],
                                relu.variables["params"]["encoder"])
    same = FlowBuilder.from_(_encoder("relu")).through(Linear(1)).build(input_shape=(3,))
    assert same.load_subgraph_checkpoint("encoder", tmp_path / "enc").hash_matched
    rep = gelu.load_subgraph_checkpoint("encoder", tmp_path / "enc", strict=False)
    assert not rep.hash_matched


def test_compilation_cache_opt_in(tmp_path):
    from modjax.train import enable_compilation_cache

    old = jax.config.jax_compilation_cache_dir
    try:
        enable_compilation_cache(tmp_path / "cc")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cc")
        assert (tmp_path / "cc").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_phase_on_mlp_counts_one_trace_then_none():
    fs = make_featureset(register=False, seed=5)
    node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=11), upstream_ref=fs.reference(),
                     register=False)
    g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}),
                   register=False).build()
    first = train_phase(n_epochs=1)
    first.execute(g, show_training_progress=False)
    second = train_phase(n_epochs=1)
    with Compiles() as c:
        second.execute(g, show_training_progress=False)
    assert first.n_traces == 1 and second.n_traces == 0 and c.n == 0
