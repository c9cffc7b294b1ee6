"""Fixtures for training tests: a hand-written two-node graph with the apply contract."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

# test modules import their helpers as `train_helpers` (also under pytest-xdist)
sys.path.insert(0, str(Path(__file__).parent))

from train_helpers import TinyGraph  # noqa: E402


@pytest.fixture
def tiny_graph():
    return TinyGraph()


@pytest.fixture(scope="module")
def regression_data():
    rng = jax.random.key(42)
    kx, kn = jax.random.split(rng)
    x = jax.random.normal(kx, (64, 3))
    w = jnp.array([[1.0], [-2.0], [0.5]])
    y = jnp.tanh(x @ w) + 0.05 * jax.random.normal(kn, (64, 1))
    return x, y
