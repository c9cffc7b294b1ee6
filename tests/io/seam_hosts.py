"""Minimal host classes implementing the persistence seam (docs/architecture.md)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

from modjax.graph.persistence import GraphPersistence
from modjax.io.registry import register
from modjax.paths import path_mask


@register("SeamGraph")
class SeamGraph(GraphPersistence):
    def __init__(self, label="g", widths=(3, 4), seed=0):
        self.label, self.widths, self.seed = label, tuple(widths), seed
        self.variables = None
        self.opt_state = None
        self.frozen_paths = set()
        self._opt = optax.adam(1e-2)

    def get_config(self):
        return {"label": self.label, "widths": list(self.widths), "seed": self.seed}

    @classmethod
    def from_config(cls, cfg):
        return cls(**cfg)

    def build(self):
        k1, k2 = jax.random.split(jax.random.key(self.seed))
        a, b = self.widths
        self.variables = {
            "params": {"enc": {"dense": {"w": jax.random.normal(k1, (a, b))}},
                       "head": {"w": jax.random.normal(k2, (b, 1))}},
            "state": {"enc": {"dense": {}, "count": jnp.zeros((), jnp.int32)}, "head": {}}}
        self.opt_state = self._opt.init(self.variables["params"])
        return self

    def set_variables(self, v):
        chex.assert_trees_all_equal_shapes_and_dtypes(v, self.variables)
        self.variables = v

    def set_opt_state(self, s):
        self.opt_state = s

    def freeze(self, paths):
        path_mask(self.variables["params"], paths)
        self.frozen_paths |= set(paths)

    def unfreeze(self, paths):
        self.frozen_paths -= set(paths)

    def train_step(self):
        params = self.variables["params"]
        g = jax.tree.map(jnp.ones_like, params)
        up, self.opt_state = self._opt.update(g, self.opt_state, params)
        self.variables = {**self.variables, "params": optax.apply_updates(params, up)}
