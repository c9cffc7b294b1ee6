"""The merge functions behind both graph kinds (ModelGraph merge nodes and flow merges).

Each takes the batched inputs (batch axis first) and a ``who`` naming the merging node
for errors, which name every input with its per-sample shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError

__all__ = ["merge_sum", "merge_mean", "merge_stack", "merge_concat", "batched_axis",
           "check_same_shapes"]


def batched_axis(axis: int) -> int:
    """Per-sample axis (no batch) -> axis of the batched array."""
    return axis + 1 if axis >= 0 else axis


def _detail(values: Sequence[jax.Array], names: Sequence[str] | None) -> str:
    names = names or [f"input {i}" for i in range(len(values))]
    return ", ".join(f"{n} {tuple(v.shape[1:])}" for n, v in zip(names, values))


def check_same_shapes(values: Sequence[jax.Array], who: str,
                      names: Sequence[str] | None = None) -> None:
    """Raise unless every input has the same per-sample shape.

    Raises:
        ShapeMismatchError: naming ``who`` and each input's shape.
    """
    if len({tuple(v.shape[1:]) for v in values}) > 1:
        raise ShapeMismatchError(f"{who} needs equal input shapes, got {_detail(values, names)}")


def merge_sum(values: Sequence[jax.Array], who: str,
              names: Sequence[str] | None = None) -> jax.Array:
    """Element-wise sum of equally shaped inputs.

    Example:
        >>> merge_sum([jnp.ones((1, 2)), jnp.ones((1, 2))], "S").tolist()
        [[2.0, 2.0]]
    """
    check_same_shapes(values, who, names)
    out = values[0]
    for v in values[1:]:
        out = out + v
    return out


def merge_mean(values: Sequence[jax.Array], who: str,
               names: Sequence[str] | None = None) -> jax.Array:
    """Element-wise mean of equally shaped inputs.

    Example:
        >>> merge_mean([jnp.zeros((1, 2)), jnp.ones((1, 2))], "M").tolist()
        [[0.5, 0.5]]
    """
    return merge_sum(values, who, names) / len(values)


def merge_stack(values: Sequence[jax.Array], axis: int, who: str,
                names: Sequence[str] | None = None) -> jax.Array:
    """Stack equally shaped inputs along a new per-sample ``axis``.

    Example:
        >>> merge_stack([jnp.zeros((4, 3)), jnp.ones((4, 3))], 0, "S").shape
        (4, 2, 3)
    """
    check_same_shapes(values, who, names)
    return jnp.stack(values, axis=batched_axis(axis))


def merge_concat(values: Sequence[jax.Array], axis: int, who: str,
                 names: Sequence[str] | None = None, *, hint: str = "") -> jax.Array:
    """Concatenate inputs along per-sample ``axis`` (other axes must match).

    Example:
        >>> merge_concat([jnp.ones((2, 3)), jnp.ones((2, 1))], -1, "C").shape
        (2, 4)

    Raises:
        ShapeMismatchError: ranks differ or other axes do not match (each input named).
    """
    if len({v.ndim for v in values}) > 1:
        raise ShapeMismatchError(f"{who} needs inputs of equal rank, got {_detail(values, names)}")
    try:
        return jnp.concatenate(list(values), axis=batched_axis(axis))
    except (TypeError, ValueError) as e:
        raise ShapeMismatchError(
            f"{who} cannot concatenate {_detail(values, names)} along axis {axis} "
            f"(other axes must match{hint})") from e
