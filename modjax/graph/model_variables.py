"""The variables of a ``ModelGraph``: reading them, checked replacement, optimizer state.

A mixin of :class:`~modjax.graph.model_graph.ModelGraph`, which supplies the nodes, the
shape inference (``_ensure_shapes``) and the build flags these methods set. It is kept
apart because replacing variables is a validation of a pytree against the inferred
shapes, separate from building and running the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import LabelPathError, ShapeMismatchError
from modjax.graph.model_init import _as_key
from modjax.graph.nodes import ModelNode
from modjax.paths import flatten_paths, get_at

__all__ = ["ModelGraphVariables"]


def _as_array(value: Any) -> Any:
    # a concrete jax.Array is kept as is (what jnp.asarray returns for it, minus its
    # fixed cost: a phase writes back every leaf of the graph once per execute)
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        return value
    return jnp.asarray(value)


class ModelGraphVariables:
    """Variables mixin of ModelGraph (``variables``, ``set_variables``, ``opt_state``)."""

    # ================================================================ variables
    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        """The current ``{"params", "state"}`` pytree (after :meth:`build`)."""
        self._require_built("reading variables")
        return self._variables  # type: ignore[return-value]

    def abstract_variables(self) -> dict[str, dict[str, Any]]:
        """``jax.ShapeDtypeStruct`` pytree of the variables (no allocation, no tracing:
        it comes from the shape inference, cached until the wiring changes)."""
        shapes = self._ensure_shapes()
        nodes = [(nid, n.label) for nid, n in self._nodes.items() if isinstance(n, ModelNode)]
        return {"params": {lab: shapes[nid].abstract_params for nid, lab in nodes},
                "state": {lab: shapes[nid].abstract_state for nid, lab in nodes}}

    def set_variables(self, variables: Mapping[str, Any]) -> None:
        """Replace the variables after checking structure, shapes and dtypes (atomic).

        Raises:
            LabelPathError: a node entry is missing or extra (names the path).
            ShapeMismatchError: a leaf has another shape or dtype (names the path).
        """
        self._sync_labels()
        expected = self.abstract_variables()
        exp_flat, got_flat = flatten_paths(expected), flatten_paths(dict(variables))
        missing = sorted(set(exp_flat) - set(got_flat))
        extra = sorted(set(got_flat) - set(exp_flat))
        if missing or extra:
            raise LabelPathError(
                f"variables for graph {self.label!r} do not match its structure: missing "
                f"{missing[:6]}, unexpected {extra[:6]}")
        for path, want in exp_flat.items():
            got = got_flat[path]
            shape, dtype = tuple(jnp.shape(got)), jnp.result_type(got)
            if shape == tuple(want.shape) and dtype != want.dtype:
                coll, _, rest = path.partition(".")
                raise ShapeMismatchError(
                    f"dtype change: variables {coll} at {rest!r} are {dtype}, graph "
                    f"{self.label!r} stores {want.dtype} there (the shape {shape} matches); "
                    f"cast them (e.g. jax.tree.map(lambda a: a.astype('{want.dtype}'), v)) or "
                    "give the layer param_dtype=... to store another dtype")
            if shape != tuple(want.shape) or dtype != want.dtype:
                coll, _, rest = path.partition(".")
                raise ShapeMismatchError(
                    f"variables {coll} at {rest!r} have shape {shape} {dtype}, graph "
                    f"{self.label!r} expects {tuple(want.shape)} {want.dtype}")
        shapes = self._ensure_shapes()
        new = {"params": dict(variables["params"]), "state": dict(variables["state"])}
        self._variables = jax.tree.map(_as_array, new)
        self._shapes = shapes
        self._var_meta = {nid: (n.label, id(n.model), shapes[nid].input_shapes[0],
                                shapes[nid].output_shape)
                          for nid, n in self._nodes.items() if isinstance(n, ModelNode)}
        if self._key is None:
            self._key = _as_key(None)
        self._built = True
        self._init_opt_state()

    def parameters_at(self, path: str | tuple[str, ...]) -> Any:
        """The params subtree at a label path (``"Encoder"``, ``"Encoder.layer_0"``)."""
        self._require_built("parameters_at")
        return get_at(self._variables["params"], path, what=f"params of graph {self.label!r}")

    def state_at(self, path: str | tuple[str, ...]) -> Any:
        """The state subtree at a label path."""
        self._require_built("state_at")
        return get_at(self._variables["state"], path, what=f"state of graph {self.label!r}")

    @property
    def opt_state(self) -> Any:
        """State of the attached optimizer (initialised by :meth:`build`)."""
        return self._opt_state

    def set_opt_state(self, opt_state: Any) -> None:
        """Store the optimizer state (the training loop writes it back here)."""
        self._opt_state = opt_state
        if self._variables is not None:
            self._opt_params_def = jax.tree.structure(self._variables["params"])
