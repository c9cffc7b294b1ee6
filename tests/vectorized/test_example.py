"""examples/sweep.py runs, prints the comparison table and writes the HTML plot."""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sweep.py"


def test_sweep_example_prints_table_and_writes_plot(tmp_path):
    mod = runpy.run_path(str(SCRIPT), run_name="sweep_example")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        sweep = mod["main"](tmp_path)
    text = buf.getvalue()
    assert "6 members in 1 program(s)" in text
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("member"))
    rows = lines[header + 1:header + 7]
    assert [r.split()[0] for r in rows] == sweep.labels
    assert all(m.vectorized == ["train"] for m in sweep.members.values())
    html = (tmp_path / "sweep.html").read_text()
    assert "<svg" in html and "lr0.03_seed1" in html
    assert (tmp_path / "sweep.csv").read_text().startswith("member,overrides,epochs")
    # the fastest rate beats the slowest on validation loss
    h = sweep.histories()
    assert min(h["lr0.003_seed0"]["train.val_loss"]) < min(h["lr0.0003_seed0"]["train.val_loss"])
