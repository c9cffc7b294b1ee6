"""``dtype`` / ``param_dtype`` of the built-in layers.

``param_dtype`` is the dtype parameters (and normalisation statistics) are created and
stored in; ``dtype`` is the dtype the layer computes in (inputs and parameters are cast
to it inside ``apply``). Both default to the previous behaviour: float32 parameters and
computation in the inputs' and parameters' promoted dtype. ``float64`` needs
``jax.config.update("jax_enable_x64", True)`` (without it JAX would silently make
float32 arrays, so asking for float64 is an error instead).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["float_dtype", "dtype_args", "cast_tree", "compute_cast"]


def float_dtype(value: Any, *, what: str) -> Any:
    """A floating ``jnp.dtype`` (or None) from a name or dtype; float64 needs x64.

    Example:
        >>> float_dtype("bfloat16", what="dtype"), float_dtype(None, what="dtype")
        (dtype(bfloat16), None)
    """
    if value is None:
        return None
    try:
        d = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{what} must be a floating dtype name or dtype, got {value!r}") from None
    if not jnp.issubdtype(d, jnp.floating):
        raise TypeError(f"{what} must be a floating dtype, got {d}")
    if d.itemsize == 8 and not jax.config.jax_enable_x64:
        raise ValueError(f"{what}={d} needs jax.config.update('jax_enable_x64', True) first; "
                         "without it JAX makes float32 arrays")
    return d


def dtype_args(dtype: Any, param_dtype: Any) -> dict[str, str]:
    """Config entries for the dtypes that were given (None values are left out, so
    configs written before these options existed stay equal)."""
    out = {}
    if dtype is not None:
        out["dtype"] = str(jnp.dtype(dtype))
    if param_dtype is not None:
        out["param_dtype"] = str(jnp.dtype(param_dtype))
    return out


def cast_tree(tree: Any, dtype: Any) -> Any:
    """Floating leaves of ``tree`` cast to ``dtype`` (unchanged when None)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                        else a, tree)


def compute_cast(x: Any, params: Any, dtype: Any) -> tuple[Any, Any]:
    """``(x, params)`` in the compute dtype (unchanged when None)."""
    if dtype is None:
        return x, params
    return jnp.asarray(x).astype(dtype), cast_tree(params, dtype)
