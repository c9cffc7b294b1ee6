"""Built-in metrics computed inside the jitted training step: ``TrainPhase(metrics=[...])``
logs ``train_<metric>`` per epoch from in-scan statistics, exactly over the epoch's rows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ux_helpers import classifier, regression

from modjax import AppliedLoss, AppliedMetric, SimpleSampler, TrainPhase
from modjax.io.registry import deserialize, serialize
from modjax.observe import Observer


def test_train_accuracy_is_exact_over_the_epoch_and_compiles_once():
    # lr=0: the parameters stay put, so a training metric equals the metric of the fixed
    # model over the epoch's rows (each training row once per epoch)
    fs, graph = classifier(lr=0.0)
    train = fs.get_split("train")
    y = train.get_targets()[:, 0]
    want = float(np.mean(np.argmax(graph.predict(train), axis=-1) == y))
    # 180 rows in batches of 32: the last batch is padded, and padding must not count
    phase = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(32, shuffle=True, seed=0),
        losses=[AppliedLoss("sparse_cross_entropy", on="clf")], n_epochs=3,
        metrics=[AppliedMetric("accuracy", on="clf"),
                 AppliedMetric("f1", on="clf", average="macro")])
    res = phase.execute(graph, show_training_progress=False)
    acc = res.metrics.series("train_accuracy")
    assert len(acc) == 3 and acc == pytest.approx([want] * 3, abs=1e-6)
    assert len(res.metrics.series("train_f1")) == 3
    assert phase.n_traces == 1  # the metrics ride in the epoch's one compiled scan


def test_regression_metrics_match_numpy_on_the_training_rows():
    fs, graph = regression(lr=0.0)
    train = fs.get_split("train")
    pred = graph.predict(train, unscale=False)[:, 0]
    y = train.get_targets()[:, 0]
    phase = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(48, seed=0),
        losses=[AppliedLoss("mse", on="head")], n_epochs=1,
        metrics=[AppliedMetric("mae", on="head"), AppliedMetric("r2", on="head")])
    res = phase.execute(graph, show_training_progress=False)
    mae = float(np.mean(np.abs(pred - y)))
    r2 = 1.0 - float(np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))
    assert res.metrics.last("train_mae") == pytest.approx(mae, rel=1e-4)
    assert res.metrics.last("train_r2") == pytest.approx(r2, rel=1e-4, abs=1e-5)


def test_train_accuracy_rises_and_reaches_the_bar_and_observer():
    fs, graph = classifier()
    obs = Observer()
    phase = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(32, shuffle=True, seed=0),
        losses=[AppliedLoss("sparse_cross_entropy", on="clf")], n_epochs=8,
        metrics=[AppliedMetric("accuracy", on="clf")], observer=obs)
    buf = io.StringIO()
    res = phase.execute(graph, persist_progress=True, progress_file=buf)
    acc = res.metrics.series("train_accuracy")
    assert acc[-1] > acc[0] and acc[-1] > 0.85
    assert list(obs.trend("train_accuracy").values()) == pytest.approx(acc)
    last = buf.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert "8/8" in last and "train_accuracy=" in last


def test_train_metrics_config_round_trip_and_errors():
    ce = AppliedLoss("sparse_cross_entropy", on="clf")
    kw = dict(split="train", sampler=SimpleSampler(32, seed=0), losses=[ce])
    phase = TrainPhase.from_split("t", metrics=[AppliedMetric("top_k_accuracy", on="clf", k=2)],
                                  **kw)
    back = deserialize(serialize(phase))
    assert [m.get_config() for m in back.metrics] == [m.get_config() for m in phase.metrics]
    with pytest.raises(TypeError, match="metrics must be AppliedMetric objects"):
        TrainPhase.from_split("t", metrics=["accuracy"], **kw)
    with pytest.raises(ValueError, match="both be logged as 'train_accuracy'.*label="):
        TrainPhase.from_split("t", metrics=[AppliedMetric("accuracy", on="clf"),
                                            AppliedMetric("accuracy", on="other")], **kw)
    with pytest.raises(ValueError, match="not computed for ensembles"):
        TrainPhase.from_split("t", metrics=[AppliedMetric("accuracy", on="clf")], replicas=2,
                              **kw)
    # a head narrower than the labels is caught for training metrics too, before a step
    fs, graph = classifier(n_classes=3, width=2)
    bad = TrainPhase.from_split("t", split="train", sampler=SimpleSampler(32, seed=0),
                                losses=[AppliedLoss("mse", on="clf", inputs=["outputs",
                                                                              "outputs"])],
                                metrics=[AppliedMetric("accuracy", on="clf")])
    with pytest.raises(Exception, match="AppliedMetric 'clf.accuracy'.*labels 0..2"):
        bad.execute(graph, show_training_progress=False)
