"""Vectorized-training tests; the mesh worker script is run as a subprocess."""

from __future__ import annotations

collect_ignore = ["mesh_replicas.py"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-device subprocess test (runs in CI)")
