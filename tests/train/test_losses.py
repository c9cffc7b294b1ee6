"""Loss functions (values against numpy), reductions with weights/masks, references."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax.errors import ConfigError
from modjax.io.registry import deserialize, serialize
from modjax.train.losses import AppliedLoss, Loss, LossRef

P = np.array([[0.2, 0.9], [0.7, 0.1], [0.5, 0.5]], dtype=np.float32)
T = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)


def test_regression_losses_match_numpy():
    np.testing.assert_allclose(Loss("mse")(P, T), ((P - T) ** 2).mean(1), rtol=1e-6)
    np.testing.assert_allclose(Loss("mae")(P, T), np.abs(P - T).mean(1), rtol=1e-6)
    d = np.abs(P * 4 - T)
    hub = np.where(d <= 1.0, 0.5 * d**2, d - 0.5).mean(1)
    np.testing.assert_allclose(Loss("huber", loss_kwargs={"delta": 1.0})(P * 4, T), hub, rtol=1e-6)


def test_classification_losses_match_numpy():
    bce = -(T * np.log(P) + (1 - T) * np.log(1 - P)).mean(1)
    np.testing.assert_allclose(Loss("bce")(P, T), bce, rtol=1e-5)
    logits = np.log(P / (1 - P))
    np.testing.assert_allclose(Loss("bce_with_logits")(logits, T), bce, rtol=1e-4)
    lg = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    lsm = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    onehot = np.eye(3, dtype=np.float32)[[0, 2]]
    np.testing.assert_allclose(Loss("cross_entropy")(lg, onehot), -(onehot * lsm).sum(1), rtol=1e-5)
    labels = np.array([[0.0], [2.0]], dtype=np.float32)  # scalar target key -> (n, 1)
    np.testing.assert_allclose(Loss("sparse_cross_entropy")(lg, labels), -lsm[[0, 1], [0, 2]],
                               rtol=1e-5)


def test_metric_learning_losses():
    a = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    p = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    n = np.array([[3.0, 0.0], [1.0, 1.5]], np.float32)
    np.testing.assert_allclose(Loss("triplet", loss_kwargs={"margin": 1.0})(a, p, n),
                               [0.0, 0.5], atol=1e-5)
    sim = np.array([[1.0], [0.0]], np.float32)
    np.testing.assert_allclose(Loss("contrastive")(a, n, sim), [9.0, 0.25], atol=1e-5)
    np.testing.assert_allclose(Loss("cosine")(a + 1, p + 1),
                               optax.losses.cosine_distance(a + 1, p + 1), rtol=1e-6)


def test_reduce_honours_weights_and_mask():
    al = AppliedLoss(Loss("mse"), on="head", inputs=["outputs", "targets"])
    vals = jnp.array([1.0, 2.0, 4.0, jnp.nan])
    w = jnp.array([1.0, 1.0, 2.0, 1.0])
    m = jnp.array([True, True, True, False])
    assert float(al.reduce(vals, weights=w, mask=m)) == pytest.approx((1 + 2 + 8) / 4)
    total = AppliedLoss(Loss("mse", reduction="sum"), on="head", weight=0.5)
    assert float(total.reduce(vals, weights=w, mask=m)) == pytest.approx(5.5)
    # a fully masked batch contributes exactly zero
    assert float(al.reduce(vals, mask=jnp.zeros(4, bool))) == 0.0


def test_references_parse():
    r = LossRef.parse("anchor.Encoder.outputs", owner="x")
    assert (r.prefix, r.domain, r.key) == (("anchor", "Encoder"), "outputs", None)
    assert LossRef.parse("tags.group", owner="x").key == "group"
    with pytest.raises(ValueError, match="names no domain"):
        AppliedLoss("mse", on="head", inputs=["outputs", "targetz"])
    with pytest.raises(ValueError, match="one tag key"):
        LossRef.parse("tags", owner="x")
    with pytest.raises(TypeError, match="list or dict"):
        AppliedLoss("mse", on="head", inputs="outputs")


def test_keyword_inputs_and_config_round_trip():
    al = AppliedLoss("triplet", on="enc", label="trip",
                     inputs={"anchor": "anchor.outputs", "positive": "positive.outputs",
                             "negative": "negative.outputs"}, weight=2.0)
    back = deserialize(serialize(al))
    assert back.get_config() == al.get_config()
    assert back.inputs == al.inputs and back.weight == 2.0 and back.label == "trip"
    vals = back.compute([jnp.zeros((1, 2)), jnp.ones((1, 2)), jnp.zeros((1, 2))])
    assert float(vals[0]) == pytest.approx(np.sqrt(2.0) + 1.0, rel=1e-5)


def test_loss_errors_and_custom_callables():
    with pytest.raises(ValueError, match="unknown loss 'msee'.*mse"):
        Loss("msee")
    with pytest.raises(ValueError, match="reduction"):
        Loss("mse", reduction="avg")
    with pytest.raises(ConfigError, match="lambda"):
        Loss(lambda p, t: (p - t) ** 2).get_config()
    cfg = serialize(Loss(_squared_log))
    with pytest.raises(ConfigError, match="allow_packaged_code"):
        deserialize(cfg)
    back = Loss.from_config(cfg["config"], allow_packaged_code=True)
    np.testing.assert_allclose(back(P, T), _squared_log(P, T).mean(1), rtol=1e-6)


def _squared_log(pred, target):
    return jnp.square(jnp.log1p(pred) - jnp.log1p(target))
