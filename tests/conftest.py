"""Shared fixtures: every test runs in its own ExperimentContext."""

from __future__ import annotations

import pytest

from modjax.context import ExperimentContext


@pytest.fixture(autouse=True)
def fresh_context():
    """Isolate registrations: labels reused across tests never collide."""
    with ExperimentContext(registration_policy="overwrite").activate() as ctx:
        yield ctx


@pytest.fixture(autouse=True, scope="module")
def _fresh_programs_per_module():
    """Compiled programs are shared process-wide by structure; tests that count
    compilations start from an empty cache."""
    from modjax.train.programs import clear_program_cache

    clear_program_cache()
    yield

