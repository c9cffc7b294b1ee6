"""Fixtures for training tests: a hand-written two-node graph with the apply contract."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest


class TinyGraph:
    """``enc`` (Dense in->hidden, tanh) -> ``head`` (Dense hidden->1), written by hand.

    Implements the graph contract of docs/architecture.md: ``apply(variables, inputs,
    *, key, train, active_nodes, capture) -> (outputs, state)`` and ``route_targets``.
    """

    def __init__(self, n_in: int = 3, hidden: int = 8, seed: int = 0, optimizer=None,
                 node_optimizers=None) -> None:
        k1, k2 = jax.random.split(jax.random.key(seed))
        self.variables = {
            "params": {
                "enc": {"w": jax.random.normal(k1, (n_in, hidden)) * 0.5, "b": jnp.zeros(hidden)},
                "head": {"w": jax.random.normal(k2, (hidden, 1)) * 0.5, "b": jnp.zeros(1)},
            },
            "state": {"enc": {}, "head": {}},
        }
        node_optimizers = node_optimizers or {}
        self.nodes = {lbl: SimpleNamespace(label=lbl, optimizer=node_optimizers.get(lbl))
                      for lbl in ("enc", "head")}
        self.optimizer = optimizer
        self.frozen_paths: set[str] = set()
        self.head_labels = ["enc"]

    def apply(self, variables, inputs, *, key=None, train=False, active_nodes=None, capture=()):
        p = variables["params"]
        x = inputs["enc"]
        h = jnp.tanh(x @ p["enc"]["w"] + p["enc"]["b"])
        out = {"enc": h}
        if active_nodes is None or "head" in active_nodes:
            out["head"] = h @ p["head"]["w"] + p["head"]["b"]
        return out, variables["state"]

    def route_targets(self, targets):
        t = targets["enc"]
        return {"enc": t, "head": t}

    def set_variables(self, v):
        self.variables = v


def hand_forward(params, x):
    h = jnp.tanh(x @ params["enc"]["w"] + params["enc"]["b"])
    return h @ params["head"]["w"] + params["head"]["b"]


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
