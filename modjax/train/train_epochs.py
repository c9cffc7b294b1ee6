"""A TrainPhase's epochs: plans, dispatch, losses to the host, recording.

:class:`TrainEpochs` is the :class:`~modjax.train.loop.EpochBody` of a TrainPhase. Each
epoch asks the samplers for an index plan on the host (one per distinct sampler, then
scheduled across samplers), runs the compiled epoch on the device-resident stores, and
reads the per-batch losses back in one transfer. The next epoch is dispatched before the
current epoch's losses are read (:mod:`modjax.train.pipeline`), and its plan is made
while the device runs, so the host work costs no wall time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.distributed import spans_processes, to_host
from modjax.train.feeds import Feed, binding_records, stack_feeds
from modjax.train.loop import LoopRun
from modjax.train.metrics import log_epoch_metrics
from modjax.train.phases import ResultRecording
from modjax.train.programs import counting_traces
from modjax.train.results import EpochRecord, PhaseResults
from modjax.train.schedule import BatchSchedulingPolicy, schedule_plans
from modjax.train.streaming import run_streamed_epoch, stream_segments

__all__ = ["TrainEpochs", "epoch_plans", "distinct_samplers"]

Ahead = Mapping[int, tuple[tuple, IndexPlan]]


def distinct_samplers(feeds: Sequence[Feed]) -> list[Any]:
    """The feeds' samplers, each once (bindings may share one), in feed order."""
    samplers: list[Any] = []
    for f in feeds:
        if not any(f.sampler is s for s in samplers):
            samplers.append(f.sampler)
    return samplers


def plan_key(sampler: Any) -> tuple:
    """Everything a value-blind sampler's next plan depends on."""
    src = sampler.source
    return (sampler.epoch, sampler.seed, sampler.batch_size, sampler.shuffle,
            sampler.drop_last, id(src), src.n_samples)


def plans_ahead(feeds: Sequence[Feed]) -> dict[int, tuple[tuple, IndexPlan]]:
    """Next epoch's plans of value-blind samplers, made while the device runs this
    epoch. Counters are not advanced: a phase that stops after this epoch leaves its
    samplers exactly where they were."""
    return {id(s): (plan_key(s), s.plan()) for s in distinct_samplers(feeds)
            if not s.plan_reads_values}


def schedule(feeds: Sequence[Feed], samplers: Sequence[Any], raw: Sequence[IndexPlan],
             policy: BatchSchedulingPolicy) -> list[IndexPlan]:
    """The samplers' plans scheduled together, then each binding's stream."""
    scheduled = schedule_plans(list(raw), policy)
    return [f.select_stream(scheduled[next(i for i, s in enumerate(samplers) if s is f.sampler)])
            for f in feeds]


def epoch_plans(feeds: Sequence[Feed], policy: BatchSchedulingPolicy,
                ahead: Ahead | None = None) -> list[IndexPlan]:
    """One plan per distinct sampler (bindings sharing a sampler see the same rows),
    scheduled across samplers, then the stream each binding asked for.

    Args:
        feeds: the resolved bindings.
        policy: how several samplers' batches are scheduled.
        ahead: plans made ahead (:func:`plans_ahead`); one is used when its sampler has
            not changed since (callbacks may restore or rebind it).

    Returns:
        The epoch's plan per feed; every sampler has advanced one epoch.
    """
    samplers = distinct_samplers(feeds)

    def next_plan(s: Any) -> IndexPlan:
        key, plan = (ahead or {}).get(id(s), (None, None))
        if plan is not None and key == plan_key(s):
            s.epoch += 1
            return plan
        return s.next_plan()

    return schedule(feeds, samplers, [next_plan(s) for s in samplers], policy)


class TrainEpochs:
    """The epochs of one ``TrainPhase.execute`` (the loop's body).

    The running carry lives on the phase (``phase._carry``) so callbacks and
    checkpointing can read and restore it between epochs.

    Args:
        phase: the TrainPhase.
        graph: the graph it trains.
        optimizer: the phase's optimizer(s) (written back at the end).
        feeds: the resolved bindings.
        programs: ``(epoch, one_batch)`` compiled epochs (``one_batch`` None unless a
            hook acts at batch boundaries).
        streaming: the data exceeds the byte budget (chunked epochs).
        progress: the phase's EpochProgress.
        counters: phase counters and sampler state to restore if the phase raises.
    """

    def __init__(self, phase: Any, graph: Any, optimizer: Any, feeds: Sequence[Feed],
                 programs: tuple[Any, Any], *, streaming: bool, progress: Any,
                 counters: Any, blocks: Any = None) -> None:
        self.phase, self.graph, self.optimizer, self.feeds = phase, graph, optimizer, feeds
        self.fn, self.step_fn = programs
        self.streaming, self.progress, self.counters = streaming, progress, counters
        self.n_epochs = phase.n_epochs
        # the next epoch is dispatched before this one's losses are read; batch hooks and
        # streamed data run epoch by epoch
        self.pipelined = phase._pipeline and self.step_fn is None and not streaming
        self.blocks = blocks  # a BlockRunner: several epochs per dispatch
        self.spec: Any = None
        self.ahead_plans: Ahead = {}
        self.pre_epoch: Any = None
        self.owner = f"TrainPhase {phase.label!r}"

    # ----------------------------------------------------------------- one epoch
    def run_epoch(self, run: LoopRun, epoch: int) -> EpochRecord:
        t0 = time.time()
        if self.blocks is not None:
            rec, n_batches = self.blocks.epoch(epoch)
            self.progress.start_epoch(epoch, n_batches)
            self.progress.advance_batches(n_batches)
            rec.started_at, rec.ended_at = t0, time.time()
            return rec
        plans, dispatched = self._confirm()
        if dispatched is None:
            plans = epoch_plans(self.feeds, self.phase.batch_schedule, self.ahead_plans)
        self.ahead_plans, self.spec = {}, None
        self.progress.start_epoch(epoch, plans[0].n_batches)
        bindings = binding_records(self.feeds, plans)
        self.pre_epoch = self.phase._carry
        carry, out = self._dispatch(run, epoch, plans, dispatched)
        if epoch + 1 < self.n_epochs:  # host work that overlaps the dispatched scan
            self._plan_next(carry)
        rec = self._fetch(epoch, out, bindings)
        rec.started_at, rec.ended_at = t0, time.time()
        self.phase._carry = carry
        return rec

    def _dispatch(self, run: LoopRun, epoch: int, plans: Sequence[IndexPlan],
                  dispatched: tuple[Any, Any] | None) -> tuple[Any, Any]:
        """``(carry, per-batch outputs)`` of the epoch (still computing on the device)."""
        carry, progress = self.phase._carry, self.progress
        if dispatched is not None:  # a speculative epoch confirmed now
            progress.advance_batches(plans[0].n_batches)
            return dispatched
        if self.step_fn is not None:
            return self._run_batches(run, epoch, plans)
        if self.streaming:
            return run_streamed_epoch(self._call, carry, self.feeds, plans,
                                      on_chunk=progress.advance_batches)
        stores, dplans = stack_feeds(self.feeds, plans)
        out = self._call(carry, stores, dplans)
        progress.advance_batches(plans[0].n_batches)
        return out

    def _call(self, carry: Any, stores: dict, dplans: dict) -> tuple[Any, Any]:
        with counting_traces(self.phase):
            return self.fn(carry, stores, dplans)

    def _run_batches(self, run: LoopRun, epoch: int, plans: Sequence[IndexPlan]
                     ) -> tuple[Any, Any]:
        """One epoch batch by batch (hooks act at batch boundaries)."""
        if self.streaming:
            segments: Any = stream_segments(self.feeds, plans)
        else:
            stores, dplans = stack_feeds(self.feeds, plans)
            segments = [(stores, dplans, 0, plans[0].n_batches)]
        phase, outs = self.phase, []
        carry = phase._carry
        for stores, dplans, start, n_real in segments:
            for j in range(n_real):
                run.batch_start(epoch, start + j)
                chunk = jax.tree.map(lambda a, j=j: a[j:j + 1], dplans)
                with counting_traces(phase):
                    carry, o = self.step_fn(carry, stores, chunk)
                phase._carry = carry
                outs.append(o)
                self.progress.advance_batches(1)
                run.batch_end(epoch, start + j)
            if self.streaming:  # the chunk's scan finishes before the next chunk is gathered
                jax.block_until_ready(carry)
        return carry, jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

    def _fetch(self, epoch: int, out: Any, bindings: dict) -> EpochRecord:
        """The epoch's record: its one device->host transfer, the per-batch losses."""
        mesh = self.phase.mesh
        if spans_processes(mesh):  # sharded over other processes' devices: gather
            out = dict(out, records=to_host(out["records"]))
        table = np.asarray(to_host(out["loss_table"]) if spans_processes(mesh)
                           else out["loss_table"])
        losses = {al.label: table[:, i + 1] for i, al in enumerate(self.phase.losses)}
        rec = EpochRecord(epoch, table[:, 0], losses, out["records"], bindings)
        rec.metric_stats = out["metric_stats"]  # type: ignore[attr-defined]
        return rec

    # ----------------------------------------------------------------- speculation
    def _plan_next(self, carry: Any) -> None:
        """Make the next epoch's plans now and, pipelined, dispatch it from ``carry``."""
        self.ahead_plans = plans_ahead(self.feeds)
        if self.pipelined:
            self.spec = self._speculate(carry)

    def _speculate(self, carry: Any) -> Any:
        """Dispatch the next epoch from ``carry`` when every sampler's plan was made ahead."""
        from modjax.train.pipeline import speculate

        ahead, samplers = self.ahead_plans, distinct_samplers(self.feeds)
        if not all(id(s) in ahead for s in samplers):
            return None  # a value-reading sampler makes its plan only when it is due
        plans = schedule(self.feeds, samplers, [ahead[id(s)][1] for s in samplers],
                         self.phase.batch_schedule)

        def dispatch(c: Any, p: Sequence[IndexPlan]) -> tuple[Any, Any]:
            return self._call(c, *stack_feeds(self.feeds, p))

        return speculate(dispatch, carry, plans, tuple(ahead[id(s)][0] for s in samplers))

    def _confirm(self) -> tuple[Any, Any]:
        """``(plans, (carry, out))`` of a speculative epoch still valid now (its samplers
        then advance as if they had made the plans now), else ``(None, None)``."""
        spec, phase = self.spec, self.phase
        if spec is None:
            return None, None
        samplers = distinct_samplers(self.feeds)
        if phase._stop or not spec.valid(phase._carry, tuple(plan_key(s) for s in samplers)):
            phase._discarded += 1
            return None, None
        for s in samplers:
            s.epoch += 1
        return spec.plans, (spec.carry_out, spec.out)

    # ----------------------------------------------------------------- loop contract
    def discard_epoch(self, rec: EpochRecord) -> None:
        if self.blocks is not None:
            self.blocks.truncate(self.blocks.kept)
            return
        self.phase._carry = self.pre_epoch

    def record(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        phase, results = self.phase, run.results
        results.add_epoch(rec, keep_records=phase.result_recording is not ResultRecording.NONE)
        if phase.result_recording is ResultRecording.LAST:
            results.drop_records_except(epoch)
        counts = results._batch_counts(rec)
        train_loss = float(np.sum(rec.loss * counts) / max(counts.sum(), 1.0))
        results.metrics.log("train_loss", train_loss, epoch=epoch)
        log_epoch_metrics(phase.metrics, rec.__dict__.pop("metric_stats", None), results,
                          epoch, owner=self.owner)
        phase.epochs_run += 1
        if self.blocks is not None:
            self.blocks.kept += 1

    def stop_requested(self) -> bool:
        return self.phase._stop

    def end(self, run: LoopRun) -> None:
        if self.blocks is not None:
            self.blocks.end()
        self.phase._discarded += self.spec is not None  # dispatched past a stop: never used

    def abort(self) -> None:
        self.phase._carry = None  # drop the half-trained state; the graph was never written
        if self.counters is not None:
            self.phase.set_state(self.counters)

    def finish(self, run: LoopRun) -> PhaseResults:
        final = self.phase._carry
        self.phase._carry = None
        self.phase._write_back(self.graph, self.optimizer, final)
        return run.results
