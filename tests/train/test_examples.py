"""The README's main job: examples/quickstart.py runs and learns."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_quickstart_learns_and_reports():
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.main(n_epochs=12, verbose=False)
    assert report["compilations"] == 1
    assert 1 <= report["epochs_run"] <= 12
    assert report["final_train_loss"] < 0.5 * report["first_train_loss"]
    assert report["n_test"] == 300
    # predictions are back in SOH points: the error is well below the target's spread
    assert report["test_rmse_soh"] < 0.5 * report["soh_std"]
