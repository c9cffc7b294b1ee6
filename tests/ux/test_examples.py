"""examples/classification_digits.py runs (skipped without scikit-learn)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "classification_digits.py"


def test_classification_digits_example():
    spec = importlib.util.spec_from_file_location("classification_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.main(n_epochs=12, verbose=False)
    assert report["test_accuracy"] > 0.93
    assert report["test_macro_f1"] > 0.93
    assert report["predict_agrees"] == 1.0
    assert 0.9 < report["last_train_accuracy"] <= 1.0  # computed in the training step
    assert 0.5 < report["mean_top_probability"] <= 1.0
