"""Bridges: PyTorch modules and scikit-learn estimators as graph nodes.

Both run on the host through JAX callbacks inside the jitted graph. torch and
scikit-learn are optional: this package imports without them, and the wrappers are
loaded (and import their library) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.bridge.dispatch import (
        bridge_model,
        is_sklearn_estimator,
        is_torch_module,
        wrap_model,
    )
    from modjax.bridge.sklearn_model import ScikitModelWrapper
    from modjax.bridge.torch_model import TorchModelWrapper

_WHERE: dict[str, str] = {
    **dict.fromkeys((
        "bridge_model", "is_sklearn_estimator", "is_torch_module", "wrap_model",
    ), "modjax.bridge.dispatch"),
    "ScikitModelWrapper": "modjax.bridge.sklearn_model",
    "TorchModelWrapper": "modjax.bridge.torch_model",
}

__all__ = [
    "bridge_model", "is_sklearn_estimator", "is_torch_module", "ScikitModelWrapper",
    "TorchModelWrapper", "wrap_model",
]

__getattr__, __dir__ = lazy_namespace("modjax.bridge", _WHERE)
