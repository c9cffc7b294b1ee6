"""examples/data_tour.py runs end to end and learns something."""

from __future__ import annotations

import runpy
from pathlib import Path

TOUR = Path(__file__).resolve().parents[2] / "examples" / "data_tour.py"


def test_data_tour_runs(capsys):
    ns = runpy.run_path(str(TOUR), run_name="data_tour")
    out = ns["main"]()
    text = capsys.readouterr().out
    assert "train/test disjoint: True" in text
    assert "compilations: 1" in text
    assert "feature_shape (1, 16) target_shape (1,)" in text
    assert out["mae"] < 0.02  # SOH spans ~0.76..1.0; a useless model is off by ~0.06
