"""Shared fixtures: every test runs in its own ExperimentContext."""

from __future__ import annotations

import pytest

from modjax.context import ExperimentContext


@pytest.fixture(autouse=True)
def fresh_context():
    """Isolate registrations: labels reused across tests never collide."""
    with ExperimentContext(registration_policy="overwrite").activate() as ctx:
        yield ctx
