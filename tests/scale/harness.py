"""Launch N JAX processes on 127.0.0.1 (free port, timeouts, killed by pid on failure)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait()


def run_processes(script: str, *args: str, n: int = 2, local_devices: int = 2,
                  timeout: float = 150.0) -> list[dict]:
    """Run ``script`` (a file in this directory) as ``n`` processes of one JAX job.

    Each process gets ``process_id coordinator_port local_devices *args`` on its command
    line and must print one JSON line last. Returns the parsed lines by process id.
    A process failing or the timeout passing kills every process (by its pid's group).
    """
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent.parent))
    env.pop("XLA_FLAGS", None)
    logs = Path(tempfile.mkdtemp(prefix="modjax-mp-"))
    outs = [open(logs / f"out{i}", "w+") for i in range(n)]
    errs = [open(logs / f"err{i}", "w+") for i in range(n)]
    procs = [subprocess.Popen([sys.executable, str(HERE / script), str(i), str(port),
                               str(local_devices), *args],
                              stdout=outs[i], stderr=errs[i], text=True, env=env,
                              start_new_session=True) for i in range(n)]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        failed = [p for p in procs if p.poll() != 0]
        if failed:
            _kill(procs)
            report = "\n".join(f"--- process {i} rc={p.returncode}\n"
                               f"{(logs / f'err{i}').read_text()[-4000:]}"
                               for i, p in enumerate(procs))
            raise AssertionError(f"multi-process run of {script} failed or timed out:\n{report}")
    finally:
        _kill(procs)
        for f in outs + errs:
            f.close()
    texts = [(logs / f"out{i}").read_text() for i in range(n)]
    for i, t in enumerate(texts):
        assert t.strip(), f"process {i} of {script} printed nothing:\n" + \
            (logs / f"err{i}").read_text()[-4000:]
    return [json.loads(t.strip().splitlines()[-1]) for t in texts]


def run_single(script: str, *args: str, devices: int = 1, timeout: float = 150.0) -> dict:
    """Run ``script`` as a plain single process (no distributed runtime: process_id -1)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(HERE.parent.parent),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    r = subprocess.run([sys.executable, str(HERE / script), "-1", "0", str(devices), *args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])
