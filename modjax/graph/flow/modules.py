"""Parameter-free flow primitives: merges (Add, Mean, Cat), Reshape and StateAdd."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.flow.base import FlowModule, as_inputs
from modjax.graph.merges import merge_concat, merge_mean, merge_sum
from modjax.io.registry import register

__all__ = ["Add", "Mean", "Cat", "Reshape", "StateAdd"]


@register("Add")
class Add(FlowModule):
    """Merge: element-wise sum of all inputs (residual and skip connections).

    Example:
        >>> import jax.numpy as jnp
        >>> Add().apply({}, {}, (jnp.ones(2), 2 * jnp.ones(2)))[0].tolist()
        [3.0, 3.0]
    """

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        return merge_sum(as_inputs(x), "Add"), state


@register("Mean")
class Mean(FlowModule):
    """Merge: element-wise mean of all inputs.

    Example:
        >>> import jax.numpy as jnp
        >>> Mean().apply({}, {}, (jnp.zeros(2), 2 * jnp.ones(2)))[0].tolist()
        [1.0, 1.0]
    """

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        return merge_mean(as_inputs(x), "Mean"), state


@register("Cat")
class Cat(FlowModule):
    """Merge: concatenate all inputs along ``dim``.

    Args:
        dim: axis of the *batched* arrays (``1`` is the first per-sample axis, as in
            goDl's ``Cat(1)`` on ``[B, D]``; negative counts from the end).

    Example:
        >>> import jax.numpy as jnp
        >>> Cat(1).apply({}, {}, (jnp.ones((2, 3)), jnp.ones((2, 1))))[0].shape
        (2, 4)
    """

    def __init__(self, dim: int = -1) -> None:
        if int(dim) == 0:
            raise ValueError("Cat(dim=0) would concatenate along the batch axis; use dim >= 1 "
                             "or a negative dim")
        super().__init__(dim=int(dim))
        self.dim = int(dim)

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        # ``dim`` counts the batch axis (goDl's convention); the merges count per sample
        return merge_concat(as_inputs(x), self.dim - 1 if self.dim > 0 else self.dim,
                            f"Cat({self.dim})"), state


@register("Reshape")
class Reshape(FlowModule):
    """Reshape each sample to ``shape`` (the batch axis is kept; one entry may be ``-1``).

    goDl's ``Reshape`` also reshapes the batch axis; JAX models are batch-polymorphic,
    so here the shape is per sample: ``Reshape(4, 2)`` turns ``(B, 8)`` into
    ``(B, 4, 2)``.

    Example:
        >>> import jax.numpy as jnp
        >>> Reshape(4, 2).apply({}, {}, jnp.zeros((3, 8)))[0].shape
        (3, 4, 2)
    """

    def __init__(self, *shape: int) -> None:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(s) for s in shape)
        if sum(s == -1 for s in shape) > 1 or any(s < -1 or s == 0 for s in shape):
            raise ValueError(f"Reshape shape {shape}: positive sizes and at most one -1")
        super().__init__()
        self.shape = shape

    def get_config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> Reshape:
        return cls(*config["shape"])

    def __repr__(self) -> str:
        return f"Reshape{self.shape}"

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        per_sample = x.shape[1:]
        known = math.prod(s for s in self.shape if s != -1)
        total = math.prod(per_sample)
        if (-1 in self.shape and total % known) or (-1 not in self.shape and total != known):
            raise ShapeMismatchError(
                f"Reshape{self.shape} cannot reshape per-sample shape {tuple(per_sample)} "
                f"({total} elements)")
        return jnp.reshape(x, (x.shape[0], *self.shape)), state


@register("StateAdd")
class StateAdd(FlowModule):
    """Additive state cell for forward references: ``stream + state``.

    Wired as ``.through(StateAdd()).using("memory").tag("memory")``: the reference
    is read from the previous call's ``variables["state"]`` (zeros on the first call,
    so the cell passes the stream through) and the new value is stored for the next.

    Example:
        >>> import jax.numpy as jnp
        >>> StateAdd().apply({}, {}, (jnp.ones(2), jnp.ones(2)))[0].tolist()
        [2.0, 2.0]
    """

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        xs = as_inputs(x)
        out = xs[0]
        for other in xs[1:]:
            out = out + other
        return out, state
