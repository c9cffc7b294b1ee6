"""Scale tests: multi-process runs on localhost and multi-device runs in subprocesses."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-process or multi-device subprocess test "
                                       "(runs in CI; deselect locally with -m 'not slow')")


# worker scripts run as subprocesses with their own argv; they are not test modules
collect_ignore = ["mp_train.py", "mp_experiment.py", "mesh8.py"]
