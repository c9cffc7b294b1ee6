"""Persistence: config registry, Orbax checkpoints, save/load.

The names are loaded on first use (the checkpoint machinery, and Orbax behind it, only
when a checkpoint is read or written), so ``import modjax`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "is_artifact": "atomic",
    "CHECKPOINT_FORMAT_VERSION": "checkpoints", "Artifact": "checkpoints",
    "checkpoint_kind": "checkpoints", "checkpoint_version": "checkpoints",
    "load_pytree": "checkpoints", "open_artifact": "checkpoints", "save_pytree": "checkpoints",
    "migrate_checkpoint": "migrate",
    "CONFIG_FORMAT_VERSION": "registry", "deserialize": "registry", "get_registered": "registry",
    "register": "registry", "registered_name": "registry", "serialize": "registry",
    "LoadReport": "reports",
    "load_subtree": "subtree",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'modjax.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modjax.io.{_WHERE[name]}"), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
