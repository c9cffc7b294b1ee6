"""The data benchmarks run (tiny sizes: their correctness checks and printed lines, not
their figures, which need the full sizes)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("script, argv, expect", [
    ("bench_data_zero_copy.py", ["--rows", "20000", "--cols", "8"],
     "ratio peak growth / new index bytes ="),
    ("bench_data_batches.py", ["--rows", "3000", "--cols", "8", "--repeats", "1"],
     "speed ratio modjax / numpy ="),
    ("bench_data_pairs.py", ["--rows", "600", "--groups", "6", "--repeats", "1"],
     "per-epoch speed ratio modjax / dense ="),
])
def test_benchmark_runs(script, argv, expect, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(BENCH / script), run_name="__main__")
    out = capsys.readouterr().out
    assert expect in out and "load average" in out
