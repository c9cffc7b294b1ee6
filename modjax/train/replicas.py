"""Train one TrainPhase for K replicas at once: the host loop around the vmapped epoch.

A :class:`ReplicaSpec` says what one replica starts from (variables, optimizer state,
PRNG seed, loss weights) and what it reads (its feeds, with its own sampler copies).
:func:`run_replicas` makes each replica's index plan on the host per epoch, pads the
plans to one batch count, runs the epoch as one vmapped scan, and hands every replica
the usual :class:`~modjax.train.results.TrainResults` and its own callbacks. A callback
sees a per-replica view of the phase (:class:`ReplicaPhase`): ``request_stop()`` stops
that replica only (its updates are masked from then on; the program does not change),
``snapshot``/``restore_snapshot`` act on its slice, so ``EarlyStopping(restore_best=True)``
works per replica. The epochs run through the one epoch loop (:mod:`modjax.train.loop`);
the loop body and the per-replica hooks are in :mod:`modjax.train.replica_loop`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.train.callbacks import Callback
from modjax.train.epoch_program import start_key
from modjax.train.feeds import Feed as _Feed
from modjax.train.hooks import Hook, ProgressHook
from modjax.train.loop import LoopRun, run_loop
from modjax.train.metrics import check_class_targets
from modjax.train.phases import ResultRecording
from modjax.train.progress import EpochProgress
from modjax.train.replica_loop import (
    ReplicaEpochs,
    ReplicaHooks,
    ReplicaPhase,
    replica_observers,
    replica_runs,
)
from modjax.train.results import TrainResults
from modjax.train.train_phase import TrainPhase
from modjax.train.vectorized import (
    pad_rows,
    put_replica,
    replica_epoch,
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


def _initial_carry(specs: Sequence[ReplicaSpec], optimizer: Any) -> Any:
    """The stacked starting carry (each part made once for all replicas, not K times)."""
    params = specs[0].variables["params"]
    struct = jax.tree.structure(jax.eval_shape(optimizer.init, params))
    given = [s.opt_state if s.opt_state is not None and jax.tree.structure(s.opt_state) == struct
             else None for s in specs]
    variables = stack_trees([s.variables for s in specs])
    if all(g is not None for g in given):
        opt_state = stack_trees(given)
    else:
        # vmapped but not jitted: one dispatch per op for all replicas, and nothing to
        # compile (a compiled init costs more on a cold start than it saves warm)
        opt_state = jax.vmap(optimizer.init)(variables["params"])
        for k, g in enumerate(given):
            if g is not None:
                opt_state = put_replica(opt_state, k, g)
    seeds, runs = [s.seed for s in specs], [s.epochs_run for s in specs]
    if all(-2**31 <= v < 2**31 for v in seeds) and all(0 <= v < 2**31 for v in runs):
        keys = _start_keys(np.asarray(seeds, np.int32), np.asarray(runs, np.uint32))
    else:  # seeds outside 32 bits: key() splits them into two words, one replica at a time
        keys = stack_trees([start_key(a, b) for a, b in zip(seeds, runs)])
    return {"variables": variables, "opt_state": opt_state, "key": keys,
            "step": jnp.zeros(len(specs), jnp.int32)}


@jax.jit
def _start_keys(seeds: Any, epochs: Any) -> Any:
    # each replica's key as a run of its own makes it: fold_in(key(seed), epochs_run)
    return jax.vmap(lambda s, e: jax.random.fold_in(jax.random.key(s), e))(seeds, epochs)


def _place(tree: Any, mesh: Any, *, replicated: bool = False) -> Any:
    """``tree`` split over the mesh's replica axis (or a copy on every device)."""
    if mesh is None:
        return tree
    from jax.sharding import NamedSharding, PartitionSpec

    from modjax.train.vectorized import REPLICA_AXIS
    spec = PartitionSpec() if replicated else PartitionSpec(REPLICA_AXIS)
    return jax.device_put(tree, NamedSharding(mesh, spec))


def _program(phase: TrainPhase, specs: Sequence[ReplicaSpec], mesh: Any
              ) -> tuple[Any, Any, list[str], dict]:
    """The group's optimizer, vmapped epoch, recorded nodes and store arrays."""
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
    if mesh is not None:
        # placed once: left on one device, every epoch would copy them to the others
        stores = {k: _place(v, mesh, replicated=shared[k]) for k, v in stores.items()}
    feeds0 = specs[0].feeds
    fn = replica_epoch(graph, phase.losses, optimizer, keys=[f.key for f in feeds0],
                       gathers={f.key: f.store.gather_fn() for f in feeds0}, shared=shared,
                       record=record, capture=phase.capture, active_nodes=phase.active_nodes,
                       compute_dtype=phase.compute_dtype, sharding=mesh)
    return optimizer, fn, record, stores


def run_replicas(phase: TrainPhase, specs: Sequence[ReplicaSpec], *, mesh: Any = None,
                 progress: EpochProgress | None = None) -> list[ReplicaOutcome]:
    """Train every replica of ``phase`` together, one vmapped scan per epoch.

    Each replica's callbacks and observer (the phase's, else its experiment's; a shared
    one gets a child per replica) see its own epochs, as in a run of its own.

    Args:
        phase: the template TrainPhase (losses, epochs, recording, nan policy).
        specs: the replicas (equal definitions, feeds and batch shapes).
        mesh: a ``Mesh`` with a ``"replica"`` axis to shard the replicas over.
        progress: the group's progress bar (epochs; the mean of each metric over the
            replicas), or None.

    Returns:
        One outcome per replica, in order. Nothing is written to any graph.

    Raises:
        ValueError: the replicas do not share a structure (the replica is named).
        FloatingPointError: a replica's loss is not finite under ``nan_policy="raise"``.
    """
    n_real = len(specs)
    specs = list(specs) + _mesh_padding(specs, mesh)
    optimizer, fn, record, stores = _program(phase, specs, mesh)
    graph = specs[0].graph
    frozen = None
    if graph.frozen_paths:
        from modjax.train.optim import frozen_mask
        frozen = frozen_mask(specs[0].variables["params"], sorted(graph.frozen_paths))
    weights = jnp.asarray([s.loss_weights for s in specs], jnp.float32)
    body = ReplicaEpochs(phase, specs, fn, _place(_initial_carry(specs, optimizer), mesh),
                         (frozen, stores, weights), record=record,
                         place=lambda t: _place(t, mesh), progress=progress)
    body.active[n_real:] = [False] * (len(specs) - n_real)   # padding never trains
    runs = replica_runs(body, replica_observers(phase, specs[:n_real]) +
                        [None] * (len(specs) - n_real))
    hooks: list[Hook] = [ReplicaHooks(body, runs, means=progress is not None and progress.visible)]
    if progress is not None:
        hooks.append(ProgressHook(progress))
    group = TrainResults(phase.label, graph=graph)
    run_loop(body, LoopRun(phase, specs[0].experiment, group, hooks))
    carry = body.carry
    stacked = carry["variables"] if n_real == len(specs) else \
        jax.tree.map(lambda a: a[:n_real], carry["variables"])
    return [ReplicaOutcome(body.results[k], take_replica(carry["variables"], k),
                           take_replica(carry["opt_state"], k), body.epochs[k], s.samplers,
                           stacked)
            for k, s in enumerate(specs[:n_real])]


def _mesh_padding(specs: Sequence[ReplicaSpec], mesh: Any) -> list[ReplicaSpec]:
    """Inactive copies of the first replica that make the replica count a multiple of the
    mesh's replica axis (5 folds on 2 devices train as 6, the sixth never updated)."""
    if mesh is None:
        return []
    from modjax.train.vectorized import REPLICA_AXIS

    extra = -len(specs) % int(dict(mesh.shape).get(REPLICA_AXIS, 1))
    return [replace(specs[0], label=f"{specs[0].label}_padding{i}", callbacks=[],
                    experiment=None, scope=contextlib.nullcontext) for i in range(extra)]
