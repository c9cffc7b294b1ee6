"""EvalPhase: a jitted forward pass over a split in fixed-size chunks (no gradients).

The pass runs as the one "epoch" of :func:`modjax.train.loop.run_loop`. Resolved inputs
(feeds, plans, program and the stacked device inputs) are kept between executes while
nothing they were made from changed (:class:`_EvalMemo`), so a repeated evaluation
uploads nothing and re-derives nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.distributed import spans_processes, to_host
from modjax.io.registry import register, serialize
from modjax.train.callbacks import Callback
from modjax.train.feeds import Feed, InputBinding, binding_records, stack_feeds
from modjax.train.hooks import CallbackHook
from modjax.train.loop import LoopRun, OnePass, run_loop
from modjax.train.losses import AppliedLoss
from modjax.train.metrics import AppliedMetric, check_class_targets
from modjax.train.phases import ExperimentPhase
from modjax.train.programs import counting_traces, note_trace, program, spec_of
from modjax.train.results import EpochRecord, EvalResults
from modjax.train.step import make_eval_step

__all__ = ["EvalPhase", "eval_segments"]


def _contiguous(feeds: Sequence[Feed]) -> bool:
    """Whether an evaluation can slice its batches out of resident single-device stores."""
    return all(f.store.mesh is None and f.store.fits for f in feeds)


def eval_segments(fn: Any, phase: Any, feeds: Sequence[Feed], plans: Sequence[IndexPlan],
                   variables: Any, *, show_progress: bool, persist: bool, file: Any,
                   stacked: tuple[dict, dict] | None = None) -> tuple[dict, dict]:
    """Run an evaluation pass: one scan, or (with a progress bar) a few equal scans of
    ``seg`` chunks each, the last padded with masked chunks so one program serves all.
    ``stacked`` is ``stack_feeds(feeds, plans)`` made earlier, if the caller kept it."""
    n = plans[0].n_batches
    if not show_progress or n == 1:
        stores, dplans = stacked or stack_feeds(feeds, plans)
        with counting_traces(phase):
            return fn(variables, stores, dplans)
    from tqdm.auto import tqdm

    seg = -(-n // min(n, 20))
    outs, stats = [], []
    with tqdm(total=n, desc=phase.label, unit="batch", leave=persist, file=file) as bar:
        for start in range(0, n, seg):
            part = [p.batches(start, min(start + seg, n)).pad_batches_to(seg) for p in plans]
            stores, dplans = stack_feeds(feeds, part)
            with counting_traces(phase):
                o, st = fn(variables, stores, dplans)
            jax.block_until_ready(o["loss_table"])  # the bar reports finished chunks
            outs.append(o)
            stats.append(st)
            bar.update(min(seg, n - start))
    cat = lambda *xs: jnp.concatenate(xs)[:n]  # noqa: E731 - drop the padding chunks
    return jax.tree.map(cat, *outs), jax.tree.map(cat, *stats)


def _data_token(feed: Feed) -> tuple[Any, ...]:
    """What a feed's rows come from, compared by identity: the FeatureSet its reference
    resolves to now, that FeatureSet's Arrow table (replaced on every data or transform
    change) and the split's view (replaced when the split is redefined)."""
    b = feed.binding
    if feed.view is b.upstream:  # a view passed as-is
        return (b.upstream, feed.view.source.table)
    fs = feed.ref.resolve()
    return (fs, fs.table, fs.splits.get(b.split) if b.split is not None else None)


class _EvalMemo:
    """An EvalPhase's resolved inputs, reused by the next execute when they would come out
    the same: same graph object with an equal definition, bindings naming the same nodes,
    splits and upstreams, the same losses and metrics configured alike, the same active
    nodes, batch size and mesh, and
    every binding's FeatureSet, table and split view the same objects. The program itself
    is still looked up structurally; this only skips re-deriving the lookup's key."""

    def __init__(self, phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding],
                 feeds: list[Feed], plans: list[IndexPlan], fn: Any,
                 stacked: tuple[dict, dict] | None) -> None:
        self.feeds, self.plans, self.fn, self.stacked = feeds, plans, fn, stacked
        self.bridged = False  # whether the graph has bridged nodes (checked every execute)
        self.equal = self._equal_part(phase, graph, bindings)
        self.same = self._same_part(phase, graph, bindings)
        self.data = [_data_token(f) for f in feeds]

    @staticmethod
    def _equal_part(phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> tuple:
        # the specs too: a loss or metric changed in place (its Loss, weight, inputs) is
        # the same object but must not reuse the program made for what it was
        return (graph.definition, phase.batch_size, phase.active_nodes,
                tuple((b.node, b.split, b.stream) for b in bindings),
                tuple(spec_of(al) for al in phase.losses),
                tuple(spec_of(m) for m in phase.metrics))

    @staticmethod
    def _same_part(phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> list:
        return [graph, phase.mesh, *phase.losses, *phase.metrics,
                *(b.upstream for b in bindings), *(b.sampler for b in bindings)]

    def matches(self, phase: EvalPhase, graph: Any, bindings: Sequence[InputBinding]) -> bool:
        if not _all_same(self.same, self._same_part(phase, graph, bindings)):
            return False
        if self.equal != self._equal_part(phase, graph, bindings):
            return False
        return all(_all_same(t, _data_token(f)) for t, f in zip(self.data, self.feeds))


def _all_same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


@register("EvalPhase")
class EvalPhase(ExperimentPhase):
    """A jitted forward pass over a split in fixed-size chunks (no gradients).

    Args:
        label: phase name.
        input_sources: ``InputBinding.for_evaluation(...)`` per head node.
        losses: optional AppliedLosses to compute.
        active_nodes: nodes to run (plus their upstream).
        batch_size: rows per chunk (default: all rows at once).
        callbacks: phase callbacks (phase and epoch hooks run once).
        metrics: :class:`~modjax.train.metrics.AppliedMetric` s (``accuracy``, ``f1``,
            ``rmse``, ``r2``, ...) computed inside the jitted pass over the whole split;
            their values are in ``results.metrics`` under their labels.
    """

    kind = "eval"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss] | None = None,
                 active_nodes: Sequence[Any] | None = None, batch_size: int | None = None,
                 callbacks: Sequence[Callback] | None = None, mesh: Any = None,
                 metrics: Sequence[AppliedMetric] | None = None) -> None:
        super().__init__(label, input_sources=input_sources, losses=losses,
                         active_nodes=active_nodes, callbacks=callbacks)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"EvalPhase {label!r}: batch_size must be a positive int or None")
        self.metrics = list(metrics or [])
        for m in self.metrics:
            if not isinstance(m, AppliedMetric):
                raise TypeError(f"EvalPhase {label!r}: metrics must be AppliedMetric objects "
                                f"(e.g. AppliedMetric('accuracy', on='head')), got {m!r}")
        self.batch_size = batch_size
        self.mesh = mesh
        self._compiled: dict[Any, Any] = {}
        self.n_traces = 0
        self._graph: Any = None
        self._memo: _EvalMemo | None = None

    @property
    def graph(self) -> Any:
        return self._graph

    def _fn(self, graph: Any, feeds: Sequence[Feed]) -> Any:
        record = self._record_nodes(graph)
        sig = ("eval_pass", graph.definition, tuple(spec_of(al) for al in self.losses),
               tuple(f.key for f in feeds), self.mesh, tuple(record),
               spec_of(self.active_nodes), tuple(spec_of(m) for m in self.metrics),
               tuple(f.store.shard_rows for f in feeds), _contiguous(feeds))
        return program(sig, lambda: self._make_pass(graph, feeds, record))

    def _make_pass(self, graph: Any, feeds: Sequence[Feed], record: list[str]) -> Any:
        from modjax.data.device import slice_plan

        ev = make_eval_step(graph, self.losses, active_nodes=self.active_nodes, record=record,
                            metrics=self.metrics)
        # resident single-device data is read in order: batches are slices, not gathers
        gathers = {f.key: slice_plan if _contiguous(feeds) else f.store.gather_fn()
                   for f in feeds}  # row-sharded stores gather locally
        keys = [f.key for f in feeds]
        labels = [al.label for al in self.losses]

        def run(variables, stores, plans):
            note_trace()

            def body(_, xs):
                m = ev(variables, {k: gathers[k](stores[k], xs[k]) for k in keys})
                # total and per-label losses in one row: the pass's one loss transfer
                row = jnp.stack([m["loss"]] + [m["losses"][lbl] for lbl in labels])
                return None, {"loss_table": row, "records": m["records"],
                              "metric_stats": m["metric_stats"]}

            if jax.tree.leaves(plans)[0].shape[0] == 1:  # one batch: no loop around it
                out = jax.tree.map(lambda a: a[None], body(None, jax.tree.map(
                    lambda a: a[0], plans))[1])
            else:
                out = jax.lax.scan(body, None, plans)[1]
            stats = out.pop("metric_stats")
            return out, stats

        return jax.jit(run)

    def execute(self, graph: Any, *, variables: Any = None, experiment: Any = None,
                show_progress: bool = False, persist_progress: bool = False,
                progress_file: Any = None) -> EvalResults:
        """Evaluate (with ``variables`` if given, else the graph's); nothing is mutated.

        Args:
            graph: the ModelGraph to evaluate.
            variables: variables to use instead of the graph's (an Evaluation callback
                passes the running training variables).
            experiment: the running Experiment, if any.
            show_progress: a tqdm bar over the chunks; the pass then runs as a few
                equal scans (one compiled program) so the bar moves as they finish.
            persist_progress: leave the bar on screen afterwards.
            progress_file: stream for the bar (default stderr).

        Returns:
            The EvalResults; losses and metric values are in ``results.metrics``.
        """
        if not graph.is_built:
            graph.build()
        if variables is None:
            from modjax.train.ensemble import ensemble_of, evaluate_ensemble
            ens = ensemble_of(graph)
            if ens is not None:  # the graph was trained as an ensemble: every replica + mean
                return evaluate_ensemble(self, graph, ens, experiment=experiment)
        self._graph = graph
        results = EvalResults(self.label, graph=graph,
                              loss_nodes={al.label: al.node for al in self.losses})
        body = _EvalPass(self, self._resolved(graph),
                         graph.variables if variables is None else variables,
                         progress=(show_progress, persist_progress, progress_file))
        return run_loop(body, LoopRun(self, experiment, results,
                                      [CallbackHook(self._sorted_callbacks())]))

    def _resolved(self, graph: Any) -> _EvalMemo:
        """The feeds, plans, program and stacked device inputs of an execute on ``graph``,
        reused while nothing they were made from has changed (see :class:`_EvalMemo`)."""
        bindings = self._bindings(graph, check_bridges=False)
        memo = self._memo
        if memo is not None and memo.matches(self, graph, bindings):
            # the same graph object with an equal definition has the same bridged nodes
            # (their fitted state may have changed: the check itself runs again)
            self._check_bridges(graph, memo.bridged)
            return memo
        bridged = self._check_bridges(graph)
        owner = f"EvalPhase {self.label!r}"
        feeds = [Feed(b, graph, owner=owner, mesh=self.mesh, tags=self._loss_tags())
                 for b in bindings]
        sizes = {f.view.n_samples for f in feeds}
        if len(sizes) != 1:
            raise ValueError(f"{owner}: bindings cover different numbers of rows {sorted(sizes)}; "
                             "evaluate them in separate EvalPhases")
        n = sizes.pop()
        if n == 0:
            raise ValueError(f"{owner}: the bound split has no rows")
        check_class_targets(graph, [*self.losses, *self.metrics], feeds, owner=owner)
        bs = self.batch_size or n
        plans = [IndexPlan.contiguous(n, bs) if _contiguous(feeds) else
                 IndexPlan.from_flat(np.arange(n), bs) for _ in feeds]
        stacked = None
        if all(f.store.fits and not f.store.shard_rows for f in feeds):
            stack_feeds(feeds, plans)  # the second call hands back device copies of the plan
            stacked = stack_feeds(feeds, plans)
        self._memo = _EvalMemo(self, graph, bindings, feeds, plans, self._fn(graph, feeds),
                               stacked)
        self._memo.bridged = bridged
        return self._memo

    def _own_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"batch_size": self.batch_size}
        if self.metrics:
            cfg["metrics"] = [serialize(m) for m in self.metrics]
        return cfg

    @classmethod
    def _config_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        from modjax.io.registry import deserialize
        return {"batch_size": config.get("batch_size"),
                "metrics": [deserialize(c) for c in config.get("metrics", [])]}


class _EvalPass(OnePass):
    """An EvalPhase's one pass as the loop's body (one "epoch")."""

    def __init__(self, phase: EvalPhase, memo: _EvalMemo, variables: Any, *,
                 progress: tuple[bool, bool, Any]) -> None:
        self.phase, self.memo, self.variables, self.progress = phase, memo, variables, progress
        self.stats: Any = None

    def run_epoch(self, run: LoopRun, epoch: int) -> EpochRecord:
        memo, phase = self.memo, self.phase
        show, persist, file = self.progress
        out, self.stats = eval_segments(memo.fn, phase, memo.feeds, memo.plans, self.variables,
                                        show_progress=show, persist=persist, file=file,
                                        stacked=memo.stacked)
        if spans_processes(phase.mesh):  # sharded over other processes' devices: gather
            out, self.stats = to_host(out), to_host(self.stats)
        table = np.asarray(out["loss_table"])
        losses = {al.label: table[:, i + 1] for i, al in enumerate(phase.losses)}
        return EpochRecord(0, table[:, 0], losses, out["records"],
                           binding_records(memo.feeds, memo.plans))

    def record(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        results = run.results
        results.add_epoch(rec)
        for al in self.phase.losses:
            results.metrics.log(al.label, results.aggregated_losses(al.node)[al.label], epoch=0)
        if self.phase.metrics:
            from modjax.train.metrics import finalize_all
            for label, value in finalize_all(self.phase.metrics, self.stats).items():
                results.metrics.log(label, value, epoch=0)
