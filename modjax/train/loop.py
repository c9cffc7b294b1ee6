"""The one epoch loop every phase runs.

A phase supplies an :class:`EpochBody` (its carry, its compiled epoch and its finish) and
a list of :class:`~modjax.train.hooks.Hook` s (callbacks, checkpointing, the observer,
progress bars); :func:`run_loop` runs the epochs and calls the hooks at each boundary:

    setup -> phase_start -> (epoch_start -> epoch [batch_start/batch_end]
    -> NaN policy -> record -> epoch_end)* -> phase_end -> close

A phase that raises calls ``body.abort()`` (nothing is written to the graph) and still
closes its hooks; ``body.finish()`` writes the result only when every epoch went through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modjax.train.hooks import Hook, NanGuard
from modjax.train.results import EpochRecord, PhaseResults

__all__ = ["LoopRun", "EpochBody", "OnePass", "run_loop"]


@dataclass
class LoopRun:
    """What a running loop hands its hooks.

    Attributes:
        phase: the running phase.
        experiment: the running Experiment, if any.
        results: the phase's results, filled epoch by epoch.
        hooks: the hooks, in call order.
    """

    phase: Any
    experiment: Any
    results: PhaseResults
    hooks: Sequence[Hook] = field(default_factory=list)

    @property
    def ctx(self) -> dict[str, Any]:
        """The keywords every callback hook receives besides ``results``."""
        return {"experiment": self.experiment, "phase": self.phase}

    def batch_start(self, epoch: int, batch: int) -> None:
        """Call every hook's ``batch_start`` (an epoch run batch by batch)."""
        for h in self.hooks:
            h.batch_start(self, epoch, batch)

    def batch_end(self, epoch: int, batch: int) -> None:
        """Call every hook's ``batch_end``."""
        for h in self.hooks:
            h.batch_end(self, epoch, batch)


class EpochBody(Protocol):
    """What a phase gives :func:`run_loop`.

    Attributes:
        n_epochs: epochs to run.
    """

    n_epochs: int

    def run_epoch(self, run: LoopRun, epoch: int) -> EpochRecord:
        """Run one epoch (its compiled program) and return its record."""
        ...

    def discard_epoch(self, rec: EpochRecord) -> None:
        """Drop the epoch just run (the NaN policy stopped the phase at it)."""
        ...

    def record(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        """Log the epoch in ``run.results`` (before the hooks' ``epoch_end``)."""
        ...

    def stop_requested(self) -> bool:
        """Whether the phase should end after the epoch just recorded."""
        ...

    def end(self, run: LoopRun) -> None:
        """The epochs are over (before the hooks' ``phase_end``)."""
        ...

    def abort(self) -> None:
        """The phase raised: drop the running state."""
        ...

    def finish(self, run: LoopRun) -> PhaseResults:
        """Write the result back (after ``phase_end`` and ``close``); return the results."""
        ...


class OnePass:
    """Defaults of a body whose phase is one pass (EvalPhase, FitPhase): one epoch, no
    NaN policy, no early stop, nothing to drop; subclasses supply ``run_epoch`` and
    ``record``."""

    n_epochs = 1

    def discard_epoch(self, rec: EpochRecord) -> None:
        """Not reached: a one-pass phase has no NaN policy."""

    def stop_requested(self) -> bool:
        return False

    def end(self, run: LoopRun) -> None:
        """Nothing is pending after the pass."""

    def abort(self) -> None:
        """Nothing was written before the pass raised."""

    def finish(self, run: LoopRun) -> PhaseResults:
        return run.results


def _epochs(body: EpochBody, run: LoopRun, hooks: Sequence[Hook], guard: NanGuard | None
            ) -> None:
    for epoch in range(body.n_epochs):
        for h in hooks:
            h.epoch_start(run, epoch)
        rec = body.run_epoch(run, epoch)
        stop = None if guard is None else guard.check(rec)
        if stop is not None:
            # the state from the end of the last finite epoch is kept; this epoch is dropped
            body.discard_epoch(rec)
            run.results.nan_stop = stop  # type: ignore[attr-defined]
            run.results.stopped_early = True
            return
        body.record(run, epoch, rec)
        for h in hooks:
            h.epoch_end(run, epoch, rec)
        if body.stop_requested():
            return


def run_loop(body: EpochBody, run: LoopRun, *, guard: NanGuard | None = None) -> PhaseResults:
    """Run ``body``'s epochs, calling ``run.hooks`` at every boundary.

    Args:
        body: the phase's carry, compiled epoch and finish.
        run: the phase, experiment, results and hooks.
        guard: the NaN policy applied to each epoch's losses (None: no check).

    Returns:
        What ``body.finish`` returns (the phase's results).
    """
    hooks = run.hooks
    try:
        for h in hooks:
            h.setup(run)
        for h in hooks:
            h.phase_start(run)
        _epochs(body, run, hooks, guard)
        body.end(run)
        for h in hooks:
            h.phase_end(run)
    except BaseException:
        body.abort()
        raise
    finally:
        for h in hooks:
            h.close()
    return body.finish(run)
