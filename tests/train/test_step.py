"""make_train_step / make_eval_step against a hand-written jax + optax step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from train_helpers import TinyGraph, hand_forward

from modjax.errors import LabelPathError
from modjax.train.losses import AppliedLoss, Loss
from modjax.train.optim import Optimizer
from modjax.train.step import init_train_carry, make_eval_step, make_train_step

MSE = AppliedLoss(Loss("mse"), on="head", inputs=["outputs", "targets"])


def _batch(x, y, mask=None, weights=None):
    b = {"features": x, "targets": y}
    if mask is not None:
        b["mask"] = mask
    if weights is not None:
        b["weights"] = weights
    return {"enc": b}


def test_graph_wise_step_matches_hand_written(regression_data):
    x, y = regression_data
    g = TinyGraph()
    opt = Optimizer("adam", opt_kwargs={"lr": 1e-2})
    step = jax.jit(make_train_step(g, [MSE], opt))
    carry = init_train_carry(g.variables, opt, jax.random.key(0))

    tx = optax.adam(1e-2)
    params = g.variables["params"]
    ost = tx.init(params)

    @jax.jit
    def ref_step(params, ost, xb, yb):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean(jnp.square(hand_forward(p, xb) - yb)))(params)
        u, ost = tx.update(grads, ost, params)
        return optax.apply_updates(params, u), ost, loss

    losses = []
    for i in range(0, 64, 16):
        carry, m = step(carry, _batch(x[i:i + 16], y[i:i + 16]))
        params, ost, ref_loss = ref_step(params, ost, x[i:i + 16], y[i:i + 16])
        assert float(m["loss"]) == pytest.approx(float(ref_loss), rel=1e-6)
        losses.append(float(m["loss"]))
    chex.assert_trees_all_close(carry["variables"]["params"], params, rtol=1e-6, atol=1e-7)
    assert int(carry["step"]) == 4
    assert set(m["losses"]) == {"head.mse"} and bool(m["finite"])


def test_padding_mask_and_weights(regression_data):
    x, y = regression_data
    g = TinyGraph()
    opt = Optimizer("sgd", opt_kwargs={"lr": 0.1})
    step = jax.jit(make_train_step(g, [MSE], opt))
    c0 = init_train_carry(g.variables, opt, jax.random.key(0))
    clean, m1 = step(c0, _batch(x[:8], y[:8]))
    # 4 padded rows of garbage must not change anything
    xp = jnp.concatenate([x[:8], jnp.full((4, 3), 1e3)])
    yp = jnp.concatenate([y[:8], jnp.full((4, 1), 1e6)])
    mask = jnp.arange(12) < 8
    padded, m2 = step(c0, _batch(xp, yp, mask=mask))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-6)
    chex.assert_trees_all_close(clean["variables"], padded["variables"], rtol=1e-6)
    # weight 2 on a sample == that sample twice
    w = jnp.ones(8).at[0].set(2.0)
    weighted, _ = step(c0, _batch(x[:8], y[:8], weights=w))
    dup, _ = step(c0, _batch(jnp.concatenate([x[:8], x[:1]]), jnp.concatenate([y[:8], y[:1]])))
    chex.assert_trees_all_close(weighted["variables"], dup["variables"], rtol=1e-5)


def test_frozen_node_bit_identical_in_step(regression_data):
    x, y = regression_data
    g = TinyGraph()
    opt = Optimizer("adamw", opt_kwargs={"lr": 1e-2, "weight_decay": 0.3})
    step = jax.jit(make_train_step(g, [MSE], opt))
    carry = init_train_carry(g.variables, opt, jax.random.key(0), frozen_paths=["enc"])
    for _ in range(5):
        carry, _ = step(carry, _batch(x[:16], y[:16]))
    chex.assert_trees_all_equal(carry["variables"]["params"]["enc"], g.variables["params"]["enc"])
    assert not bool(jnp.allclose(carry["variables"]["params"]["head"]["w"],
                                 g.variables["params"]["head"]["w"]))


def test_stage_wise_stops_gradients_at_node_inputs(regression_data):
    x, y = regression_data
    opts = {"enc": Optimizer("sgd", opt_kwargs={"lr": 0.1}),
            "head": Optimizer("adam", opt_kwargs={"lr": 0.01})}
    g = TinyGraph(node_optimizers=opts)
    # only the head has a loss: stage-wise, the encoder gets no gradient from it
    step = jax.jit(make_train_step(g, [MSE], None))
    assert make_train_step(g, [MSE]).stage_wise
    carry = init_train_carry(g.variables, opts, jax.random.key(0))
    carry, _ = step(carry, _batch(x[:16], y[:16]))
    chex.assert_trees_all_equal(carry["variables"]["params"]["enc"], g.variables["params"]["enc"])
    # the head's update equals a hand-written adam step on the head alone
    h = jnp.tanh(x[:16] @ g.variables["params"]["enc"]["w"] + g.variables["params"]["enc"]["b"])
    hp = g.variables["params"]["head"]
    grads = jax.grad(lambda p: jnp.mean(jnp.square(h @ p["w"] + p["b"] - y[:16])))(hp)
    tx = optax.adam(0.01)
    u, _ = tx.update(grads, tx.init(hp), hp)
    chex.assert_trees_all_close(carry["variables"]["params"]["head"], optax.apply_updates(hp, u),
                                rtol=1e-6)
    # a loss on the encoder trains the encoder only through its own output
    enc_loss = AppliedLoss(Loss(_activation_l2), on="enc", inputs=["outputs"], label="enc_l2")
    step2 = jax.jit(make_train_step(g, [MSE, enc_loss]))
    c2, m2 = step2(init_train_carry(g.variables, opts, jax.random.key(0)), _batch(x[:16], y[:16]))
    assert set(m2["losses"]) == {"head.mse", "enc_l2"}
    # the encoder moved by exactly sgd(0.1) on the gradient of its own loss
    ep = g.variables["params"]["enc"]
    eg = jax.grad(lambda p: jnp.mean(_activation_l2(jnp.tanh(x[:16] @ p["w"] + p["b"]))))(ep)
    chex.assert_trees_all_close(c2["variables"]["params"]["enc"],
                                jax.tree.map(lambda p, g_: p - 0.1 * g_, ep, eg), rtol=1e-5)
    # and the head's update is unchanged by the extra encoder loss
    chex.assert_trees_all_close(c2["variables"]["params"]["head"],
                                carry["variables"]["params"]["head"], rtol=1e-6)


def _activation_l2(h):
    return jnp.mean(jnp.square(h), axis=1)


def test_stage_wise_missing_optimizer_is_an_error():
    g = TinyGraph(node_optimizers={"head": Optimizer("sgd")})
    with pytest.raises(ValueError, match="node 'enc' has none"):
        make_train_step(g, [MSE])
    g.frozen_paths = {"enc"}  # a frozen node needs no optimizer
    assert make_train_step(g, [MSE]).stage_wise


def test_bad_loss_wiring_errors(regression_data):
    x, y = regression_data
    g = TinyGraph()
    opt = Optimizer("sgd")
    with pytest.raises(ValueError, match="no losses"):
        make_train_step(g, [], opt)
    with pytest.raises(LabelPathError, match="'haed'.*head"):
        make_train_step(g, [AppliedLoss("mse", on="haed")], opt)
    bad_role = AppliedLoss("mse", on="head", inputs=["anchr.outputs", "targets"])
    step = make_train_step(g, [bad_role], opt)
    carry = init_train_carry(g.variables, opt, jax.random.key(0))
    with pytest.raises(KeyError, match="'anchr' is neither a sampler role"):
        step(carry, _batch(x[:4], y[:4]))
    tag = AppliedLoss("mse", on="head", inputs=["outputs", "tags.group"])
    with pytest.raises(KeyError, match="tag 'group'"):
        make_train_step(g, [tag], opt)(carry, _batch(x[:4], y[:4]))


def test_multi_role_triplet_step(regression_data):
    x, _ = regression_data
    g = TinyGraph()
    trip = AppliedLoss("triplet", on="enc", inputs=["anchor.outputs", "positive.outputs",
                                                    "negative.outputs"])
    opt = Optimizer("sgd", opt_kwargs={"lr": 0.1})
    step = jax.jit(make_train_step(g, [trip], opt))
    roles = {r: {"features": x[i * 8:(i + 1) * 8], "targets": jnp.zeros((8, 1)),
                 "mask": jnp.ones(8, bool)} for i, r in enumerate(["anchor", "positive", "negative"])}
    carry = init_train_carry(g.variables, opt, jax.random.key(0))
    losses = []
    for _ in range(10):
        carry, m = step(carry, {"enc": roles})
        losses.append(float(m["loss"]))
    assert losses[-1] < losses[0]


def test_eval_step_records_outputs(regression_data):
    x, y = regression_data
    g = TinyGraph()
    ev = jax.jit(make_eval_step(g, [MSE], record=["head"]))
    m = ev(g.variables, _batch(x, y))
    out = m["records"]["outputs"]["head"]["default"]
    chex.assert_trees_all_close(out, hand_forward(g.variables["params"], x), rtol=1e-6)
    chex.assert_trees_all_close(m["records"]["targets"]["head"]["default"], y)
    assert float(m["losses"]["head.mse"]) == pytest.approx(float(jnp.mean((out - y) ** 2)), rel=1e-6)
    empty = make_eval_step(g)(g.variables, _batch(x, y))
    assert float(empty["loss"]) == 0.0


def test_step_inside_a_user_scan_equals_python_loop(regression_data):
    x, y = regression_data
    g = TinyGraph()
    opt = Optimizer("adam", opt_kwargs={"lr": 1e-2})
    step = make_train_step(g, [MSE], opt)
    carry0 = init_train_carry(g.variables, opt, jax.random.key(0))
    batches = _batch(x.reshape(4, 16, 3), y.reshape(4, 16, 1))

    @jax.jit
    def epoch(carry, batches):
        return jax.lax.scan(step, carry, batches)

    scanned, metrics = epoch(carry0, batches)
    looped, jstep = carry0, jax.jit(step)
    losses = []
    for i in range(4):
        looped, m = jstep(looped, jax.tree.map(lambda a, i=i: a[i], batches))
        losses.append(float(m["loss"]))
    assert metrics["loss"].shape == (4,) and int(scanned["step"]) == 4
    chex.assert_trees_all_close(metrics["loss"], jnp.array(losses), rtol=1e-6)
    chex.assert_trees_all_close(scanned["variables"], looped["variables"], rtol=1e-6, atol=1e-7)
    ev = make_eval_step(g, [MSE])
    batched = jax.jit(jax.vmap(ev, in_axes=(None, 0)))(scanned["variables"], batches)["loss"]
    one_by_one = [float(ev(scanned["variables"], jax.tree.map(lambda a, i=i: a[i], batches))["loss"])
                  for i in range(4)]
    chex.assert_trees_all_close(batched, jnp.array(one_by_one), rtol=1e-6)


def test_sum_and_none_reductions():
    per = jnp.array([1.0, 2.0, 4.0])
    w = jnp.array([1.0, 0.5, 0.0])
    s = AppliedLoss(Loss("mse", reduction="sum"), on="head")
    n = AppliedLoss(Loss("mse", reduction="none"), on="head")
    m = AppliedLoss(Loss("mse"), on="head", weight=2.0)
    assert float(s.reduce(per, weights=w)) == 2.0
    assert float(n.reduce(per, weights=w)) == pytest.approx(2.0 / 1.5)
    assert float(m.reduce(per, weights=w)) == pytest.approx(2 * 2.0 / 1.5)
    assert float(s.reduce(per, mask=jnp.zeros(3, bool))) == 0.0
