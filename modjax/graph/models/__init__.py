"""Models: the protocol, adapters (Flax NNX / Linen, function pairs) and built-ins."""

from modjax.graph.models.activations import ACTIVATIONS, get_activation
from modjax.graph.models.adapters import FunctionModel, LinenModel, NNXModel
from modjax.graph.models.base import BaseModel, ShapePreservingModel
from modjax.graph.models.cnn import SequentialCNN
from modjax.graph.models.layers import Conv1D, Dropout, Identity, Linear
from modjax.graph.models.mlp import SequentialMLP
from modjax.graph.models.norm import BatchNorm, LayerNorm
from modjax.graph.models.protocol import Fittable, Model, as_model, is_model
from modjax.graph.models.ridge import RidgeRegression

__all__ = [
    "ACTIVATIONS",
    "BaseModel",
    "BatchNorm",
    "Conv1D",
    "Dropout",
    "Fittable",
    "FunctionModel",
    "Identity",
    "LayerNorm",
    "Linear",
    "LinenModel",
    "Model",
    "NNXModel",
    "RidgeRegression",
    "SequentialCNN",
    "SequentialMLP",
    "ShapePreservingModel",
    "as_model",
    "get_activation",
    "is_model",
]
