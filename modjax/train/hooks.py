"""Hook objects: the host work :func:`modjax.train.loop.run_loop` does between compiled
epochs (callbacks, checkpointing, the observer, progress bars, the NaN policy).

Each hook overrides only the boundaries it cares about. The loop calls every hook at
each boundary in the order the phase listed them; ``setup`` runs before any callback
sees the phase (the observer's clock and the ``phase_start`` checkpoint), ``close``
always runs last, also when the phase raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modjax.protocols import CheckpointDirHost
from modjax.train.callbacks import Callback
from modjax.train.phases import NanPolicy
from modjax.train.results import EpochRecord

if TYPE_CHECKING:
    from modjax.train.loop import LoopRun

__all__ = ["Hook", "CallbackHook", "CheckpointHook", "ObserverHook", "ProgressHook",
           "NanGuard", "needs_batches"]


class Hook:
    """Host work at the loop's boundaries; every method is a no-op unless overridden.

    ``needs_batches``: the hook acts at batch boundaries, so the phase must run its
    epochs batch by batch (one-batch scans of the same program) instead of one scan.
    ``needs_host``: the hook must act on the host between epochs as they happen (it
    reads or changes the running state, or times or shows each epoch), so the phase
    may not run several epochs in one dispatch.
    """

    needs_batches = False
    needs_host = True

    def setup(self, run: LoopRun) -> None:
        """Before any callback sees the phase."""

    def phase_start(self, run: LoopRun) -> None:
        """The phase starts (after every hook's ``setup``)."""

    def epoch_start(self, run: LoopRun, epoch: int) -> None:
        """Epoch ``epoch`` is about to run."""

    def batch_start(self, run: LoopRun, epoch: int, batch: int) -> None:
        """Batch ``batch`` of ``epoch`` is about to run (batch-by-batch epochs only)."""

    def batch_end(self, run: LoopRun, epoch: int, batch: int) -> None:
        """Batch ``batch`` of ``epoch`` ran."""

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        """Epoch ``epoch`` ran and is recorded in ``run.results``."""

    def phase_end(self, run: LoopRun) -> None:
        """The phase's epochs are done (not called when it raises)."""

    def close(self) -> None:
        """Always last, also when the phase raises."""


def needs_batches(hooks: Sequence[Hook]) -> bool:
    """Whether any hook acts at batch boundaries."""
    return any(h.needs_batches for h in hooks)


class CallbackHook(Hook):
    """The phase's :class:`~modjax.train.callbacks.Callback` s, in execution order.

    Args:
        callbacks: the callbacks (already sorted).
        epoch_start: call ``on_epoch_start`` (a FitPhase has no epoch to start).
    """

    def __init__(self, callbacks: Sequence[Callback], *, epoch_start: bool = True) -> None:
        self.callbacks = list(callbacks)
        self.call_epoch_start = epoch_start
        self.needs_batches = any(cb.uses_batch_hooks for cb in self.callbacks)
        self.needs_host = any(cb.needs_training_state for cb in self.callbacks)

    def phase_start(self, run: LoopRun) -> None:
        for cb in self.callbacks:
            cb.on_phase_start(results=run.results, **run.ctx)

    def epoch_start(self, run: LoopRun, epoch: int) -> None:
        if self.call_epoch_start:
            for cb in self.callbacks:
                cb.on_epoch_start(epoch=epoch, results=run.results, **run.ctx)

    def batch_start(self, run: LoopRun, epoch: int, batch: int) -> None:
        for cb in self.callbacks:
            cb.on_batch_start(batch=batch, epoch=epoch, results=run.results, **run.ctx)

    def batch_end(self, run: LoopRun, epoch: int, batch: int) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(batch=batch, epoch=epoch, results=run.results, **run.ctx)

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch=epoch, results=run.results, **run.ctx)

    def phase_end(self, run: LoopRun) -> None:
        for cb in self.callbacks:
            cb.on_phase_end(results=run.results, **run.ctx)


class CheckpointHook(Hook):
    """A TrainPhase's ``Checkpointing``: saves at the hooks it was configured for.

    Args:
        checkpointing: the phase's Checkpointing.
        phase: the TrainPhase (the checkpoint target).
        experiment: the running Experiment (its checkpoint directory and switch), if any.
    """

    def __init__(self, checkpointing: Any, phase: Any, experiment: Any) -> None:
        self.checkpointing, self.phase = checkpointing, phase
        # an experiment that is no CheckpointDirHost (or none) gives no directory and no switch
        self.experiment = experiment if isinstance(experiment, CheckpointDirHost) else None
        self.needs_batches = any(h.startswith("batch") for h in checkpointing.save_on)

    def _save(self, hook: str, **placeholders: Any) -> None:
        exp = self.experiment
        # read at every hook: an experiment may switch checkpointing off for a phase
        if exp is not None and not exp.checkpointing_enabled:
            return
        root = None if exp is None else exp.checkpoint_dir
        directory = None if root is None else root / self.phase.label
        key = placeholders.get("epoch") if hook == "epoch_end" else None
        self.checkpointing.maybe_save(hook, self.phase, key=key, directory=directory,
                                      phase=self.phase.label, **placeholders)

    def setup(self, run: LoopRun) -> None:
        self.checkpointing.reset()
        self._save("phase_start")

    def epoch_start(self, run: LoopRun, epoch: int) -> None:
        self._save("epoch_start", epoch=epoch)

    def batch_start(self, run: LoopRun, epoch: int, batch: int) -> None:
        self._save("batch_start", epoch=epoch, batch=batch)

    def batch_end(self, run: LoopRun, epoch: int, batch: int) -> None:
        self._save("batch_end", epoch=epoch, batch=batch)

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        self._save("epoch_end", epoch=epoch)

    def phase_end(self, run: LoopRun) -> None:
        self._save("phase_end")


def tag_mask(rec: EpochRecord, tags: Mapping[str, Any]) -> np.ndarray | None:
    """The real-sample mask of captured tags: the mask of the binding whose
    ``(n_batches, batch)`` matches theirs (None: every slot counts)."""
    first = next(iter(tags.values()))
    first = first.get("default", next(iter(first.values()))) if isinstance(first, Mapping) else first
    lead = tuple(np.shape(first)[:2])
    for b in rec.bindings.values():
        m = b.mask.get("default")
        if m is not None and tuple(np.shape(m)) == lead:
            return np.asarray(m)
    return None


class ObserverHook(Hook):
    """Feeds a ``modjax.observe.Observer`` each epoch's per-batch losses (weighted by real
    samples) and every other metric logged for the epoch (``val_loss``, a
    MetricCallback's values), after the callbacks, then flushes them together.

    Args:
        observer: the Observer.
    """

    def __init__(self, observer: Any) -> None:
        self.observer = observer

    def setup(self, run: LoopRun) -> None:
        # stamped before the first scan, so epoch 1's duration (compilation included)
        # and the observer's ETA count the first epoch in full
        self.observer.mark_start()

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        obs, results = self.observer, run.results
        n = len(rec.loss)
        w = np.zeros(n)
        for b in rec.bindings.values():
            for m in b.mask.values():
                w = np.maximum(w, np.asarray(m).reshape(n, -1).sum(axis=1))
        obs.record_batches({"train_loss": rec.loss, **rec.losses}, weights=w)
        for name in results.metrics.names:
            value = None if name == "train_loss" else results.metrics.epoch_value(name, epoch)
            if value is not None:
                obs.record(name, value)
        tags = rec.records.get("tags") if isinstance(rec.records, Mapping) else None
        if tags:
            obs.record_batch_tags(tags, tag_mask(rec, tags))
        obs.flush()


class ProgressHook(Hook):
    """An :class:`~modjax.train.progress.EpochProgress`: the epoch bar moves at each
    epoch's end; the phase advances the batch bar as it dispatches scans.

    Args:
        progress: the EpochProgress.
    """

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.needs_host = progress.visible  # a bar on screen moves epoch by epoch

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        self.progress.update(epoch, run.results.metrics)

    def close(self) -> None:
        self.progress.close()


class NanGuard:
    """The NaN policy, applied to each epoch's per-batch losses on the host (they are
    transferred anyway, so it costs nothing per step).

    Args:
        policy: the :class:`NanPolicy`.
        owner: the phase, for the error message.
    """

    def __init__(self, policy: NanPolicy, owner: str) -> None:
        self.policy, self.owner = policy, owner

    def check(self, rec: EpochRecord) -> tuple[int, int] | None:
        """``(epoch, batch)`` of the first non-finite loss when the phase must stop there.

        Raises:
            FloatingPointError: under ``"raise"``, naming the epoch, batch and losses.
        """
        if self.policy is NanPolicy.IGNORE:
            return None
        nonfinite = np.flatnonzero(~np.isfinite(rec.loss))
        if not nonfinite.size:
            return None
        bad = int(nonfinite[0])
        if self.policy is NanPolicy.RAISE:
            raise FloatingPointError(
                f"{self.owner}: non-finite loss at epoch {rec.epoch}, batch {bad} "
                f"(losses: { {k: float(v[bad]) for k, v in rec.losses.items()} }); the graph's "
                "variables are left as they were before the phase (nan_policy='stop' ends the "
                "phase instead)")
        return rec.epoch, bad
