"""benchmarks/run_device_suite.sh runs end to end on this machine's backend."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run_device_suite.sh"


def _suite(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_options_are_checked():
    r = _suite("--bogus", timeout=60)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = _suite("--help", timeout=60)
    assert r.returncode == 0 and "--quick" in r.stdout and "--no-tests" in r.stdout


def test_test_step_names_existing_tests_that_collect():
    text = SCRIPT.read_text()
    step = re.search(r'-m pytest (.*?)\n(?!\s*tests/)', text.replace("\\\n", " "), re.S)
    assert step is not None, "the suite has no pytest step"
    args = [a for a in shlex.split(step.group(1)) if a not in ("-q",)]
    paths = [a for a in args if a.startswith("tests/")]
    assert paths and all((ROOT / p.split("::")[0]).exists() for p in paths), paths
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "test_device_suite" not in r.stdout  # the suite never runs itself


@pytest.mark.slow
def test_quick_suite_runs_every_benchmark_and_prints_figures():
    r = _suite("--quick", "--no-tests", sys.executable)
    out = r.stdout
    assert r.returncode == 0, out[-4000:] + r.stderr[-2000:]
    steps = re.findall(r"^=== .*?benchmarks/(bench_\w+)\.py", out, re.M)
    assert steps == ["bench_train_loop", "bench_data_batches", "bench_graph_apply",
                     "bench_checkpoint", "bench_out_of_core"]
    assert out.count("--- ok") == 6 and "!!! failed" not in out
    assert re.search(r"^backend \w+ \| devices", out, re.M)
    # the benchmarks import this checkout's modjax, whatever else is installed
    where = re.search(r"\| modjax from (\S+)", out).group(1)
    assert Path(where).resolve().is_relative_to(ROOT), where
    assert "device suite: every step passed" in out
    # the out-of-core benchmark printed its ratio against the bound and met it
    assert re.search(r"claim \(every run < 0\.25 x file size.*\): met", out), out[-3000:]
