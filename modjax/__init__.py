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
from modjax.io import *
from modjax.io.registry import deserialize, register, serialize
from modjax.observe import *
from modjax.train import *
from modjax.viz import *

__version__ = "0.1.0"

_BRIDGE_NAMES = ("TorchModelWrapper", "ScikitModelWrapper", "wrap_model")


def __getattr__(name: str):  # noqa: ANN202 - module attribute hook
    # the bridge wrappers import torch / scikit-learn: only when asked for by name
    if name in _BRIDGE_NAMES:
        import modjax.bridge

        return getattr(modjax.bridge, name)
    raise AttributeError(f"module 'modjax' has no attribute {name!r}")
