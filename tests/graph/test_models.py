"""Built-in models and adapters: shapes, hand-computed values, state, keys, configs."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from modjax import (
    BatchNorm,
    Conv1D,
    Dropout,
    Identity,
    LayerNorm,
    Linear,
    RidgeRegression,
    SequentialMLP,
)
from modjax.errors import ConfigError, ShapeMismatchError
from modjax.graph.models import Fittable, FunctionModel, LinenModel, NNXModel, as_model, is_model
from modjax.io.registry import deserialize, serialize

KEY = jax.random.key(0)


def test_sequential_mlp_matches_hand_written_forward():
    mlp = SequentialMLP(output_shape=(1, 3), n_layers=3, hidden_dim=5, activation="tanh")
    params, state = mlp.init(KEY, (2, 4))
    assert [params[f"layer_{i}"]["kernel"].shape for i in range(3)] == [(8, 5), (5, 5), (5, 3)]
    x = jax.random.normal(jax.random.key(1), (6, 2, 4))
    y, new_state = mlp.apply(params, state, x)
    h = x.reshape(6, -1)
    for i in range(3):
        h = h @ params[f"layer_{i}"]["kernel"] + params[f"layer_{i}"]["bias"]
        if i < 2:
            h = jnp.tanh(h)
    chex.assert_trees_all_close(y, h.reshape(6, 1, 3), rtol=1e-6)
    assert new_state == {}


def test_sequential_mlp_lazy_output_shape_and_errors():
    mlp = SequentialMLP(n_layers=1)
    with pytest.raises(ValueError, match="needs an output_shape"):
        mlp.init(KEY, (3,))
    mlp.build((3,), (2, 2))
    p, _ = mlp.init(KEY, (3,))
    assert p["layer_0"]["kernel"].shape == (3, 4)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        SequentialMLP(n_layers=0)
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*relu"):
        SequentialMLP(activation="rleu")


def test_mlp_dropout_uses_key_and_only_in_training():
    mlp = SequentialMLP(output_shape=(4,), n_layers=2, hidden_dim=64, dropout=0.5)
    p, s = mlp.init(KEY, (4,))
    x = jnp.ones((3, 4))
    eval1, _ = mlp.apply(p, s, x)
    eval2, _ = mlp.apply(p, s, x, key=jax.random.key(3))
    chex.assert_trees_all_equal(eval1, eval2)
    t1, _ = mlp.apply(p, s, x, key=jax.random.key(3), train=True)
    t2, _ = mlp.apply(p, s, x, key=jax.random.key(3), train=True)
    t3, _ = mlp.apply(p, s, x, key=jax.random.key(4), train=True)
    chex.assert_trees_all_equal(t1, t2)
    assert not np.allclose(t1, t3)
    with pytest.raises(ValueError, match="needs a key"):
        mlp.apply(p, s, x, train=True)


def test_linear_last_axis_and_inferred_width():
    lin = Linear(use_bias=True)
    lin.build((2, 3), (2, 5))
    assert lin.output_shape == (2, 5)
    p, s = lin.init(KEY, (2, 3))
    p = {"kernel": jnp.arange(15.0).reshape(3, 5), "bias": jnp.ones(5)}
    x = jnp.arange(12.0).reshape(2, 2, 3)
    y, _ = lin.apply(p, s, x)
    np.testing.assert_allclose(y, np.arange(12.0).reshape(2, 2, 3) @ np.arange(15.0).reshape(
        3, 5) + 1)
    with pytest.raises(ShapeMismatchError, match=r"cannot turn input \(2, 3\) into .*\(1, 5\)"):
        Linear().build((2, 3), (1, 5))


def test_conv1d_matches_numpy_correlation():
    conv = Conv1D(2, kernel_size=3, padding="VALID", use_bias=True)
    conv.build((1, 6))
    assert conv.output_shape == (2, 4)
    p, s = conv.init(KEY, (1, 6))
    x = jnp.arange(6.0).reshape(1, 1, 6)
    y, _ = conv.apply(p, s, x)
    w = np.asarray(p["kernel"])
    ref = np.stack([np.correlate(np.arange(6.0), w[o, 0], mode="valid") for o in range(2)])
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeMismatchError, match=r"\(channels, length\)"):
        Conv1D(2).build((6,))


def test_layernorm_and_batchnorm_state():
    ln = LayerNorm()
    p, s = ln.init(KEY, (1, 4))
    y, _ = ln.apply(p, s, jnp.array([[[1.0, 2.0, 3.0, 4.0]]]))
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(y[0, 0], (x - x.mean()) / np.sqrt(x.var() + 1e-5), rtol=1e-5)

    bn = BatchNorm(momentum=0.9)
    p, s = bn.init(KEY, (3,))
    chex.assert_trees_all_equal(s, {"mean": jnp.zeros(3), "var": jnp.ones(3)})
    xb = jnp.array([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]])
    y, s2 = bn.apply(p, s, xb, train=True)
    np.testing.assert_allclose(s2["mean"], 0.1 * np.array([2.0, 4.0, 6.0]), rtol=1e-6)
    np.testing.assert_allclose(s2["var"], 0.9 + 0.1 * np.array([1.0, 4.0, 9.0]), rtol=1e-6)
    np.testing.assert_allclose(y[:, 0], [-1.0, 1.0], atol=1e-4)
    y_eval, s3 = bn.apply(p, s2, xb, train=False)
    assert s3 is s2
    np.testing.assert_allclose(
        y_eval, (xb - s2["mean"]) / np.sqrt(s2["var"] + 1e-5), rtol=1e-5)


def test_dropout_and_identity():
    d = Dropout(0.25)
    x = jnp.ones((400,))
    y, _ = d.apply({}, {}, x, key=KEY, train=True)
    vals = set(np.unique(np.asarray(y)).tolist())
    assert vals <= {0.0, float(np.float32(1 / 0.75))} and 0.6 < float((y > 0).mean()) < 0.9
    chex.assert_trees_all_equal(d.apply({}, {}, x)[0], x)
    chex.assert_trees_all_equal(Identity().apply({}, {}, x)[0], x)


def test_ridge_fit_matches_numpy_closed_form():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 1, 3)).astype(np.float32)
    Y = (X.reshape(50, 3) @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    r = RidgeRegression(alpha=0.5, output_shape=(1,))
    assert isinstance(r, Fittable)
    p, s = r.init(KEY, (1, 3))
    p, s = jax.jit(r.fit)(p, s, X, Y)
    Xf = X.reshape(50, 3)
    xm, ym = Xf.mean(0), Y.mean(0)
    K = np.linalg.solve((Xf - xm).T @ (Xf - xm) + 0.5 * np.eye(3), (Xf - xm).T @ (Y - ym))
    np.testing.assert_allclose(p["kernel"], K, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p["bias"], ym - xm @ K, rtol=1e-4, atol=1e-5)
    # zero weights drop rows: fitting on 50 rows + 10 junk rows with weight 0 is the same
    Xj = np.concatenate([X, 100 * np.ones((10, 1, 3), np.float32)])
    Yj = np.concatenate([Y, -100 * np.ones((10, 1), np.float32)])
    w = np.concatenate([np.ones(50), np.zeros(10)]).astype(np.float32)
    pw, _ = r.fit(p, s, Xj, Yj, weights=w)
    np.testing.assert_allclose(pw["kernel"], p["kernel"], rtol=1e-4, atol=1e-5)


def test_function_model_stateless_and_stateful():
    m = as_model((lambda key, shape: {"w": jnp.full(shape, 3.0)}, lambda p, x: x * p["w"]))
    assert isinstance(m, FunctionModel)
    m.build((2,))
    assert m.output_shape == (2,)
    p, s = m.init(KEY, (2,))
    np.testing.assert_array_equal(m.apply(p, s, jnp.ones((1, 2)))[0], [[3.0, 3.0]])

    def init(key, shape):
        return {}, {"count": jnp.zeros(())}

    def apply(params, state, x, *, key=None, train=False):
        return x + state["count"], {"count": state["count"] + 1}

    sm = FunctionModel(init, apply, stateful=True)
    p, s = sm.init(KEY, (1,))
    _, s = sm.apply(p, s, jnp.zeros((1, 1)))
    y, s = sm.apply(p, s, jnp.zeros((1, 1)))
    assert float(y[0, 0]) == 1.0 and float(s["count"]) == 2.0
    with pytest.raises(ConfigError, match="lambda or a local function"):
        FunctionModel.from_config(m.get_config())
    with pytest.raises(TypeError, match="cannot use str as a model"):
        as_model("mlp")


def test_linen_adapter_dense_and_batchnorm():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(4)(x)
            return nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)

    m = as_model(Net())
    assert isinstance(m, LinenModel)
    p, s = m.init(KEY, (3,))
    assert set(p) == {"Dense_0", "BatchNorm_0"} and set(s) == {"batch_stats"}
    x = jax.random.normal(KEY, (8, 3))
    y, s2 = m.apply(p, s, x, train=True)
    dense = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    np.testing.assert_allclose(s2["batch_stats"]["BatchNorm_0"]["mean"], 0.5 * dense.mean(0),
                               rtol=1e-5, atol=1e-6)
    _, s3 = m.apply(p, s2, x, train=False)
    chex.assert_trees_all_equal(s3, s2)
    cfg = serialize(LinenModel(nn.Dense(5)))
    m2 = deserialize(cfg)
    assert m2.module.features == 5


def test_nnx_adapter_params_state_train_and_from_class():
    class Block(nnx.Module):
        def __init__(self, din, dout, rngs):
            self.lin = nnx.Linear(din, dout, rngs=rngs)
            self.bn = nnx.BatchNorm(dout, momentum=0.5, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.drop(self.bn(self.lin(x)))

    m = as_model(Block(3, 4, nnx.Rngs(0)))
    assert isinstance(m, NNXModel) and is_model(m)
    p, s = m.init(KEY, (3,))
    assert set(p) == {"lin", "bn"} and set(s) == {"bn"}
    x = jax.random.normal(KEY, (16, 3))
    y_eval, s_eval = m.apply(p, s, x)
    chex.assert_trees_all_equal(s_eval, s)
    lin = x @ p["lin"]["kernel"] + p["lin"]["bias"]
    np.testing.assert_allclose(y_eval, lin / np.sqrt(1 + 1e-5) * p["bn"]["scale"] + p["bn"][
        "bias"], rtol=1e-4, atol=1e-5)
    y1, s1 = jax.jit(lambda p, s, k: m.apply(p, s, x, key=k, train=True))(p, s, KEY)
    y2, _ = m.apply(p, s, x, key=KEY, train=True)
    y3, _ = m.apply(p, s, x, key=jax.random.key(9), train=True)
    chex.assert_trees_all_close(y1, y2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y1, y3)
    np.testing.assert_allclose(s1["bn"]["mean"], 0.5 * lin.mean(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="from_class"):
        NNXModel.from_config(m.get_config())

    fm = NNXModel.from_class(nnx.Linear, in_features=3, out_features=2)
    a, _ = fm.init(jax.random.key(1), (3,))
    b, _ = fm.init(jax.random.key(1), (3,))
    c, _ = fm.init(jax.random.key(2), (3,))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a["kernel"], c["kernel"])
    again = deserialize(serialize(fm))
    chex.assert_trees_all_equal(again.init(jax.random.key(1), (3,))[0], a)


@pytest.mark.parametrize("model", [
    SequentialMLP(output_shape=(1, 2), n_layers=3, hidden_dim=7, activation="gelu", dropout=0.1),
    Linear(4, use_bias=False), Conv1D(3, kernel_size=5, strides=2, padding=1),
    LayerNorm(axis=(0, 1), epsilon=1e-3), BatchNorm(momentum=0.8), Dropout(0.3), Identity(),
    RidgeRegression(alpha=2.0, fit_intercept=False, output_shape=(1,)),
])
def test_builtin_config_round_trip(model):
    import json

    cfg = json.loads(json.dumps(serialize(model)))
    again = deserialize(cfg)
    assert type(again) is type(model) and again.get_config() == model.get_config()
