"""Validation curves reach the observer and the progress bar; unknown keyword
arguments are errors; show_progress works for evaluation."""

from __future__ import annotations

import io

import pytest
from ux_helpers import classifier

from modjax import (
    AppliedLoss,
    AppliedMetric,
    EvalLossMetric,
    EvalMetric,
    EvalPhase,
    Evaluation,
    Experiment,
    SimpleSampler,
    TrainPhase,
)
from modjax.observe import Observer


def _phase(n_epochs=3, observer=None):
    ce = AppliedLoss("sparse_cross_entropy", on="clf")
    val = EvalPhase.from_split("val", split="test")
    cb = Evaluation(eval_phase=val, metrics=[
        EvalLossMetric(loss=ce), EvalMetric(metric=AppliedMetric("accuracy", on="clf"))])
    return TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                 losses=[ce], n_epochs=n_epochs, callbacks=[cb],
                                 observer=observer)


def test_validation_curves_reach_observer_plot_and_bar(tmp_path):
    fs, graph = classifier()
    obs = Observer()
    phase = _phase(observer=obs)
    buf = io.StringIO()
    res = phase.execute(graph, persist_progress=True, progress_file=buf)
    tags = obs.history_tags()
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(tags)
    val = obs.trend("val_loss").values()
    assert len(val) == 3
    assert list(val) == pytest.approx(res.metrics.series("val_loss"))
    assert list(obs.trend("val_accuracy").values()) == pytest.approx(
        res.metrics.series("val_accuracy"))
    obs.plot_html(tmp_path / "curves.html", "train_loss", "val_loss")
    html = (tmp_path / "curves.html").read_text()
    assert "val_loss" in html
    # the persisted bar keeps its final line with the last epoch's values
    text = buf.getvalue()
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/3" in last and "val_loss=" in last and "val_accuracy=" in last


def test_unknown_keyword_arguments_are_errors():
    fs, graph = classifier()
    phase = _phase(n_epochs=1)
    with pytest.raises(TypeError, match="show_trainig_progress"):
        phase.execute(graph, show_trainig_progress=False)
    with pytest.raises(TypeError, match="n_epoch"):
        phase.execute(graph, n_epoch=5)
    with pytest.raises(TypeError, match="verbose"):
        EvalPhase.from_split("t", split="test").execute(graph, verbose=True)
    exp = Experiment("kw", registration_policy="overwrite")
    with pytest.raises(TypeError, match="did you mean.*show_training_progress"):
        exp.run_phase(phase, show_trainig_progress=False)
    assert phase.epochs_run == 0  # nothing ran


def test_eval_show_progress_draws_a_bar_and_gives_the_same_results():
    fs, graph = classifier()
    buf = io.StringIO()
    mets = [AppliedMetric("accuracy", on="clf")]
    ce = AppliedLoss("sparse_cross_entropy", on="clf")
    quiet = EvalPhase.from_split("t", split="test", losses=[ce], metrics=mets,
                                 batch_size=4).execute(graph)
    shown = EvalPhase.from_split("t", split="test", losses=[ce], metrics=mets,
                                 batch_size=4).execute(graph, show_progress=True,
                                                       persist_progress=True, progress_file=buf)
    assert "15/15" in buf.getvalue()  # 60 rows in chunks of 4
    assert shown.metrics.last("clf.accuracy") == quiet.metrics.last("clf.accuracy")
    assert shown.metrics.last("clf.sparse_cross_entropy") == pytest.approx(
        quiet.metrics.last("clf.sparse_cross_entropy"), rel=1e-6)
    assert shown.stacked_tensors("clf", "outputs").shape == (60, 3)
