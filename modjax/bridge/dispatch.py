"""Recognising torch modules and scikit-learn estimators without importing either.

``as_model`` asks :func:`bridge_model` about any object it cannot adapt itself; torch
and scikit-learn are only imported when the object already comes from them (so the
package imports and runs without those extras).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["is_torch_module", "is_sklearn_estimator", "bridge_model", "wrap_model"]


def _from_package(obj: Any, package: str) -> bool:
    return any(c.__module__.split(".")[0] == package for c in type(obj).__mro__)


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` instance (False when torch is not loaded).

    Example:
        >>> is_torch_module(object())
        False
    """
    torch = sys.modules.get("torch")
    return torch is not None and _from_package(obj, "torch") and isinstance(obj, torch.nn.Module)


def is_sklearn_estimator(obj: Any) -> bool:
    """Whether ``obj`` is a scikit-learn estimator instance (a ``BaseEstimator``).

    Example:
        >>> is_sklearn_estimator(object())
        False
    """
    if isinstance(obj, type) or sys.modules.get("sklearn") is None:
        return False
    from sklearn.base import BaseEstimator

    return isinstance(obj, BaseEstimator)


def bridge_model(obj: Any) -> Any:
    """The bridge model for a torch module or scikit-learn estimator, else None.

    Example:
        >>> bridge_model(3) is None
        True
    """
    if is_torch_module(obj):
        from modjax.bridge.torch_model import TorchModelWrapper

        return TorchModelWrapper(obj)
    if is_sklearn_estimator(obj):
        from modjax.bridge.sklearn_model import ScikitModelWrapper

        return ScikitModelWrapper(obj)
    return None


def wrap_model(model: Any) -> Any:
    """Wrap a torch module or scikit-learn estimator as a graph model.

    Anything that already is a graph model (a built-in, an adapter, a wrapper) is
    returned unchanged.

    Args:
        model: a ``torch.nn.Module``, a scikit-learn estimator or a model.

    Returns:
        A :class:`TorchModelWrapper`, :class:`ScikitModelWrapper` or ``model`` itself.

    Raises:
        TypeError: ``model`` is none of those.

    Example:
        >>> from modjax import Identity
        >>> m = Identity()
        >>> wrap_model(m) is m
        True
    """
    from modjax.graph.models.protocol import is_model

    if is_model(model):
        return model
    bridged = bridge_model(model)
    if bridged is None:
        raise TypeError(f"wrap_model: expected a torch.nn.Module, a scikit-learn estimator or a "
                        f"graph model, got {type(model).__name__}")
    return bridged
