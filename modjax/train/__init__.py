"""modjax.train."""

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
from modjax.train.checkpointing import EXPERIMENT_HOOKS, PHASE_HOOKS, Checkpointing
from modjax.train.collection import ExperimentCollection
from modjax.train.cv import CrossValidation, CVBinding, CVResults
from modjax.train.ensemble import (
    Ensemble,
    EnsembleEvalResults,
    EnsembleTrainResults,
    ensemble_of,
)
from modjax.train.eval_phase import EvalPhase
from modjax.train.experiment import Experiment, ExperimentRun, PhaseGroup
from modjax.train.feeds import InputBinding
from modjax.train.fit_phase import FitPhase
from modjax.train.hyperparams import HyperOptimizer, get_hyperparams, set_hyperparams
from modjax.train.losses import LOSS_NAMES, AppliedLoss, Loss
from modjax.train.metrics import METRIC_NAMES, AppliedMetric, predicted_classes, probabilities
from modjax.train.optim import OPTIMIZER_NAMES, Optimizer, freezable, frozen_mask
from modjax.train.phases import ExperimentPhase, NanPolicy, ResultRecording
from modjax.train.programs import clear_program_cache, enable_compilation_cache
from modjax.train.results import (
    EvalResults,
    FitResults,
    MetricStore,
    PhaseGroupResults,
    PhaseResults,
    TrainResults,
)
from modjax.train.schedule import BatchSchedulingPolicy
from modjax.train.step import init_train_carry, make_eval_step, make_train_step
from modjax.train.train_phase import TrainPhase

__all__: list[str] = ["Checkpointing", "EXPERIMENT_HOOKS", "PHASE_HOOKS"]
__all__ += ["Optimizer", "frozen_mask", "OPTIMIZER_NAMES", "Loss", "AppliedLoss", "LOSS_NAMES",
            "make_train_step", "make_eval_step", "init_train_carry"]
__all__ += ["Callback", "EarlyStopping", "EvalLossMetric", "Evaluation", "EvaluationMetric",
            "ExperimentCallback", "MetricCallback", "Experiment", "ExperimentRun", "PhaseGroup",
            "EvalPhase", "ExperimentPhase", "FitPhase", "InputBinding", "NanPolicy",
            "ResultRecording", "TrainPhase", "EvalResults", "FitResults", "MetricStore",
            "PhaseGroupResults", "PhaseResults", "TrainResults", "BatchSchedulingPolicy"]
__all__ += ["CrossValidation", "CVBinding", "CVResults"]
__all__ += ["AppliedMetric", "METRIC_NAMES", "EvalMetric", "probabilities", "predicted_classes"]
__all__ += ["freezable", "enable_compilation_cache", "clear_program_cache"]
__all__ += ["ExperimentCollection", "HyperOptimizer", "set_hyperparams", "get_hyperparams",
            "Ensemble", "EnsembleTrainResults", "EnsembleEvalResults", "ensemble_of"]
