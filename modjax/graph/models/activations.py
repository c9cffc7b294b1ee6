"""Activation functions by name (the names configs store)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from modjax.errors import closest_names

__all__ = ["get_activation", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "softplus": jax.nn.softplus,
    "identity": lambda x: x,
    "linear": lambda x: x,
}


def get_activation(name: str | None) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` (``None`` is the identity).

    Example:
        >>> float(get_activation("relu")(jnp.float32(-1.0)))
        0.0
    """
    if name is None:
        return ACTIVATIONS["identity"]
    try:
        return ACTIVATIONS[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)} "
            f"(did you mean {closest_names(str(name), ACTIVATIONS)}?)") from None
