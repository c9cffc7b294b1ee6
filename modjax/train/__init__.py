"""modjax.train: the training layer's specialised names (results, step builders, name
lists, program cache). Phases, Experiment, losses, optimizers and callbacks are at the
top level."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.train.checkpointing import EXPERIMENT_HOOKS, PHASE_HOOKS
    from modjax.train.cv import CVResults
    from modjax.train.ensemble import EnsembleEvalResults, EnsembleTrainResults
    from modjax.train.experiment import ExperimentRun
    from modjax.train.hyperparams import get_hyperparams, set_hyperparams
    from modjax.train.losses import LOSS_NAMES
    from modjax.train.metrics import METRIC_NAMES, predicted_classes, probabilities
    from modjax.train.optim import OPTIMIZER_NAMES, freezable, frozen_mask
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

_WHERE: dict[str, str] = {
    **dict.fromkeys(("EXPERIMENT_HOOKS", "PHASE_HOOKS"), "modjax.train.checkpointing"),
    "CVResults": "modjax.train.cv",
    **dict.fromkeys(("EnsembleEvalResults", "EnsembleTrainResults"), "modjax.train.ensemble"),
    "ExperimentRun": "modjax.train.experiment",
    **dict.fromkeys(("get_hyperparams", "set_hyperparams"), "modjax.train.hyperparams"),
    "LOSS_NAMES": "modjax.train.losses",
    **dict.fromkeys(("METRIC_NAMES", "predicted_classes", "probabilities"), "modjax.train.metrics"),
    **dict.fromkeys(("freezable", "frozen_mask", "OPTIMIZER_NAMES"), "modjax.train.optim"),
    **dict.fromkeys(("ExperimentPhase", "NanPolicy", "ResultRecording"), "modjax.train.phases"),
    **dict.fromkeys(("clear_program_cache", "enable_compilation_cache"), "modjax.train.programs"),
    **dict.fromkeys((
        "EvalResults", "FitResults", "MetricStore", "PhaseGroupResults", "PhaseResults",
        "TrainResults",
    ), "modjax.train.results"),
    "BatchSchedulingPolicy": "modjax.train.schedule",
    **dict.fromkeys(("init_train_carry", "make_eval_step", "make_train_step"), "modjax.train.step"),
}

__all__ = [
    "BatchSchedulingPolicy", "clear_program_cache", "CVResults", "enable_compilation_cache",
    "EnsembleEvalResults", "EnsembleTrainResults", "EvalResults", "EXPERIMENT_HOOKS",
    "ExperimentPhase", "ExperimentRun", "FitResults", "freezable", "frozen_mask",
    "get_hyperparams", "init_train_carry", "LOSS_NAMES", "make_eval_step", "make_train_step",
    "METRIC_NAMES", "MetricStore", "NanPolicy", "OPTIMIZER_NAMES", "PHASE_HOOKS",
    "PhaseGroupResults", "PhaseResults", "predicted_classes", "probabilities",
    "ResultRecording", "set_hyperparams", "TrainResults",
]

__getattr__, __dir__ = lazy_namespace("modjax.train", _WHERE)
