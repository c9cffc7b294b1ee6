"""modjax.graph.models: writing a model: the protocol, base classes, adapters (Flax NNX /
Linen, function pairs) and activations. The built-in models are at the top level."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.graph.models.activations import ACTIVATIONS, get_activation
    from modjax.graph.models.adapters import FunctionModel, LinenModel, NNXModel
    from modjax.graph.models.base import BaseModel, ShapePreservingModel
    from modjax.graph.models.protocol import Fittable, Model, as_model, is_model

_WHERE: dict[str, str] = {
    **dict.fromkeys(("ACTIVATIONS", "get_activation"), "modjax.graph.models.activations"),
    **dict.fromkeys(("FunctionModel", "LinenModel", "NNXModel"), "modjax.graph.models.adapters"),
    **dict.fromkeys(("BaseModel", "ShapePreservingModel"), "modjax.graph.models.base"),
    **dict.fromkeys(("as_model", "Fittable", "is_model", "Model"), "modjax.graph.models.protocol"),
}

__all__ = [
    "ACTIVATIONS", "as_model", "BaseModel", "Fittable", "FunctionModel", "get_activation",
    "is_model", "LinenModel", "Model", "NNXModel", "ShapePreservingModel",
]

__getattr__, __dir__ = lazy_namespace("modjax.graph.models", _WHERE)
