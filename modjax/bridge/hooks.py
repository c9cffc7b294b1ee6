"""What the phases ask of bridged nodes: checks before running, and partial_fit steps.

Nothing here imports torch or scikit-learn: the checks look at the models through
:class:`~modjax.protocols.GradientBarrierModel` (``gradient_barrier``,
``training_mode``) and at the concrete fit ids in the variables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp

from modjax.protocols import BridgedModel, GradientBarrierModel, HasOptimizer, HoldsModel, NodeGraph

__all__ = ["has_bridges", "check_phase", "partial_fit_hook"]


def _model_nodes(graph: Any) -> dict[str, Any]:
    if not isinstance(graph, NodeGraph) or not isinstance(graph.nodes, dict):
        return {}  # a flow Graph has no ModelNodes
    return {n.label: n for n in graph.nodes.values()
            if isinstance(n, HoldsModel) and n.model is not None}


def _barriers(graph: Any) -> dict[str, Any]:
    return {lab: n for lab, n in _model_nodes(graph).items()
            if isinstance(n.model, GradientBarrierModel) and n.model.gradient_barrier}


def has_bridges(graph: Any) -> bool:
    """Whether any node of ``graph`` has a bridged model.

    Args:
        graph: a ModelGraph (a flow Graph has no bridged nodes of its own).

    Returns:
        True when a node's model wraps torch or scikit-learn.
    """
    return any(isinstance(n.model, BridgedModel) and n.model.bridged
               for n in _model_nodes(graph).values())


def _ancestors(graph: Any, label: str) -> set[str]:
    labels = set(graph.node_labels)
    seen, stack = set(), [label]
    while stack:
        cur = stack.pop()
        for up in graph.upstream_of(cur):
            if up in labels and up not in seen:
                seen.add(up)
                stack.append(up)
    return seen


def _fitted(node: Any, graph: Any) -> bool:
    state = graph.variables["state"].get(node.label, {})
    return "fit_id" in state and bool(jnp.any(state["fit_id"]))


def _trainable(graph: Any, label: str) -> bool:
    import jax

    params = graph.variables["params"].get(label, {})
    frozen = {p.split(".")[0] for p in (graph.frozen_paths or ()) if "." not in p}
    return bool(jax.tree.leaves(params)) and label not in frozen


def _closure(graph: Any, nodes: Iterable[str]) -> set[str]:
    need: set[str] = set()
    for n in nodes:
        if n in graph.node_labels:
            need |= {n} | _ancestors(graph, n)
    return need


def _needed(phase: Any, graph: Any) -> tuple[set[str], set[str]]:
    """(nodes whose outputs the phase computes, nodes its losses depend on)."""
    active = phase._active_closure(graph)
    losses = [al.node for al in phase.losses if al.node in active]
    tails = [n.label for n in graph.tail_nodes.values() if n.label in active]
    return _closure(graph, [*losses, *tails]), _closure(graph, losses)


def check_phase(phase: Any, graph: Any) -> None:
    """Refuse a phase that would run an unfitted scikit-learn node, or need a gradient
    through one.

    * Train and eval phases: every scikit-learn node their losses/outputs depend on
      must be fitted, except ``partial_fit`` nodes in a TrainPhase (they fit per batch).
    * Graph-wise TrainPhase: no trainable node may sit upstream of a scikit-learn node
      that a loss depends on (its gradient would have to pass through the estimator).

    Raises:
        ValueError: naming the node and what to do instead.
    """
    kind = phase.kind
    barriers = _barriers(graph)
    if kind not in ("train", "eval") or not barriers:
        return
    owner = f"{type(phase).__name__} {phase.label!r}"
    run, loss_deps = _needed(phase, graph)
    for label, node in barriers.items():
        if label not in run:
            continue
        partial = node.model.training_mode == "partial_fit"
        if not _fitted(node, graph) and not (kind == "train" and partial):
            raise ValueError(
                f"{owner}: scikit-learn node {label!r} is not fitted; fit it first with a "
                "FitPhase, leave it out with active_nodes=..., or use "
                "training_mode='partial_fit' and train it in a TrainPhase")
        if kind == "train" and label in loss_deps and isinstance(graph, HasOptimizer) \
                and graph.optimizer is not None:
            trainable = sorted(a for a in _ancestors(graph, label) if _trainable(graph, a))
            if trainable:
                raise ValueError(
                    f"{owner}: the loss needs a gradient through scikit-learn node {label!r} "
                    f"to train {trainable}, but gradients stop at scikit-learn nodes; fit it "
                    "first and freeze its upstream nodes, or train stage-wise (an optimizer per "
                    "node, no global optimizer)")


def _node_input(graph: Any, label: str, head_inputs: dict, outs: dict) -> Any:
    ups = [u for u in graph.upstream_of(label) if u in graph.node_labels]
    return outs[ups[0]] if ups else head_inputs[label]


def partial_fit_hook(graph: Any, active: Iterable[str] | None) -> Callable[..., dict] | None:
    """A function ``(state, outs, tgts, batch, roles) -> state`` running one ordered
    ``partial_fit`` per batch for the graph's partial_fit nodes, or None if it has none.

    The first sampler role's batch is used; padded rows (mask False) are dropped on the
    host.
    """
    active_set = None if active is None else set(active)
    nodes = [n for lab, n in _barriers(graph).items()
             if n.model.training_mode == "partial_fit"
             and (active_set is None or lab in active_set)]
    if not nodes:
        return None

    def update(state: dict, outs: dict, tgts: dict, batch: dict, roles: list) -> dict:
        role = roles[0]
        heads = {h: batch[h][role] for h in batch}
        masks = [b["mask"] for b in heads.values() if b.get("mask") is not None]
        mask = masks[0] if masks else None
        for m in masks[1:]:
            mask = mask & m
        new = dict(state)
        for node in nodes:
            y = tgts[role].get(node.label)
            if y is None:
                raise ValueError(f"partial_fit node {node.label!r}: no targets reach it")
            x = _node_input(graph, node.label, {h: b["features"] for h, b in heads.items()},
                            outs[role])
            m = jnp.ones((x.shape[0],), bool) if mask is None else mask
            new[node.label] = node.model.partial_fit_step(state[node.label], x, y, m)
        return new

    return update
