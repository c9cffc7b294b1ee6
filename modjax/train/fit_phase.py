"""FitPhase: closed-form fitting of ``Fittable`` nodes, run as the one "epoch" of
:func:`modjax.train.loop.run_loop`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.graph.models.protocol import Fittable
from modjax.io.registry import register
from modjax.protocols import HoldsModel
from modjax.train.callbacks import Callback
from modjax.train.feeds import Feed, InputBinding, single_pass_record
from modjax.train.hooks import CallbackHook
from modjax.train.loop import LoopRun, OnePass, run_loop
from modjax.train.losses import AppliedLoss
from modjax.train.phases import ExperimentPhase
from modjax.train.results import EpochRecord, FitResults
from modjax.train.step import make_eval_step

__all__ = ["FitPhase"]


@register("FitPhase")
class FitPhase(ExperimentPhase):
    """Closed-form fitting of ``Fittable`` nodes (``model.fit(params, state, x, y)``).

    Upstream nodes run forward (jitted) to produce a fitted node's inputs; targets are
    routed through the graph. Fitted nodes are frozen afterwards unless
    ``freeze_after_fit=False``. Losses, when given, are computed after fitting.
    """

    kind = "fit"

    def __init__(self, label: str, *, input_sources: Sequence[InputBinding],
                 losses: Sequence[AppliedLoss] | None = None,
                 active_nodes: Sequence[Any] | None = None, freeze_after_fit: bool = True,
                 callbacks: Sequence[Callback] | None = None) -> None:
        super().__init__(label, input_sources=input_sources, losses=losses,
                         active_nodes=active_nodes, callbacks=callbacks)
        self.freeze_after_fit = bool(freeze_after_fit)
        self._graph: Any = None

    @property
    def graph(self) -> Any:
        return self._graph

    def _fittable(self, graph: Any) -> list[Any]:
        active = self._active_closure(graph)
        nodes = [n for n in graph.nodes.values()
                 if n.label in active and isinstance(n, HoldsModel)
                 and isinstance(n.model, Fittable)]
        if self.active_nodes is not None:
            nodes = [n for n in nodes if n.label in self.active_nodes]
        if not nodes:
            raise ValueError(f"FitPhase {self.label!r}: no active node has a Fittable model "
                             "(a model with fit(params, state, x, y))")
        return nodes

    def execute(self, graph: Any, *, experiment: Any = None) -> FitResults:
        """Fit the Fittable nodes on the bound data (host or jitted), then compute losses.

        Args:
            graph: the ModelGraph.
            experiment: the running Experiment, if any.

        Returns:
            The FitResults.
        """
        if not graph.is_built:
            graph.build()
        owner = f"FitPhase {self.label!r}"
        self._graph = graph
        feeds = [Feed(b, graph, owner=owner, mesh=None, tags=()) for b in self._bindings(graph)]
        sizes = {f.view.n_samples for f in feeds}
        if len(sizes) != 1:
            raise ValueError(f"{owner}: all bindings must cover the same rows, got sizes {sorted(sizes)}")
        results = FitResults(self.label, graph=graph,
                             loss_nodes={al.label: al.node for al in self.losses})
        hooks = [CallbackHook(self._sorted_callbacks(), epoch_start=False)]
        return run_loop(_FitPass(self, graph, feeds), LoopRun(self, experiment, results, hooks))

    def _fit_nodes(self, graph: Any, inputs: dict, targets: dict) -> dict[str, Any]:
        """Fit every Fittable node in order; the graph's variables with their fitted
        parameters and state (the graph itself is not written)."""
        owner = f"FitPhase {self.label!r}"
        variables = graph.variables
        params, state = dict(variables["params"]), dict(variables["state"])
        for node in self._fittable(graph):
            ups = graph.upstream_of(node.label)
            v = {"params": params, "state": state}
            if ups and ups[0] in graph.node_labels:
                x = jax.jit(lambda v, xs, u=ups[0]: graph.apply(v, xs, active_nodes=(u,))[0][u])(
                    v, inputs)
            else:
                x = inputs[node.label]
            y = graph.route_targets(targets)[node.label]
            if y is None:
                raise ValueError(f"{owner}: no targets reach node {node.label!r} to fit it on")
            # bridged estimators fit on the host (concrete arrays), built-ins jitted
            fit = node.model.fit if getattr(node.model, "fits_on_host", False) else jax.jit(
                node.model.fit)
            params[node.label], state[node.label] = fit(params[node.label], state[node.label], x, y)
        return {"params": params, "state": state}

    def _own_config(self) -> dict[str, Any]:
        return {"freeze_after_fit": self.freeze_after_fit}

    @classmethod
    def _config_kwargs(cls, config: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
        return {"freeze_after_fit": config.get("freeze_after_fit", True)}


class _FitPass(OnePass):
    """A FitPhase's fit as the loop's body (one "epoch"): the fitted variables are
    written to the graph when the epoch is recorded, before the callbacks' epoch end."""

    def __init__(self, phase: FitPhase, graph: Any, feeds: list[Feed]) -> None:
        self.phase, self.graph, self.feeds = phase, graph, feeds
        self.new_vars: Any = None

    def run_epoch(self, run: LoopRun, epoch: int) -> EpochRecord:
        phase, graph, feeds = self.phase, self.graph, self.feeds
        arrays = {f.key: f.store.arrays for f in feeds}
        inputs = {k: a["features"] for k, a in arrays.items()}
        targets = {k: a["targets"] for k, a in arrays.items()}
        self.new_vars = phase._fit_nodes(graph, inputs, targets)
        n = feeds[0].view.n_samples
        plan = IndexPlan.from_flat(np.arange(n), n)
        ev = make_eval_step(graph, phase.losses, active_nodes=phase.active_nodes,
                            record=phase._record_nodes(graph))
        batch = {k: {"features": inputs[k][None], "targets": targets[k][None],
                     "mask": jnp.ones((1, n), bool), "weights": jnp.ones((1, n))}
                 for k in inputs}
        m = jax.jit(lambda v, b: jax.lax.scan(lambda c, x: (c, ev(v, x)), None, b)[1])(
            self.new_vars, batch)
        return single_pass_record(m, feeds, [plan] * len(feeds))

    def record(self, run: LoopRun, epoch: int, rec: EpochRecord) -> None:
        run.results.add_epoch(rec)
        self.graph.set_variables(self.new_vars)
        if self.phase.freeze_after_fit:
            self.graph.freeze([n.label for n in self.phase._fittable(self.graph)])
