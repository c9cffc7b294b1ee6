"""modjax: JAX-native modular machine-learning pipelines.

The public API of every layer is re-exported here; see ``docs/`` for the map.
"""

from modjax.context import ExperimentContext, ExperimentNode, RegistrationPolicy
from modjax.data import *
from modjax.errors import (
    CheckpointError,
    ConfigError,
    GraphStructureError,
    LabelPathError,
    ModjaxError,
    RegistrationError,
    ShapeMismatchError,
)
from modjax.graph import *
from modjax.io.registry import deserialize, register, serialize
from modjax.train import *
from modjax.viz import *

__version__ = "0.1.0"

_BRIDGE_NAMES = ("TorchModelWrapper", "ScikitModelWrapper", "wrap_model")


def _lazy_names() -> dict[str, str]:
    # persistence (Orbax) and observation (plots, logs) load when first named
    import modjax.io
    import modjax.observe

    return {**{n: "modjax.io" for n in modjax.io.__all__},
            **{n: "modjax.observe" for n in modjax.observe.__all__}}


_LAZY = _lazy_names()


def __getattr__(name: str):  # noqa: ANN202 - module attribute hook
    import importlib

    # the bridge wrappers import torch / scikit-learn: only when asked for by name
    if name in _BRIDGE_NAMES:
        return getattr(importlib.import_module("modjax.bridge"), name)
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'modjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_BRIDGE_NAMES))
