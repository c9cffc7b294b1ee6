"""``CrossValidation(parallel=True)``: the folds of the phase group trained together.

Every fold starts from the experiment's state before cross-validation (as the
sequential run does) and runs the template group; its TrainPhases run as one vmapped
program over the folds, each fold with its own index plan (padded with masked batches
to the longest fold's batch count; padding never updates a fold) and its own
validation (an Evaluation callback of fold ``i`` evaluates fold ``i``'s split). Other
phases run fold by fold. Per-fold results equal the sequential run's to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from modjax.train.experiment import PhaseGroup
from modjax.train.lockstep import LockstepMember, run_lockstep

__all__ = ["run_parallel"]


def run_parallel(cv: Any, *, mesh: Any = None, **kwargs: Any) -> Any:
    """Run ``cv`` with its folds side by side (what ``CrossValidation.run`` calls).

    Args:
        cv: the CrossValidation.
        mesh: a ``Mesh`` with a ``"replica"`` axis to shard the folds over.
        kwargs: display options of ``Experiment.run``.

    Returns:
        The CVResults (folds in order).
    """
    from modjax.train.cv import CVResults, restore_phase_states, template_phase_states

    exp = cv.experiment
    folds = [b.folds(cv.n_folds, cv.seed) for b in cv.bindings]
    template = cv._template()
    start = exp.get_state()
    phases = template_phase_states(template)
    saved = [{n: b.fs.get_split(n) for n in (b.train_split_name, b.val_split_name)
              if n in b.fs.available_splits} for b in cv.bindings]

    def scope(i: int) -> Any:
        @contextlib.contextmanager
        def bound() -> Iterator[None]:
            before = [{n: b.fs.get_split(n) for n in (b.train_split_name, b.val_split_name)
                       if n in b.fs.available_splits} for b in cv.bindings]
            for b, fb in zip(cv.bindings, folds):
                cv._bind(b, fb[i][0], fb[i][1], i)
            try:
                yield
            finally:
                _rebind(cv, before)
        return bound

    members = [LockstepMember(f"{cv.label}_fold{i}", exp,
                              PhaseGroup(f"{cv.label}_fold{i}", list(template.all)), start,
                              scope(i), phase_states=list(phases)) for i in range(cv.n_folds)]
    kwargs.setdefault("show_training_progress", False)
    out = CVResults(cv.label)
    try:
        out.folds = run_lockstep(members, mesh=mesh, **kwargs)
        out.fold_rows = [{b.fs.label: fb[i] for b, fb in zip(cv.bindings, folds)}
                         for i in range(cv.n_folds)]
    finally:
        _rebind(cv, saved)
        exp.set_state(start)
        restore_phase_states(phases)
    return out


def _rebind(cv: Any, splits: list[dict[str, Any]]) -> None:
    for b, old in zip(cv.bindings, splits):
        for n in (b.train_split_name, b.val_split_name):
            if n in b.fs.available_splits:
                b.fs.remove_split(n)
        for n, v in old.items():
            b.fs.add_split(v, n)
