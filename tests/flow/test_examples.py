"""examples/flow_tour.py runs end to end and writes its three training artifacts."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_flow_tour_runs_and_writes_artifacts(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("flow_tour", ROOT / "examples" / "flow_tour.py")
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    result = tour.main([str(tmp_path), "--epochs", "2"])
    out = capsys.readouterr().out
    assert result["last"] < result["first"]  # the bigger model trains
    assert "frozen: ('encoder.read',)" in out and "switch: (2, 2, 4)" in out
    assert "map over slices: (2, 4, 2)" in out
    assert "loaded 4/4 arrays into 'encoder'" in out  # the standalone-trained encoder
    assert "encoder: 144 (39.0%)  partly frozen (72 frozen)" in out  # scan thawed, read frozen
    html = (tmp_path / "training.html").read_text()
    assert "<svg" in html or "<canvas" in html
    assert "<script src" not in html and "<link" not in html  # self-contained, no CDN
    rows = list(csv.reader((tmp_path / "metrics.csv").open()))
    assert rows[0][0] == "epoch" and {"loss", "val_loss"} <= set(rows[0]) and any("read_scale" in c for c in rows[0])
    assert len(rows) == 3
    log = (tmp_path / "training.log").read_text().splitlines()
    assert sum(line.lstrip().startswith("epoch") for line in log) == 2
    assert (tmp_path / "encoder_v1").is_dir() and (tmp_path / "profile.dot").exists()
