"""Optimizer: optax by name/instance, clipping, schedules, config, freeze masks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from modjax.errors import ConfigError, LabelPathError
from modjax.io.registry import deserialize, serialize
from modjax.train.optim import Optimizer, frozen_mask


def _params():
    return {"a": {"w": jnp.array([1.0, -2.0, 3.0])}, "b": {"w": jnp.array([0.5, 0.25])}}


def _grads(params, scale=1.0):
    return jax.tree.map(lambda p: scale * (p + 1.0), params)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "lion"])
def test_named_optimizers_match_optax(name):
    opt = Optimizer(name, opt_kwargs={"lr": 0.1})
    ref = getattr(optax, name)(learning_rate=0.1)
    p = _params()
    s, rs = opt.init(p), ref.init(p)
    mine, ref_p = p, p
    for _ in range(3):
        mine, s = opt.update(_grads(mine), s, mine)
        u, rs = ref.update(_grads(ref_p), rs, ref_p)
        ref_p = optax.apply_updates(ref_p, u)
    chex.assert_trees_all_close(mine, ref_p, rtol=1e-6)
    assert not bool(jnp.allclose(mine["a"]["w"], p["a"]["w"]))


def test_bad_names_and_kwargs():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'.*adam"):
        Optimizer("adamm")
    with pytest.raises(ValueError, match="`lr` or `learning_rate`"):
        Optimizer("adam", opt_kwargs={"lr": 1e-3, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="bad opt_kwargs"):
        Optimizer("adam", opt_kwargs={"lr": 1e-3, "momentum_typo": 1})
    with pytest.raises(ValueError, match="exactly one"):
        Optimizer()
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        Optimizer("sgd", clip_norm=0.0)
    with pytest.raises(TypeError, match="GradientTransformation"):
        Optimizer(42)


def test_instance_and_factory():
    tx = optax.chain(optax.scale_by_adam(), optax.scale(-0.1))
    p = _params()
    o1, o2 = Optimizer(tx), Optimizer(factory=lambda: tx)
    n1, _ = o1.update(_grads(p), o1.init(p), p)
    n2, _ = o2.update(_grads(p), o2.init(p), p)
    chex.assert_trees_all_equal(n1, n2)
    with pytest.raises(ConfigError, match="no JSON config"):
        o1.get_config()


def test_clip_norm_limits_update():
    opt = Optimizer("sgd", opt_kwargs={"lr": 1.0}, clip_norm=1.0)
    p = _params()
    new, _ = opt.update(_grads(p, 100.0), opt.init(p), p)
    delta = jax.tree.map(lambda a, b: a - b, new, p)
    assert float(optax.global_norm(delta)) == pytest.approx(1.0, rel=1e-5)
    clipped = Optimizer("sgd", opt_kwargs={"lr": 1.0}, clip_value=0.5)
    new, _ = clipped.update(_grads(p, 100.0), clipped.init(p), p)
    chex.assert_trees_all_close(jax.tree.map(lambda a, b: b - a, new, p),
                                jax.tree.map(lambda x: 0.5 * jnp.sign(x + 1.0), p))


def test_schedule_spec_and_config_round_trip():
    spec = {"schedule": "linear_schedule", "init_value": 1.0, "end_value": 0.0,
            "transition_steps": 2}
    opt = Optimizer("sgd", opt_kwargs={"lr": spec}, clip_norm=10.0)
    back = deserialize(serialize(opt))
    assert back.get_config() == opt.get_config()
    p = {"w": jnp.array([0.0])}
    g = {"w": jnp.array([1.0])}
    s = back.init(p)
    steps = []
    for _ in range(3):
        new, s = back.update(g, s, p)
        steps.append(float(p["w"][0] - new["w"][0]))
        p = new
    assert steps == pytest.approx([1.0, 0.5, 0.0])
    with pytest.raises(ConfigError, match="not a known optax schedule.*cosine_decay_schedule"):
        Optimizer("sgd", opt_kwargs={"lr": {"schedule": "cosine_decay"}})
    with pytest.raises(ConfigError, match="callable"):
        Optimizer("sgd", opt_kwargs={"lr": optax.constant_schedule(0.1)}).get_config()


def test_get_set_state():
    opt = Optimizer("adam")
    p = _params()
    opt.build(p)
    _, s = opt.update(_grads(p), opt.state, p)
    opt.set_state({"opt_state": s})
    chex.assert_trees_all_equal(opt.get_state()["opt_state"], s)
    with pytest.raises(ValueError, match="structure"):
        opt.set_state({"opt_state": {"x": 1}})


def test_frozen_params_bit_identical_under_adamw():
    opt = Optimizer("adamw", opt_kwargs={"lr": 0.1, "weight_decay": 0.5})
    p0 = _params()
    frozen = frozen_mask(p0, ["a"])
    upd = jax.jit(opt.update)
    p, s = p0, opt.init(p0)
    for _ in range(20):
        p, s = upd(_grads(p), s, p, frozen)
    chex.assert_trees_all_equal(p["a"], p0["a"])
    assert not bool(jnp.allclose(p["b"]["w"], p0["b"]["w"]))
    # negative zero stays negative zero: the select keeps the exact bits
    pz = {"a": {"w": jnp.array([-0.0])}, "b": {"w": jnp.array([1.0])}}
    out, _ = opt.update(_grads(pz), opt.init(pz), pz, frozen_mask(pz, ["a"]))
    assert bool(jnp.signbit(out["a"]["w"][0]))


def test_unfreeze_resumes_moments_and_no_recompile():
    opt = Optimizer("adam", opt_kwargs={"lr": 0.05})
    traces = []

    def update(g, s, p, f):
        traces.append(1)
        return opt.update(g, s, p, f)

    upd = jax.jit(update)
    p = _params()
    s = opt.init(p)
    none = frozen_mask(p, [])
    for _ in range(3):
        p, s = upd(_grads(p), s, p, none)
    mu_a = s[0].mu["a"]
    nu_a = s[0].nu["a"]
    freeze_a = frozen_mask(p, ["a"])
    for _ in range(4):
        p, s = upd(_grads(p), s, p, freeze_a)
    # moments of the frozen node are kept exactly, the others moved on
    chex.assert_trees_all_equal(s[0].mu["a"], mu_a)
    chex.assert_trees_all_equal(s[0].nu["a"], nu_a)
    assert int(s[0].count) == 7
    # after unfreezing, adam continues from the kept moments: mu = 0.9 mu_a + 0.1 g
    p_before = p
    p, s = upd(_grads(p), s, p, none)
    expected_mu = jax.tree.map(lambda m, pp: 0.9 * m + 0.1 * (pp + 1.0), mu_a, p_before["a"])
    chex.assert_trees_all_close(s[0].mu["a"], expected_mu, rtol=1e-6)
    # changing the frozen set never retraced the update
    assert len(traces) == 1


def test_frozen_mask_bad_path():
    with pytest.raises(LabelPathError, match="encodr"):
        frozen_mask(_params(), ["encodr"])
