"""Persistence: config registry, Orbax checkpoints, save/load."""

from modjax.io.registry import (
    CONFIG_FORMAT_VERSION,
    deserialize,
    get_registered,
    register,
    registered_name,
    serialize,
)

__all__ = [
    "CONFIG_FORMAT_VERSION",
    "deserialize",
    "get_registered",
    "register",
    "registered_name",
    "serialize",
]
