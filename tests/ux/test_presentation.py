"""Notebook views, DOT export, summary dtypes/bytes, the modjax logger."""

from __future__ import annotations

import logging
import shutil

import pytest
from ux_helpers import regression

from modjax import (
    AppliedLoss,
    EarlyStopping,
    EvalLossMetric,
    EvalPhase,
    Evaluation,
    SimpleSampler,
    TrainPhase,
)
from modjax.observe import Observer


def test_notebook_views_of_graph_featureset_results_observer():
    fs, graph = regression()
    md = graph._repr_markdown_()
    assert md.startswith("**ModelGraph") and "```mermaid\nflowchart" in md
    assert "SequentialMLP" in md and "float32" in md
    assert "<pre class=\"mermaid\">" in graph._repr_html_()
    fmd = fs._repr_markdown_()
    assert "FeatureSet 'reg': 200 samples" in fmd and "StandardScaler" in fmd
    assert "train (160), test (40)" in fmd and "<pre>" in fs._repr_html_()
    obs = Observer()
    mse = AppliedLoss("mse", on="head")
    res = TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                losses=[mse], n_epochs=2, observer=obs).execute(
        graph, show_training_progress=False)
    assert "train_loss" in res._repr_markdown_() and "<table" not in res._repr_html_()
    assert "TrainResults &#x27;train&#x27;: 2 epoch(s)" in res._repr_html_()
    omd = obs._repr_markdown_()
    assert "train_loss" in omd and "head.mse" in omd


def test_model_graph_dot_and_svg(tmp_path):
    fs, graph = regression()
    text = graph.dot()
    assert text.startswith('digraph "') and '"fs:reg" -> "head" [label="(1, 3)"];' in text
    assert '"head" [label="head\\nSequentialMLP\\n(1,)"];' in text
    if shutil.which("dot") is None:
        with pytest.raises(FileNotFoundError, match="Graphviz"):
            graph.svg()
    else:
        assert graph.svg(tmp_path / "g.svg").startswith(b"<?xml")


def test_summary_has_dtypes_and_bytes():
    fs, graph = regression()
    s = graph.summary()
    header = s.splitlines()[1]
    assert "dtype" in header and "bytes" in header
    # 3*16+16 + 16*1+1 params in float32: 81 * 4 bytes
    assert "float32  324" in s and s.endswith("bytes: 324")


def test_early_stopping_logs_through_the_modjax_logger(caplog):
    fs, graph = regression()
    mse = AppliedLoss("mse", on="head")
    val = EvalPhase.from_split("val", split="test")
    phase = TrainPhase.from_split(
        "train", split="train", sampler=SimpleSampler(32, seed=0), losses=[mse], n_epochs=6,
        callbacks=[Evaluation(eval_phase=val, metrics=[EvalLossMetric(loss=mse)]),
                   EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0,
                                 restore_best=True)])
    logger = logging.getLogger("modjax")
    assert logger.getEffectiveLevel() == logging.WARNING  # quiet by default
    with caplog.at_level(logging.WARNING, logger="modjax"):
        phase.execute(graph, show_training_progress=False)
    assert not caplog.records
    with caplog.at_level(logging.INFO, logger="modjax"):
        phase.execute(graph, show_training_progress=False)
    msgs = [r.getMessage() for r in caplog.records if r.name.startswith("modjax")]
    assert any("stopped phase 'train' after epoch 1" in m for m in msgs), msgs
    assert any("restored the variables of epoch 0" in m for m in msgs), msgs
