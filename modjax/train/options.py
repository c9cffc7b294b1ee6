"""Display options of ``Experiment.run`` and friends, checked by name.

The run methods forward display options to each phase; a misspelt option is an error
with the closest valid names instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modjax.errors import closest_names

__all__ = ["TRAIN_OPTIONS", "EVAL_OPTIONS", "RUN_OPTIONS", "check_options", "phase_options"]

#: keyword arguments of ``TrainPhase.execute`` besides the graph and experiment
TRAIN_OPTIONS = ("show_training_progress", "show_sampler_progress", "persist_progress",
                 "val_loss_metric", "progress_file")
#: run options that reach an ``EvalPhase`` (``show_eval_progress`` -> ``show_progress``)
EVAL_OPTIONS = ("show_eval_progress", "persist_progress", "progress_file")
RUN_OPTIONS = tuple(dict.fromkeys(TRAIN_OPTIONS + EVAL_OPTIONS))


def check_options(owner: str, given: Mapping[str, Any], allowed: tuple[str, ...] = RUN_OPTIONS
                  ) -> None:
    """Raise ``TypeError`` naming every unknown option and the closest valid names.

    Example:
        >>> check_options("Experiment.run", {"show_training_progress": False})
        >>> try:
        ...     check_options("Experiment.run", {"show_trainig_progress": False})
        ... except TypeError as e:
        ...     print(str(e)[:84])
        Experiment.run() got an unexpected keyword argument 'show_trainig_progress'; did you
    """
    for name in given:
        if name not in allowed:
            raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}; did you "
                            f"mean {closest_names(name, allowed)}? (options: {list(allowed)})")


def phase_options(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The run options a phase of ``kind`` (``"train"``, ``"eval"``, ``"fit"``) takes.

    Example:
        >>> phase_options("eval", {"show_eval_progress": True, "show_training_progress": False})
        {'show_progress': True}
    """
    if kind == "train":
        return {k: v for k, v in given.items() if k in TRAIN_OPTIONS}
    if kind == "eval":
        out = {k: v for k, v in given.items() if k in ("persist_progress", "progress_file")}
        out["show_progress"] = bool(given.get("show_eval_progress", False))
        return out
    return {}
