"""Built-in metrics: values equal scikit-learn's over a whole split (several padded
chunks, weights), computed inside the jitted pass; classification end to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ux_helpers import classifier, regression

from modjax import (
    AppliedLoss,
    AppliedMetric,
    EvalMetric,
    EvalPhase,
    Evaluation,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError
from modjax.train import probabilities

skm = pytest.importorskip("sklearn.metrics")


def _stacked(m, pred, target, chunks=3):
    parts = [m.batch_stats([p, t]) for p, t in zip(np.array_split(pred, chunks),
                                                       np.array_split(target, chunks))]
    return float(m.finalize(jax.tree.map(lambda *a: jnp.stack(a), *parts)))


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(99, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(99, 1))
    pred = logits.argmax(1)
    y = labels[:, 0]
    assert _stacked(AppliedMetric("accuracy", on="h"), logits, labels) == pytest.approx(
        skm.accuracy_score(y, pred), abs=1e-6)
    assert _stacked(AppliedMetric("top_k_accuracy", on="h", k=2), logits, labels) == \
        pytest.approx(skm.top_k_accuracy_score(y, logits, k=2), abs=1e-6)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        got = _stacked(AppliedMetric(name, on="h", average="macro"), logits, labels)
        assert got == pytest.approx(fn(y, pred, average="macro", zero_division=0), abs=1e-6)
    # binary: a width-1 logits head thresholded at 0
    z = rng.normal(size=(50, 1)).astype(np.float32)
    yb = rng.integers(0, 2, size=(50, 1))
    pb = (z[:, 0] >= 0).astype(int)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert _stacked(AppliedMetric(name, on="h"), z, yb) == pytest.approx(
            fn(yb[:, 0], pb), abs=1e-6)


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    t = rng.normal(loc=100.0, scale=3.0, size=(101, 2)).astype(np.float32)
    p = (t + rng.normal(size=(101, 2))).astype(np.float32)
    assert _stacked(AppliedMetric("mae", on="h"), p, t) == pytest.approx(
        skm.mean_absolute_error(t, p), rel=1e-5)
    assert _stacked(AppliedMetric("rmse", on="h"), p, t) == pytest.approx(
        np.sqrt(skm.mean_squared_error(t, p)), rel=1e-5)
    assert _stacked(AppliedMetric("r2", on="h"), p, t, chunks=7) == pytest.approx(
        skm.r2_score(t, p), abs=1e-4)


def test_metric_shape_errors_and_names():
    with pytest.raises(ValueError, match="did you mean.*accuracy"):
        AppliedMetric("acuracy", on="h")
    m = AppliedMetric("rmse", on="h")
    with pytest.raises(ShapeMismatchError, match=r"'h.rmse'.*node 'h'.*\(4, 3\).*\(4, 1\)"):
        m.batch_stats([jnp.zeros((4, 3)), jnp.zeros((4, 1))])


def test_eval_phase_metrics_padded_chunks_and_probabilities():
    fs, graph = classifier()
    ce = AppliedLoss("sparse_cross_entropy", on="clf")
    train = TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                  losses=[ce], n_epochs=15)
    train.execute(graph, show_training_progress=False)
    mets = [AppliedMetric("accuracy", on="clf"), AppliedMetric("f1", on="clf", average="macro")]
    # 60 test rows in chunks of 7: the last chunk is padded; padding must not count
    ev = EvalPhase.from_split("test", split="test", losses=[ce], metrics=mets, batch_size=7)
    res = ev.execute(graph)
    logits = res.stacked_tensors("clf", "outputs")
    y = res.stacked_tensors("clf", "targets")[:, 0]
    pred = logits.argmax(-1)
    assert res.metrics.last("clf.accuracy") == pytest.approx(skm.accuracy_score(y, pred),
                                                               abs=1e-6)
    assert res.metrics.last("clf.f1") == pytest.approx(
        skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert res.metrics.last("clf.accuracy") > 0.9
    probs = np.asarray(probabilities(logits))
    assert probs.shape == (len(y), 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # config round trip keeps the metrics
    from modjax.io import deserialize, serialize
    again = deserialize(serialize(ev))
    assert [m.get_config() for m in again.metrics] == [m.get_config() for m in mets]


def test_evaluation_callback_logs_val_metrics():
    fs, graph = regression()
    mse = AppliedLoss("mse", on="head")
    val = EvalPhase.from_split("val", split="test")
    cb = Evaluation(eval_phase=val, metrics=[EvalMetric(metric=AppliedMetric("r2", on="head"))])
    train = TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                  losses=[mse], n_epochs=3, callbacks=[cb])
    res = train.execute(graph, show_training_progress=False)
    r2 = res.metrics.series("val_r2")
    assert len(r2) == 3 and r2[-1] > r2[0]
