"""docs/bridges.md runs with its printed values, and examples/bridges_tour.py runs and learns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("skops")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from doc_blocks import run_doc_page  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_bridges_page_runs_and_prints_what_it_says():
    n_blocks, checked = run_doc_page("bridges.md", ellipsis=True)
    assert n_blocks == 9 and len(checked) == 12


def test_bridges_tour_trains_fits_and_reloads(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("bridges_tour", EXAMPLES / "bridges_tour.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bridges_tour", mod)  # its Encoder is imported on load
    spec.loader.exec_module(mod)
    report = mod.main(n_epochs=8, verbose=False)
    assert report["final_train_loss"] < 0.5 * report["first_train_loss"]
    assert report["val_mse_ridge"] < 0.3 * report["target_var"]
    assert report["reload_identical"] is True
