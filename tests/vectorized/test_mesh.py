"""The replica axis shards over a ("replica", "data") mesh (8 forced host devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_replicas_shard_over_the_replica_axis():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=str(HERE.parents[1]))
    proc = subprocess.run([sys.executable, str(HERE / "mesh_replicas.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["spec"][0] == "replica"  # stacked variables: leading axis on "replica"
    assert out["loss_diff"] < 1e-6 and out["mean_diff"] < 1e-6  # same numbers as unsharded
    # a replica count that does not divide the replica axis is padded, not an error
    assert out["n_odd"] == 3 and out["pad_diff"] < 1e-6
