"""Persistence: config registry, Orbax checkpoints, save/load."""

from modjax.io.atomic import is_artifact
from modjax.io.checkpoints import (
    CHECKPOINT_FORMAT_VERSION,
    Artifact,
    checkpoint_kind,
    checkpoint_version,
    load_pytree,
    open_artifact,
    save_pytree,
)
from modjax.io.migrate import migrate_checkpoint
from modjax.io.registry import (
    CONFIG_FORMAT_VERSION,
    deserialize,
    get_registered,
    register,
    registered_name,
    serialize,
)
from modjax.io.reports import LoadReport
from modjax.io.subtree import load_subtree

__all__ = [
    "Artifact",
    "CHECKPOINT_FORMAT_VERSION",
    "CONFIG_FORMAT_VERSION",
    "LoadReport",
    "checkpoint_kind",
    "checkpoint_version",
    "deserialize",
    "get_registered",
    "is_artifact",
    "load_pytree",
    "load_subtree",
    "migrate_checkpoint",
    "open_artifact",
    "register",
    "registered_name",
    "save_pytree",
    "serialize",
]
