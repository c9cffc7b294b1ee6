"""docs/scale.md runs as written on 8 forced host devices and prints what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scale_doc_runs_on_eight_devices():
    code = ("from tests.doc_blocks import run_doc_page\n"
            "n, checked = run_doc_page('scale.md')\n"
            "print(n, len(checked))\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    n_blocks, n_checked = map(int, r.stdout.split()[-2:])
    assert n_blocks >= 6 and n_checked >= 12
