"""Train one TrainPhase for K replicas at once: the host loop around the vmapped epoch.

A :class:`ReplicaSpec` says what one replica starts from (variables, optimizer state,
PRNG seed, loss weights) and what it reads (its feeds, with its own sampler copies).
:func:`run_replicas` makes each replica's index plan on the host per epoch, pads the
plans to one batch count, runs the epoch as one vmapped scan, and hands every replica
the usual :class:`~modjax.train.results.TrainResults` and its own callbacks. A callback
sees a per-replica view of the phase (:class:`ReplicaPhase`): ``request_stop()`` stops
that replica only (its updates are masked from then on; the program does not change),
``snapshot``/``restore_snapshot`` act on its slice, so ``EarlyStopping(restore_best=True)``
works per replica.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.train.callbacks import Callback
from modjax.train.feeds import Feed as _Feed
from modjax.train.feeds import binding_records as _binding_records
from modjax.train.metrics import check_class_targets
from modjax.train.phases import NanPolicy, ResultRecording
from modjax.train.programs import counting_traces
from modjax.train.results import EpochRecord, TrainResults
from modjax.train.step import init_train_carry
from modjax.train.train_phase import TrainPhase
from modjax.train.vectorized import (
    pad_rows,
    put_replica,
    replica_epoch,
    stack_plans,
    stack_trees,
    take_replica,
)

__all__ = ["ReplicaSpec", "ReplicaPhase", "run_replicas", "make_spec", "vectorizable",
           "ReplicaOutcome"]


@dataclass
class ReplicaSpec:
    """One replica of a vectorized TrainPhase.

    Attributes:
        label: the replica's name (used in error messages and results).
        graph: its graph (every replica's definition must be equal).
        feeds: its resolved bindings (own sampler copies, bound to its views).
        variables: starting ``{"params", "state"}``.
        opt_state: starting optimizer state (None: fresh).
        seed: base of its PRNG key (dropout), as ``TrainPhase(seed=...)``.
        epochs_run: the phase's epoch counter before this run (keys fold it in).
        loss_weights: per loss of the phase, its weight for this replica.
        callbacks: its own callback instances.
        experiment: the Experiment the callbacks see.
        scope: a context manager factory applied around this replica's host work
            (callbacks), e.g. binding its cross-validation fold's splits.
        samplers: ``{id(original sampler): copy}`` (its sampler copies).
    """

    label: str
    graph: Any
    feeds: list[Any]
    variables: Any
    opt_state: Any = None
    seed: int = 0
    epochs_run: int = 0
    loss_weights: tuple[float, ...] = ()
    callbacks: list[Callback] = field(default_factory=list)
    experiment: Any = None
    scope: Callable[[], Any] = contextlib.nullcontext
    samplers: dict[int, Any] = field(default_factory=dict)


@dataclass
class ReplicaOutcome:
    """What one replica ends with: its results, variables, optimizer state, epochs run,
    its sampler copies (``{id(original): copy}``) and the stacked variables of all
    replicas (one shared tree, placed as the run placed it)."""

    results: TrainResults
    variables: Any
    opt_state: Any
    epochs_run: int
    samplers: dict[int, Any]
    stacked_variables: Any = None


def vectorizable(phase: TrainPhase) -> str | None:
    """Why ``phase`` cannot run vectorized (None when it can).

    Example:
        >>> vectorizable(TrainPhase("t", input_sources=[], losses=[_mse()]))
    """
    if phase.checkpointing is not None:
        return "it has a Checkpointing"
    if any(cb.uses_batch_hooks for cb in phase.callbacks):
        return "a callback uses batch hooks"
    if phase.mesh is not None or phase.shard_params:
        return "it has its own mesh"
    if phase.byte_budget is not None:
        return "it streams its data (byte_budget)"
    if getattr(phase, "metrics", None):
        return "it computes training metrics in its step"
    return None


def _mse() -> Any:
    from modjax.train.losses import AppliedLoss
    return AppliedLoss("mse", on="x")


def make_spec(phase: TrainPhase, graph: Any, *, label: str, variables: Any = None,
              opt_state: Any = None, seed: int | None = None, sampler_seed: int | None = None,
              sampler_offset: int = 0, loss_weights: dict[str, float] | None = None, experiment: Any = None,
              scope: Callable[[], Any] = contextlib.nullcontext) -> ReplicaSpec:
    """A replica of ``phase`` on ``graph`` (bindings resolved now, inside ``scope``).

    Args:
        phase: the template TrainPhase.
        graph: the replica's graph.
        label: the replica's name.
        variables: starting variables (default: the graph's).
        opt_state: starting optimizer state (default: the graph's when it matches).
        seed: PRNG seed (default: the phase's).
        sampler_seed: seed of every sampler copy (default: each sampler's own).
        sampler_offset: added to each sampler copy's seed (ensembles: the replica index).
        loss_weights: ``{loss label: weight}`` overriding the phase's weights.
        experiment: the Experiment callbacks see.
        scope: applied while the bindings resolve and around the replica's callbacks.

    Returns:
        The spec.
    """
    weights = {al.label: al.weight for al in phase.losses}
    for name, w in (loss_weights or {}).items():
        if name not in weights:
            from modjax.errors import closest_names
            raise KeyError(f"replica {label!r}: phase {phase.label!r} has no loss {name!r}; losses "
                           f"like it: {closest_names(name, list(weights))}")
        weights[name] = float(w)
    owner = f"TrainPhase {phase.label!r} (replica {label!r})"
    samplers: dict[int, Any] = {}
    with scope():
        feeds = []
        for b in phase._bindings(graph):
            bc = copy.copy(b)
            if b.sampler is not None:
                if id(b.sampler) not in samplers:
                    s = copy.copy(b.sampler)
                    s._source = None  # rebound to this replica's view by the feed
                    if sampler_seed is not None:
                        s.seed = int(sampler_seed)
                    s.seed += int(sampler_offset)
                    samplers[id(b.sampler)] = s
                bc.sampler = samplers[id(b.sampler)]
            feeds.append(_Feed(bc, graph, owner=owner, mesh=None, tags=phase._loss_tags()))
        check_class_targets(graph, phase.losses, feeds, owner=owner)
    if variables is None:
        variables = graph.variables
        if opt_state is None:
            opt_state = graph.opt_state
    cbs = [copy.copy(cb) for cb in phase.callbacks]
    return ReplicaSpec(label, graph, feeds, variables, opt_state,
                       phase.seed if seed is None else int(seed), phase.epochs_run,
                       tuple(weights[al.label] for al in phase.losses), cbs, experiment, scope,
                       samplers)


class ReplicaPhase:
    """What a callback of replica ``k`` sees as ``phase`` (the rest reads the template)."""

    def __init__(self, run: _Run, k: int) -> None:
        self._run, self._k = run, k

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run.phase, name)

    @property
    def graph(self) -> Any:
        return self._run.specs[self._k].graph

    @property
    def replica(self) -> str:
        """The replica's label."""
        return self._run.specs[self._k].label

    checkpointing = None

    def current_variables(self) -> Any:
        return take_replica(self._run.carry["variables"], self._k)

    def snapshot(self) -> dict[str, Any]:
        return take_replica(self._run.carry, self._k)

    def restore_snapshot(self, snap: Any) -> None:
        part = {k: snap[k] for k in ("variables", "opt_state", "step", "key") if k in snap}
        sub = {k: self._run.carry[k] for k in part}
        self._run.carry = dict(self._run.carry, **put_replica(sub, self._k, part))

    def request_stop(self) -> None:
        self._run.active[self._k] = False

    def __repr__(self) -> str:
        return f"ReplicaPhase({self._run.phase.label!r}, replica={self.replica!r})"


class _Run:
    """State of one vectorized phase run (the stacked carry and per-replica flags)."""

    def __init__(self, phase: TrainPhase, specs: Sequence[ReplicaSpec]) -> None:
        self.phase, self.specs = phase, list(specs)
        self.carry: Any = None
        self.active = [True] * len(self.specs)


def _check_group(phase: TrainPhase, specs: Sequence[ReplicaSpec]) -> None:
    d0, keys0 = specs[0].graph.definition, [f.key for f in specs[0].feeds]
    for s in specs[1:]:
        if s.graph.definition != d0:
            raise ValueError(f"TrainPhase {phase.label!r}: replica {s.label!r} has another graph "
                             f"structure than {specs[0].label!r}; replicas must share a definition")
        keys = [f.key for f in s.feeds]
        if keys != keys0:
            raise ValueError(f"TrainPhase {phase.label!r}: replica {s.label!r} feeds {keys}, "
                             f"replica {specs[0].label!r} feeds {keys0}")
        if sorted(s.graph.frozen_paths) != sorted(specs[0].graph.frozen_paths):
            raise ValueError(f"TrainPhase {phase.label!r}: replica {s.label!r} freezes "
                             f"{sorted(s.graph.frozen_paths)}, replica {specs[0].label!r} "
                             f"{sorted(specs[0].graph.frozen_paths)}")


def _stores(specs: Sequence[ReplicaSpec]) -> tuple[dict, dict]:
    """Store arrays per key: shared when every replica reads the same rows, else stacked."""
    stores, shared = {}, {}
    for i, f0 in enumerate(specs[0].feeds):
        views = [s.feeds[i].view for s in specs]
        same = all(v.source is views[0].source and np.array_equal(
            np.asarray(v.indices), np.asarray(views[0].indices)) for v in views[1:])
        shared[f0.key] = same
        if same:
            stores[f0.key] = f0.store.arrays
        else:
            stores[f0.key] = pad_rows([s.feeds[i].store.arrays for s in specs])
    return stores, shared


def _initial_carry(phase: TrainPhase, specs: Sequence[ReplicaSpec], optimizer: Any) -> Any:
    carries = []
    struct = jax.tree.structure(jax.eval_shape(optimizer.init, specs[0].variables["params"]))
    for s in specs:
        opt_state = s.opt_state
        if opt_state is not None and jax.tree.structure(opt_state) != struct:
            opt_state = None
        key = jax.random.fold_in(jax.random.key(s.seed), s.epochs_run)
        c = init_train_carry(s.variables, optimizer, key, opt_state=opt_state)
        c.pop("frozen")
        carries.append(c)
    return stack_trees(carries)


def _place(tree: Any, mesh: Any) -> Any:
    if mesh is None:
        return tree
    from jax.sharding import NamedSharding, PartitionSpec

    from modjax.train.vectorized import REPLICA_AXIS
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(REPLICA_AXIS)))


def run_replicas(phase: TrainPhase, specs: Sequence[ReplicaSpec], *, mesh: Any = None
                 ) -> list[ReplicaOutcome]:
    """Train every replica of ``phase`` together, one vmapped scan per epoch.

    Args:
        phase: the template TrainPhase (losses, epochs, recording, nan policy).
        specs: the replicas (equal definitions, feeds and batch shapes).
        mesh: a ``Mesh`` with a ``"replica"`` axis to shard the replicas over.

    Returns:
        One outcome per replica, in order. Nothing is written to any graph.

    Raises:
        ValueError: the replicas do not share a structure (the replica is named).
        FloatingPointError: a replica's loss is not finite under ``nan_policy="raise"``.
    """
    from modjax.train.step import graph_optimizers

    _check_group(phase, specs)
    graph = specs[0].graph
    optimizer = graph_optimizers(graph)
    if isinstance(optimizer, dict):
        raise ValueError(f"TrainPhase {phase.label!r}: stage-wise training (an optimizer per "
                         "node) cannot run vectorized; give the graph a global optimizer")
    record = phase._record_nodes(graph) if phase.result_recording is not ResultRecording.NONE \
        else []
    stores, shared = _stores(specs)
    feeds0 = specs[0].feeds
    fn = replica_epoch(graph, phase.losses, optimizer, keys=[f.key for f in feeds0],
                       gathers={f.key: f.store.gather_fn() for f in feeds0}, shared=shared,
                       record=record, capture=phase.capture, active_nodes=phase.active_nodes,
                       compute_dtype=phase.compute_dtype, sharding=mesh)
    run = _Run(phase, specs)
    run.carry = _place(_initial_carry(phase, specs, optimizer), mesh)
    frozen = None
    if graph.frozen_paths:
        from modjax.train.optim import frozen_mask
        frozen = frozen_mask(specs[0].variables["params"], sorted(graph.frozen_paths))
    weights = jnp.asarray([s.loss_weights for s in specs], jnp.float32)
    results = [TrainResults(phase.label, graph=s.graph,
                            loss_nodes={al.label: al.node for al in phase.losses}) for s in specs]
    epochs = [s.epochs_run for s in specs]
    views = [ReplicaPhase(run, k) for k in range(len(specs))]
    _hooks(run, views, results, "on_phase_start")
    for epoch in range(phase.n_epochs):
        live = [k for k, a in enumerate(run.active) if a]
        if not live:
            break
        _hooks(run, views, results, "on_epoch_start", epoch=epoch, only=live)
        t0 = time.time()
        # stopped replicas draw no plan (their samplers stay where a run of their own
        # would leave them); they scan a live replica's plan with every update masked
        own = {k: phase._epoch_plans(specs[k].feeds) for k in live}
        per = [own.get(k, own[live[0]]) for k in range(len(specs))]
        plans: dict[str, Any] = {}
        counts: list[int] = []
        for i, f in enumerate(feeds0):
            plans[f.key], counts = stack_plans([p[i] for p in per])
        pre = run.carry
        active = np.asarray(run.active)
        with counting_traces(phase):
            run.carry, out = fn(run.carry, frozen, stores, _place(plans, mesh), active, weights)
        table = np.asarray(out["loss_table"])
        done = []
        for k in live:
            s = specs[k]
            rec = EpochRecord(epoch, table[k, :counts[k], 0],
                              {al.label: table[k, :counts[k], j + 1]
                               for j, al in enumerate(phase.losses)},
                              None, _binding_records(s.feeds, per[k]))
            if not _nan_check(phase, run, pre, k, rec, epoch):
                results[k].nan_stop = rec.nan_stop  # type: ignore[attr-defined]
                results[k].stopped_early = True
                continue
            if record:
                rec.records = jax.tree.map(lambda a, k=k, n=counts[k]: a[k, :n], out["records"])
            rec.started_at, rec.ended_at = t0, time.time()
            _add_epoch(phase, results[k], rec, epoch)
            epochs[k] += 1
            done.append(k)
        _hooks(run, views, results, "on_epoch_end", epoch=epoch, only=done)
    _hooks(run, views, results, "on_phase_end")
    return [ReplicaOutcome(results[k], take_replica(run.carry["variables"], k),
                           take_replica(run.carry["opt_state"], k), epochs[k], s.samplers,
                           run.carry["variables"])
            for k, s in enumerate(specs)]


def _add_epoch(phase: TrainPhase, results: TrainResults, rec: EpochRecord, epoch: int) -> None:
    results.add_epoch(rec, keep_records=phase.result_recording is not ResultRecording.NONE)
    if phase.result_recording is ResultRecording.LAST:
        results.drop_records_except(epoch)
    counts = results._batch_counts(rec)
    results.metrics.log("train_loss", float(np.sum(rec.loss * counts) / max(counts.sum(), 1.0)),
                        epoch=epoch)


def _nan_check(phase: TrainPhase, run: _Run, pre: Any, k: int, rec: EpochRecord,
               epoch: int) -> bool:
    """False when replica ``k`` stops on a non-finite loss (its carry is put back)."""
    bad = np.flatnonzero(~np.isfinite(rec.loss))
    if not bad.size or phase.nan_policy is NanPolicy.IGNORE:
        return True
    b = int(bad[0])
    if phase.nan_policy is NanPolicy.RAISE:
        raise FloatingPointError(
            f"TrainPhase {phase.label!r}, replica {run.specs[k].label!r}: non-finite loss at "
            f"epoch {epoch}, batch {b} (losses: { {n: float(v[b]) for n, v in rec.losses.items()} })"
            "; no graph was written (nan_policy='stop' stops this replica instead)")
    rec.nan_stop = (epoch, b)  # type: ignore[attr-defined]
    run.carry = put_replica(run.carry, k, take_replica(pre, k))
    run.active[k] = False
    return False


def _hooks(run: _Run, views: Sequence[ReplicaPhase], results: Sequence[TrainResults], hook: str,
           *, only: Sequence[int] | None = None, **kw: Any) -> None:
    for k in (range(len(run.specs)) if only is None else only):
        s = run.specs[k]
        cbs = sorted(s.callbacks, key=lambda c: c.execution_order)
        if not cbs:
            continue
        with s.scope():
            for cb in cbs:
                getattr(cb, hook)(experiment=s.experiment, phase=views[k], results=results[k], **kw)
