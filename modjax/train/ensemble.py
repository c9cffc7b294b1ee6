"""Ensembles: ``TrainPhase(..., replicas=K)`` trains K seeds as one vmapped program, and
an ``EvalPhase`` on that graph answers for every replica and for the ensemble mean.

Replica ``r`` is exactly the run of the phase with the graph built from key
``seed + r``, the phase seed ``seed + r`` and every sampler's seed shifted by ``r``; so
replica 0 is the run the phase would make without ``replicas``. After the phase the graph
holds replica 0's variables (it stays an ordinary graph) and the stacked variables of all
replicas are kept as the graph's :class:`Ensemble` while those variables are in place.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.train.metrics import check_class_targets
from modjax.train.programs import counting_traces, note_trace, program, spec_of
from modjax.train.results import EvalResults, TrainResults
from modjax.train.vectorized import REPLICA_AXIS, take_replica

__all__ = ["Ensemble", "ensemble_of", "EnsembleTrainResults", "EnsembleEvalResults",
           "execute_ensemble", "evaluate_ensemble"]

_ENSEMBLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Ensemble:
    """The stacked variables of K replicas of one graph definition.

    Attributes:
        definition: the graph definition they belong to.
        variables: ``{"params", "state"}`` with a leading replica axis.
        labels: replica names (``"replica0"``, ...).
    """

    def __init__(self, definition: Any, variables: Any, labels: Sequence[str],
                 anchor: Sequence[Any]) -> None:
        self.definition, self.variables, self.labels = definition, variables, list(labels)
        self._anchor = list(anchor)

    @property
    def n_replicas(self) -> int:
        return len(self.labels)

    def matches(self, graph: Any) -> bool:
        """True while ``graph`` has this definition and still holds replica 0's variables."""
        if not getattr(graph, "is_built", False) or graph.definition != self.definition:
            return False
        leaves = jax.tree.leaves(graph.variables)
        return len(leaves) == len(self._anchor) and all(a is b for a, b in zip(leaves, self._anchor))

    def replica_variables(self, r: int) -> Any:
        """The variables of replica ``r``."""
        return take_replica(self.variables, r)

    def __repr__(self) -> str:
        return f"Ensemble({self.n_replicas} replicas of {self.definition!r})"


def ensemble_of(graph: Any) -> Ensemble | None:
    """The graph's live ensemble (None when it has none or was trained on since).

    Example:
        >>> ensemble_of(object()) is None
        True
    """
    try:
        ens = _ENSEMBLES.get(graph)
    except TypeError:
        return None
    return ens if ens is not None and ens.matches(graph) else None


class EnsembleTrainResults(TrainResults):
    """Results of an ensemble TrainPhase: replica 0's epochs, ``train_loss`` averaged over
    the replicas per epoch, and every replica's own results in :attr:`replicas`."""

    def __init__(self, label: str, replicas: Sequence[TrainResults], *, graph: Any = None,
                 loss_nodes: Any = None) -> None:
        super().__init__(label, graph=graph, loss_nodes=loss_nodes)
        self.replicas = list(replicas)
        first = self.replicas[0]
        self.epochs = first.epochs
        # one pass over each replica's entries (a lookup per epoch would be quadratic)
        per = [{e: v for e, _, v in r.metrics.entries("train_loss")} if "train_loss" in r.metrics
               else {} for r in self.replicas]
        for e in first.epoch_indices:
            vals = [d[e] for d in per if e in d]
            self.metrics.log("train_loss", float(np.mean(vals)), epoch=e)


class EnsembleEvalResults(EvalResults):
    """Evaluation of an ensemble: the usual accessors answer for the ensemble mean
    (outputs averaged over replicas; losses and metrics computed on that mean), and
    :attr:`replicas` holds each replica's own EvalResults."""

    def __init__(self, label: str, *, graph: Any = None, loss_nodes: Any = None) -> None:
        super().__init__(label, graph=graph, loss_nodes=loss_nodes)
        self.replicas: list[EvalResults] = []

    def replica_outputs(self, node: Any, domain: str = "outputs") -> np.ndarray:
        """Every replica's stacked tensors of ``node``: ``(n_replicas, n_samples, ...)``."""
        return np.stack([r.stacked_tensors(node, domain) for r in self.replicas])


def execute_ensemble(phase: Any, graph: Any, *, experiment: Any = None,
                     show_training_progress: bool = False, show_sampler_progress: bool = False,
                     persist_progress: bool = False, val_loss_metric: str = "val_loss",
                     progress_file: Any = None) -> EnsembleTrainResults:
    """Run ``phase`` (a TrainPhase with ``replicas=K``) as one vmapped program.

    Args:
        phase: the TrainPhase.
        graph: the graph (built if needed); afterwards it holds replica 0's variables.
        experiment: the running Experiment (callbacks and observer).
        show_training_progress: one epoch bar for the ensemble (the mean over the
            replicas of ``train_loss`` and of every metric logged).
        show_sampler_progress: a bar over each epoch's batches.
        persist_progress: leave the bars on screen afterwards.
        val_loss_metric: the validation metric shown first.
        progress_file: stream for the bars (default stderr).

    Returns:
        The :class:`EnsembleTrainResults`.
    """
    from modjax.train.replicas import make_spec, run_replicas, vectorizable

    if not graph.is_built:
        graph.build()
    mesh = phase.mesh
    why = None if mesh is not None and REPLICA_AXIS in mesh.axis_names else (
        vectorizable(phase) if mesh is None else
        f"its mesh has axes {mesh.axis_names}, not a {REPLICA_AXIS!r} axis")
    if why is not None:
        raise ValueError(f"TrainPhase {phase.label!r} with replicas={phase.replicas} cannot run "
                         f"vectorized: {why}")
    specs = [make_spec(phase, graph, label=f"replica{r}", variables=graph.init(phase.seed + r),
                       opt_state=None, seed=phase.seed + r, sampler_offset=r,
                       experiment=experiment) for r in range(phase.replicas)]
    from modjax.train.replica_loop import group_progress

    progress = group_progress(phase, phase.replicas, {
        "show_training_progress": show_training_progress,
        "show_sampler_progress": show_sampler_progress, "persist_progress": persist_progress,
        "val_loss_metric": val_loss_metric, "progress_file": progress_file})
    outs = run_replicas(phase, specs, mesh=mesh, progress=progress)
    graph.set_variables(jax.device_get(outs[0].variables) if mesh is not None
                        else outs[0].variables)
    graph.set_opt_state(outs[0].opt_state)
    graph.optimizer.state = outs[0].opt_state
    phase.epochs_run = outs[0].epochs_run
    for orig, copy_ in _originals(phase, outs[0].samplers):
        orig.set_state(copy_.get_state())
    ens = Ensemble(graph.definition, outs[0].stacked_variables,
                   [s.label for s in specs], jax.tree.leaves(graph.variables))
    _ENSEMBLES[graph] = ens
    phase.ensemble = ens
    return EnsembleTrainResults(phase.label, [o.results for o in outs], graph=graph,
                                loss_nodes={al.label: al.node for al in phase.losses})


def _originals(phase: Any, copies: dict[int, Any]) -> list[tuple[Any, Any]]:
    found = [b.sampler for b in phase.input_sources if b.sampler is not None]
    if phase._sampler is not None:
        found.append(phase._sampler)
    return [(s, copies[id(s)]) for s in found if id(s) in copies]


class _MeanGraph:
    """A definition whose forward averages every output over the replica axis."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def __getattr__(self, name: str) -> Any:
        if name == "definition":
            raise AttributeError(name)  # the step must trace this wrapper, not the core
        return getattr(self.core, name)

    def apply(self, variables: Any, inputs: Any, **kw: Any) -> tuple[dict, dict]:
        outs, state = jax.vmap(lambda v: self.core.apply(v, inputs, **kw))(variables)
        return jax.tree.map(lambda a: jnp.mean(a, axis=0), outs), take_replica(state, 0)


def _pass(phase: Any, graph: Any, feeds: Sequence[Any], record: list[str]) -> Any:
    from modjax.train.step import make_eval_step

    sig = ("ensemble_pass", graph.definition, tuple(spec_of(al) for al in phase.losses),
           tuple(f.key for f in feeds), tuple(record), spec_of(phase.active_nodes),
           tuple(spec_of(m) for m in phase.metrics))

    def make() -> Any:
        kw = dict(active_nodes=phase.active_nodes, record=record, metrics=phase.metrics)
        each = make_eval_step(graph, phase.losses, **kw)
        mean = make_eval_step(_MeanGraph(graph.definition), phase.losses, **kw)
        gathers = {f.key: f.store.gather_fn() for f in feeds}
        keys = [f.key for f in feeds]

        def run(stacked, stores, plans):
            note_trace()

            def body(_, xs):
                batch = {k: gathers[k](stores[k], xs[k]) for k in keys}
                return None, (jax.vmap(lambda v: each(v, batch))(stacked), mean(stacked, batch))

            return jax.lax.scan(body, None, plans)[1]

        return jax.jit(run)

    return program(sig, make)


def evaluate_ensemble(phase: Any, graph: Any, ensemble: Ensemble, *,
                      experiment: Any = None) -> EnsembleEvalResults:
    """Evaluate ``phase`` (an EvalPhase) for every replica and the ensemble mean, one pass.

    Args:
        phase: the EvalPhase.
        graph: the graph whose ensemble it is.
        ensemble: the :class:`Ensemble`.
        experiment: the running Experiment.

    Returns:
        :class:`EnsembleEvalResults`.
    """
    from modjax.train.feeds import Feed as _Feed
    from modjax.train.feeds import single_pass_record as _single_pass_record
    from modjax.train.feeds import stack_feeds as _stack_feeds
    from modjax.train.metrics import finalize_all

    owner = f"EvalPhase {phase.label!r}"
    phase._graph = graph
    feeds = [_Feed(b, graph, owner=owner, mesh=None, tags=phase._loss_tags())
             for b in phase._bindings(graph)]
    sizes = {f.view.n_samples for f in feeds}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"{owner}: bindings must cover the same, non-zero number of rows; got "
                         f"{sorted(sizes)}")
    check_class_targets(graph, [*phase.losses, *phase.metrics], feeds, owner=owner)
    n = sizes.pop()
    plans = [IndexPlan.from_flat(np.arange(n), phase.batch_size or n) for _ in feeds]
    stores, dplans = _stack_feeds(feeds, plans)
    with counting_traces(phase):
        per, mean = _pass(phase, graph, feeds, phase._record_nodes(graph))(
            ensemble.variables, stores, dplans)
    loss_nodes = {al.label: al.node for al in phase.losses}
    out = EnsembleEvalResults(phase.label, graph=graph, loss_nodes=loss_nodes)
    ctx = {"experiment": experiment, "phase": phase}
    for cb in phase._sorted_callbacks():
        cb.on_phase_start(results=out, **ctx)
    for res, m in [(out, mean)] + [(EvalResults(f"{phase.label}.{lab}", graph=graph,
                                                loss_nodes=loss_nodes),
                                    jax.tree.map(lambda a, r=r: a[:, r], per))
                                   for r, lab in enumerate(ensemble.labels)]:
        stats = m.pop("metric_stats")
        res.add_epoch(_single_pass_record(m, feeds, plans))
        for al in phase.losses:
            res.metrics.log(al.label, res.aggregated_losses(al.node)[al.label], epoch=0)
        for label, value in (finalize_all(phase.metrics, stats).items() if phase.metrics else ()):
            res.metrics.log(label, value, epoch=0)
        if res is not out:
            out.replicas.append(res)
    for cb in phase._sorted_callbacks():
        cb.on_epoch_end(epoch=0, results=out, **ctx)
        cb.on_phase_end(results=out, **ctx)
    return out
