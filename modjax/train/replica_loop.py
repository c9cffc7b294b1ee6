"""The epochs of a vectorized TrainPhase, run by the one epoch loop (:mod:`modjax.train.loop`).

:class:`ReplicaEpochs` is the loop's body: per epoch it draws every live replica's index
plan on the host, pads the plans to one batch count, dispatches the vmapped epoch and
turns its loss table into one :class:`~modjax.train.results.EpochRecord` per replica.
The next epoch is dispatched before this epoch's losses are read (the device works while
the host records and runs callbacks); when a callback stops a replica or restores its
state, or a replica stops on a non-finite loss, that dispatch is redone from the state
the callbacks left (the stopped replica's samplers are put back first), so a replica's
results never depend on the look-ahead.

:class:`ReplicaHooks` hands each replica's hooks (its callbacks, its observer) a
per-replica :class:`~modjax.train.loop.LoopRun`, so a callback sees the replica's own
results and a :class:`ReplicaPhase` as ``phase``; the group's progress bar reads the
mean over the replicas of every metric logged for the epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modjax.train.feeds import binding_records
from modjax.train.hooks import CallbackHook, Hook, ObserverHook
from modjax.train.loop import LoopRun
from modjax.train.phases import NanPolicy, ResultRecording
from modjax.train.programs import counting_traces
from modjax.train.progress import EpochProgress
from modjax.train.results import EpochRecord, TrainResults
from modjax.train.train_epochs import distinct_samplers
from modjax.train.vectorized import put_replica, stack_plans, take_replica

__all__ = ["ReplicaEpochs", "ReplicaHooks", "ReplicaPhase", "replica_observers", "replica_runs",
           "group_progress", "member_observer"]


class ReplicaPhase:
    """What a callback of replica ``k`` sees as ``phase`` (the rest reads the template)."""

    def __init__(self, body: ReplicaEpochs, k: int) -> None:
        self._body, self._k = body, k

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body.phase, name)

    @property
    def graph(self) -> Any:
        return self._body.specs[self._k].graph

    @property
    def replica(self) -> str:
        """The replica's label."""
        return self._body.specs[self._k].label

    checkpointing = None

    def current_variables(self) -> Any:
        return take_replica(self._body.carry["variables"], self._k)

    def snapshot(self) -> dict[str, Any]:
        return take_replica(self._body.carry, self._k)

    def restore_snapshot(self, snap: Any) -> None:
        part = {k: snap[k] for k in ("variables", "opt_state", "step", "key") if k in snap}
        sub = {k: self._body.carry[k] for k in part}
        self._body.carry = dict(self._body.carry, **put_replica(sub, self._k, part))

    def request_stop(self) -> None:
        self._body.active[self._k] = False

    def __repr__(self) -> str:
        return f"ReplicaPhase({self._body.phase.label!r}, replica={self.replica!r})"


@dataclass
class _Ahead:
    """An epoch dispatched before the previous one's losses were read."""

    epoch: int
    live: list[int]
    per: list[Any]          # per replica, its plan per feed
    plans: Any              # the stacked plans, placed
    counts: list[int]
    samplers: dict[int, list[tuple[Any, Any]]]   # live replica -> [(sampler, state before)]
    start: Any              # the carry it started from
    active: tuple[bool, ...]
    out: Any


class ReplicaEpochs:
    """The loop body of a vectorized phase (see the module docstring).

    Args:
        phase: the template TrainPhase.
        specs: the replicas.
        fn: the vmapped epoch (:func:`~modjax.train.vectorized.replica_epoch`).
        carry: the stacked starting carry.
        args: ``(frozen, stores, loss_weights)`` passed to ``fn`` every epoch.
        record: node labels recorded per batch (empty: nothing recorded).
        place: puts the stacked plans where the carry lives (a mesh or not).
        progress: the group's EpochProgress (its batch bar counts each epoch's batches).
    """

    def __init__(self, phase: Any, specs: Sequence[Any], fn: Any, carry: Any, args: tuple,
                 *, record: Sequence[str], place: Any, progress: Any = None) -> None:
        self.phase, self.specs, self.fn, self.carry = phase, list(specs), fn, carry
        self.args, self.recorded, self.place, self.progress = args, list(record), place, progress
        self.n_epochs = phase.n_epochs
        self.active = [True] * len(self.specs)
        self.epochs = [s.epochs_run for s in self.specs]
        self.results = [TrainResults(phase.label, graph=s.graph,
                                     loss_nodes={al.label: al.node for al in phase.losses})
                        for s in self.specs]
        self.done: list[int] = []
        self.recs: dict[int, EpochRecord] = {}
        self._ahead: _Ahead | None = None

    @property
    def live(self) -> list[int]:
        """The replicas still training."""
        return [k for k, a in enumerate(self.active) if a]

    # ------------------------------------------------------------ dispatch
    def _draw(self, epoch: int, live: list[int]) -> _Ahead:
        """Every live replica's next plans (samplers advance; their states are kept)."""
        saved = {k: [(s, s.get_state()) for s in distinct_samplers(self.specs[k].feeds)]
                 for k in live}
        own = {k: self.phase._epoch_plans(self.specs[k].feeds) for k in live}
        # stopped replicas draw no plan (their samplers stay where a run of their own
        # would leave them); they scan a live replica's plan with every update masked
        per = [own.get(k, own[live[0]]) for k in range(len(self.specs))]
        plans: dict[str, Any] = {}
        counts: list[int] = []
        for i, f in enumerate(self.specs[0].feeds):
            plans[f.key], counts = stack_plans([p[i] for p in per])
        return _Ahead(epoch, live, per, self.place(plans), counts, saved, None, (), None)

    def _dispatch(self, a: _Ahead) -> _Ahead:
        frozen, stores, weights = self.args
        a.start, a.active = self.carry, tuple(self.active)
        with counting_traces(self.phase):
            a.out = self.fn(self.carry, frozen, stores, a.plans, np.asarray(self.active), weights)
        return a

    def _current(self, epoch: int, live: list[int]) -> _Ahead:
        """This epoch's dispatch: the look-ahead when it still holds, else a new one."""
        a, self._ahead = self._ahead, None
        if a is None or a.epoch != epoch:
            return self._dispatch(self._draw(epoch, live))
        if a.start is self.carry and a.active == tuple(self.active):
            return a
        for k in set(a.live) - set(live):   # stopped since: its samplers never advanced
            for s, st in a.samplers[k]:
                s.set_state(st)
        a.live = live
        return self._dispatch(a)

    # ------------------------------------------------------------ the body
    def run_epoch(self, run: LoopRun, epoch: int) -> EpochRecord:
        t0 = time.time()
        live = self.live
        a = self._current(epoch, live)
        if self.progress is not None:
            self.progress.start_epoch(epoch, max(a.counts))
            self.progress.advance_batches(max(a.counts))
        pre = self.carry
        self.carry, out = a.out
        if epoch + 1 < self.n_epochs:
            self._ahead = self._dispatch(self._draw(epoch + 1, live))
        table = np.asarray(out["loss_table"])
        self.done, self.recs = [], {}
        for k in live:
            rec = self._record_of(k, epoch, a, table, out)
            if self._nan_stop(pre, k, rec, epoch):
                continue
            rec.started_at, rec.ended_at = t0, time.time()
            self.recs[k] = rec
            self.done.append(k)
        # the group's record: each finished replica's mean loss (the loop only passes it on)
        return EpochRecord(epoch, np.asarray([np.mean(self.recs[k].loss) for k in self.done]), {})

    def _record_of(self, k: int, epoch: int, a: _Ahead, table: np.ndarray, out: Any
                   ) -> EpochRecord:
        n = a.counts[k]
        rec = EpochRecord(epoch, table[k, :n, 0],
                          {al.label: table[k, :n, j + 1] for j, al in enumerate(self.phase.losses)},
                          None, binding_records(self.specs[k].feeds, a.per[k]))
        if self.recorded:
            rec.records = _rows(out["records"], k, n)
        return rec

    def _nan_stop(self, pre: Any, k: int, rec: EpochRecord, epoch: int) -> bool:
        """True when replica ``k`` stops on a non-finite loss (its carry is put back)."""
        bad = np.flatnonzero(~np.isfinite(rec.loss))
        if not bad.size or self.phase.nan_policy is NanPolicy.IGNORE:
            return False
        b = int(bad[0])
        if self.phase.nan_policy is NanPolicy.RAISE:
            raise FloatingPointError(
                f"TrainPhase {self.phase.label!r}, replica {self.specs[k].label!r}: non-finite "
                f"loss at epoch {epoch}, batch {b} (losses: "
                f"{ {n: float(v[b]) for n, v in rec.losses.items()} }); no graph was written "
                "(nan_policy='stop' stops this replica instead)")
        self.results[k].nan_stop = (epoch, b)  # type: ignore[attr-defined]
        self.results[k].stopped_early = True
        self.carry = put_replica(self.carry, k, take_replica(pre, k))
        self.active[k] = False
        return True

    def discard_epoch(self, rec: EpochRecord) -> None:
        """Not reached: the NaN policy is applied per replica in :meth:`run_epoch`."""

    def record(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        keep = self.phase.result_recording is not ResultRecording.NONE
        for k in self.done:
            results, r = self.results[k], self.recs[k]
            results.add_epoch(r, keep_records=keep)
            if self.phase.result_recording is ResultRecording.LAST:
                results.drop_records_except(epoch)
            counts = results._batch_counts(r)
            results.metrics.log("train_loss",
                                float(np.sum(r.loss * counts) / max(counts.sum(), 1.0)),
                                epoch=epoch)
            self.epochs[k] += 1

    def stop_requested(self) -> bool:
        return not any(self.active)

    def end(self, run: LoopRun) -> None:
        """A look-ahead past the last epoch run is dropped (its samplers put back)."""
        a, self._ahead = self._ahead, None
        for k in a.live if a is not None else ():
            for s, st in a.samplers[k]:
                s.set_state(st)

    def abort(self) -> None:
        """Nothing is written to any graph by a vectorized run."""
        self._ahead = None

    def finish(self, run: LoopRun) -> Any:
        return run.results


def _rows(tree: Any, k: int, n: int) -> Any:
    import jax

    return jax.tree.map(lambda a: a[k, :n], tree)


class ReplicaHooks(Hook):
    """Each replica's own hooks, called with a per-replica LoopRun inside its scope; after
    the replicas' ``epoch_end``, the group's results get the mean over the replicas of
    every metric logged for the epoch (what the group's progress bar shows).

    Args:
        body: the running :class:`ReplicaEpochs`.
        runs: one LoopRun per replica (its phase view, experiment, results and hooks).
    """

    def __init__(self, body: ReplicaEpochs, runs: Sequence[LoopRun], *, means: bool = True
                 ) -> None:
        self.body, self.runs, self.means = body, list(runs), means

    def _each(self, which: Sequence[int], call: Any) -> None:
        for k in which:
            r = self.runs[k]
            if not r.hooks:
                continue
            with self.body.specs[k].scope():
                for h in r.hooks:
                    call(h, r, k)

    def setup(self, run: LoopRun) -> None:
        self._each(range(len(self.runs)), lambda h, r, k: h.setup(r))

    def phase_start(self, run: LoopRun) -> None:
        self._each(range(len(self.runs)), lambda h, r, k: h.phase_start(r))

    def epoch_start(self, run: LoopRun, epoch: int) -> None:
        self._each(self.body.live, lambda h, r, k: h.epoch_start(r, epoch))

    def epoch_end(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        recs = self.body.recs
        self._each(self.body.done, lambda h, r, k: h.epoch_end(r, epoch, recs[k]))
        if self.means:
            self._log_means(run, epoch)

    def _log_means(self, run: LoopRun, epoch: int) -> None:
        values: dict[str, list[float]] = {}
        for k in self.body.done:
            m = self.runs[k].results.metrics
            for name in m.names:
                v = m.epoch_value(name, epoch)
                if v is not None:
                    values.setdefault(name, []).append(v)
        for name, vs in values.items():
            run.results.metrics.log(name, float(np.mean(vs)), epoch=epoch)

    def phase_end(self, run: LoopRun) -> None:
        self._each(range(len(self.runs)), lambda h, r, k: h.phase_end(r))

    def close(self) -> None:
        for r in self.runs:
            for h in r.hooks:
                h.close()


def replica_observers(phase: Any, specs: Sequence[Any]) -> list[Any]:
    """Each replica's observer: the phase's or its experiment's; an observer several
    replicas would share gets one child per replica instead (labelled like the replica,
    dots as underscores), so every replica's curves stay apart.

    Args:
        phase: the template TrainPhase.
        specs: the replicas.

    Returns:
        One Observer (or None) per replica.
    """
    found = [phase.observer if phase.observer is not None
             else getattr(s.experiment, "observer", None) for s in specs]
    out = []
    for s, obs in zip(specs, found):
        if obs is None or sum(o is obs for o in found) == 1:
            out.append(obs)
            continue
        out.append(member_observer(obs, s.label))
    return out


def member_observer(observer: Any, label: str) -> Any:
    """The child of ``observer`` that holds member ``label``'s curves (made on first use;
    dots in the label become underscores, as child labels have none).

    Example:
        >>> from modjax.observe import Observer
        >>> obs = Observer()
        >>> member_observer(obs, "lr0.1") is obs.child("lr0_1")
        True
    """
    name = label.replace(".", "_")
    child = observer.children.get(name)
    if child is None:
        from modjax.observe import Observer

        child = Observer(name=name)
        observer.attach_child(name, child)
    return child


def replica_runs(body: ReplicaEpochs, observers: Sequence[Any]) -> list[LoopRun]:
    """One LoopRun per replica: its callbacks (in execution order), then its observer."""
    runs = []
    for k, s in enumerate(body.specs):
        hooks: list[Hook] = []
        if s.callbacks:
            hooks.append(CallbackHook(sorted(s.callbacks, key=lambda c: c.execution_order)))
        if observers[k] is not None:
            hooks.append(ObserverHook(observers[k]))
        runs.append(LoopRun(ReplicaPhase(body, k), s.experiment, body.results[k], hooks))
    return runs


def group_progress(phase: Any, n_replicas: int, options: Mapping[str, Any]) -> EpochProgress:
    """The progress bar of a vectorized phase: one bar for the group (``show_training_progress``
    defaults to True, as for ``TrainPhase.execute``), labelled with the replica count.

    Args:
        phase: the template TrainPhase.
        n_replicas: how many replicas train together.
        options: display options of ``Experiment.run`` (others are ignored).

    Returns:
        The EpochProgress.
    """
    return EpochProgress(f"{phase.label} x{n_replicas}", phase.n_epochs,
                         enabled=bool(options.get("show_training_progress", True)),
                         persist=bool(options.get("persist_progress", False)),
                         val_metric=options.get("val_loss_metric", "val_loss"),
                         show_batches=bool(options.get("show_sampler_progress", False)),
                         file=options.get("progress_file"))
