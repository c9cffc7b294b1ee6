"""modjax: JAX-native modular machine-learning pipelines.

The top level holds what a pipeline script builds with: FeatureSets and samplers, the
ModelGraph and its nodes and models, phases, experiments, losses, optimizers and
callbacks. Flow graphs live in :mod:`modjax.flow`; specialised names in their layer's
namespace (:mod:`modjax.data`, :mod:`modjax.graph`, :mod:`modjax.train`, :mod:`modjax.io`,
:mod:`modjax.observe`, :mod:`modjax.viz`, :mod:`modjax.bridge`); errors in
:mod:`modjax.errors`. Every name is imported from its defining module on first use, so
``import modjax`` itself loads none of the layers (see docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.data.compat import supported_scalers
    from modjax.data.featureset import FeatureSet
    from modjax.data.samplers import NSampler, PairedSampler, SimpleSampler, TripletSampler
    from modjax.data.scaling import Scaler
    from modjax.data.similarity import SimilarityCondition
    from modjax.graph.model_graph import ModelGraph
    from modjax.graph.models.cnn import SequentialCNN
    from modjax.graph.models.layers import Conv1D, Dropout, Identity, Linear
    from modjax.graph.models.mlp import SequentialMLP
    from modjax.graph.models.norm import BatchNorm, LayerNorm
    from modjax.graph.models.ridge import RidgeRegression
    from modjax.graph.nodes import AddNode, ConcatNode, MeanNode, ModelNode, StackNode
    from modjax.train.callbacks import (
        Callback,
        EarlyStopping,
        EvalLossMetric,
        EvalMetric,
        Evaluation,
        EvaluationMetric,
        ExperimentCallback,
        MetricCallback,
    )
    from modjax.train.checkpointing import Checkpointing
    from modjax.train.collection import ExperimentCollection
    from modjax.train.cv import CrossValidation, CVBinding
    from modjax.train.ensemble import Ensemble, ensemble_of
    from modjax.train.eval_phase import EvalPhase
    from modjax.train.experiment import Experiment, PhaseGroup
    from modjax.train.feeds import InputBinding
    from modjax.train.fit_phase import FitPhase
    from modjax.train.hyperparams import HyperOptimizer
    from modjax.train.losses import AppliedLoss, Loss
    from modjax.train.metrics import AppliedMetric
    from modjax.train.optim import Optimizer
    from modjax.train.train_phase import TrainPhase

_WHERE: dict[str, str] = {
    "supported_scalers": "modjax.data.compat",
    "FeatureSet": "modjax.data.featureset",
    **dict.fromkeys((
        "NSampler", "PairedSampler", "SimpleSampler", "TripletSampler",
    ), "modjax.data.samplers"),
    "Scaler": "modjax.data.scaling",
    "SimilarityCondition": "modjax.data.similarity",
    "ModelGraph": "modjax.graph.model_graph",
    "SequentialCNN": "modjax.graph.models.cnn",
    **dict.fromkeys(("Conv1D", "Dropout", "Identity", "Linear"), "modjax.graph.models.layers"),
    "SequentialMLP": "modjax.graph.models.mlp",
    **dict.fromkeys(("BatchNorm", "LayerNorm"), "modjax.graph.models.norm"),
    "RidgeRegression": "modjax.graph.models.ridge",
    **dict.fromkeys((
        "AddNode", "ConcatNode", "MeanNode", "ModelNode", "StackNode",
    ), "modjax.graph.nodes"),
    **dict.fromkeys((
        "Callback", "EarlyStopping", "EvalLossMetric", "EvalMetric", "Evaluation",
        "EvaluationMetric", "ExperimentCallback", "MetricCallback",
    ), "modjax.train.callbacks"),
    "Checkpointing": "modjax.train.checkpointing",
    "ExperimentCollection": "modjax.train.collection",
    **dict.fromkeys(("CrossValidation", "CVBinding"), "modjax.train.cv"),
    **dict.fromkeys(("Ensemble", "ensemble_of"), "modjax.train.ensemble"),
    "EvalPhase": "modjax.train.eval_phase",
    **dict.fromkeys(("Experiment", "PhaseGroup"), "modjax.train.experiment"),
    "InputBinding": "modjax.train.feeds",
    "FitPhase": "modjax.train.fit_phase",
    "HyperOptimizer": "modjax.train.hyperparams",
    **dict.fromkeys(("AppliedLoss", "Loss"), "modjax.train.losses"),
    "AppliedMetric": "modjax.train.metrics",
    "Optimizer": "modjax.train.optim",
    "TrainPhase": "modjax.train.train_phase",
}

__all__ = [
    "AddNode", "AppliedLoss", "AppliedMetric", "BatchNorm", "Callback", "Checkpointing",
    "ConcatNode", "Conv1D", "CrossValidation", "CVBinding", "Dropout", "EarlyStopping",
    "Ensemble", "ensemble_of", "EvalLossMetric", "EvalMetric", "EvalPhase", "Evaluation",
    "EvaluationMetric", "Experiment", "ExperimentCallback", "ExperimentCollection",
    "FeatureSet", "FitPhase", "HyperOptimizer", "Identity", "InputBinding", "LayerNorm",
    "Linear", "Loss", "MeanNode", "MetricCallback", "ModelGraph", "ModelNode", "NSampler",
    "Optimizer", "PairedSampler", "PhaseGroup", "RidgeRegression", "Scaler", "SequentialCNN",
    "SequentialMLP", "SimilarityCondition", "SimpleSampler", "StackNode", "supported_scalers",
    "TrainPhase", "TripletSampler",
]

#: public subpackages and modules, reachable as attributes (``modjax.io``) once named
_SUBMODULES = ("bridge", "context", "data", "distributed", "errors", "flow", "graph", "io",
               "observe", "paths", "train", "viz")

__getattr__, __dir__ = lazy_namespace("modjax", _WHERE, _SUBMODULES)

__version__ = "0.1.0"
