"""Bridges: PyTorch modules and scikit-learn estimators as graph nodes.

Both run on the host through JAX callbacks inside the jitted graph. torch and
scikit-learn are optional: this package imports without them, and the wrappers are
loaded (and import their library) on first use.
"""

from __future__ import annotations

from typing import Any

from modjax.bridge.dispatch import bridge_model, is_sklearn_estimator, is_torch_module, wrap_model

__all__ = ["TorchModelWrapper", "ScikitModelWrapper", "wrap_model", "bridge_model",
           "is_torch_module", "is_sklearn_estimator"]

_LAZY = {"TorchModelWrapper": "modjax.bridge.torch_model",
         "ScikitModelWrapper": "modjax.bridge.sklearn_model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modjax.bridge' has no attribute {name!r}")
