"""Mermaid flowcharts of phases: what a TrainPhase, EvalPhase or FitPhase runs.

The picture is the graph's own (FeatureSets as cylinders, ModelNodes as boxes, merges
as hexagons, shapes on edges once built) with what the phase adds: the split each head
node reads, the sampler batching it (TrainPhase), the losses and metrics it computes,
and the nodes it does not run dimmed (``active_nodes``). The title names the phase and
its kind (epochs for a TrainPhase, "no gradients" for an EvalPhase).
"""

from __future__ import annotations

from typing import Any

from modjax.viz.mermaid import MermaidDiagram, _esc, _shape

__all__ = ["phase_to_mermaid"]


def _graph_for(phase: Any, graph: Any) -> Any:
    if graph is not None:
        return graph
    if getattr(phase, "graph", None) is not None:
        return phase.graph
    from modjax.context import ExperimentContext

    mg = ExperimentContext.get_active().model_graph
    if mg is None:
        raise ValueError(f"{type(phase).__name__} {phase.label!r}.visualize(): there is no "
                         "ModelGraph in the active experiment; create one (or pass graph=...)")
    return mg


def _title(phase: Any) -> str:
    kind = type(phase).__name__
    split = getattr(phase, "_split", None)
    extra = []
    if hasattr(phase, "n_epochs"):
        extra.append(f"epochs={phase.n_epochs}")
    if split is not None:
        extra.append(f"split={split!r}")
    if getattr(phase, "kind", "") == "eval":
        extra.append("no gradients")
    return f"{kind} {phase.label!r}" + (f" ({', '.join(extra)})" if extra else "")


def _bindings(phase: Any, graph: Any, active: set[str]) -> dict[str, Any]:
    """``{head label: binding}`` as the phase will resolve them (no data is read)."""
    if phase.input_sources:
        return {b.node: b for b in phase.input_sources}
    if getattr(phase, "_split", None) is None:
        return {}
    return {n.label: phase._default_binding(n) for n in graph.input_nodes.values()
            if n.label in active}


def _sampler_text(sampler: Any) -> str:
    parts = [type(sampler).__name__]
    for attr in ("batch_size", "shuffle", "seed"):
        if getattr(sampler, attr, None) is not None:
            parts.append(f"{attr}={getattr(sampler, attr)}")
    return "<br/>".join(_esc(p) for p in parts)


def _node_lines(graph: Any, ids: dict[str, str], active: set[str]) -> tuple[list[str], list[str]]:
    from modjax.graph.nodes import ModelNode

    lines, frozen = [], []
    for nid, node in graph.nodes.items():
        if isinstance(node, ModelNode):
            text = f"{_esc(node.label)}<br/>{type(node.model).__name__}"
            if node.is_frozen and node.label in active:
                text += " (frozen)"
                frozen.append(ids[nid])
            lines.append(f'    {ids[nid]}["{text}"]')
        else:
            lines.append(f'    {ids[nid]}{{{{"{_esc(node.label)}<br/>{type(node).__name__}"}}}}')
    return lines, frozen


def _data_edges(graph: Any, ids: dict[str, str], bindings: dict[str, Any]) -> list[str]:
    """FeatureSet (per split) -> [sampler] -> head node, and node -> node edges."""
    lines, edges, fs_ids = [], [], {}
    built = graph.is_built
    for nid, node in graph.nodes.items():
        binding = bindings.get(node.label)
        for item, ref in zip(graph._topo.inputs[nid], node.get_upstream_refs()):
            if isinstance(item, str):
                shape = graph.node_shapes(item).output_shape if built else None
                arrow = f' -->|"{_shape(shape)}"| ' if shape is not None else " --> "
                edges.append(f"    {ids[item]}{arrow}{ids[nid]}")
                continue
            split = None if binding is None else binding.split
            key = (ref.featureset_label, split)
            if key not in fs_ids:
                fs_ids[key] = f"fs{len(fs_ids)}"
                text = _esc(f"FeatureSet: {ref.featureset_label}")
                if split is not None:
                    text += f"<br/>split: {_esc(split)}"
                lines.append(f'    {fs_ids[key]}[("{text}")]')
            shape = tuple(ref.feature_shape) if built else None
            label = f'|"{_shape(shape)}"|' if shape is not None else ""
            sampler = None if binding is None else binding.sampler
            if sampler is None:
                edges.append(f"    {fs_ids[key]} -->{label} {ids[nid]}")
                continue
            sid = f"s{ids[nid][1:]}_{len(edges)}"
            lines.append(f'    {sid}[/"{_sampler_text(sampler)}"/]')
            edges.append(f"    {fs_ids[key]} --> {sid}")
            edges.append(f"    {sid} -->{label} {ids[nid]}")
    return lines + edges


def _objective_lines(phase: Any, by_label: dict[str, str]) -> list[str]:
    """Losses (stadiums) and metrics (rounded boxes) hanging off their nodes."""
    lines = []
    for i, al in enumerate(phase.losses):
        inputs = al.inputs if isinstance(al.inputs, list) else list(al.inputs.values())
        name = al.loss.name or getattr(al.loss.fn, "__name__", "loss")
        text = f"loss: {_esc(al.label)}<br/>{_esc(name)}({_esc(', '.join(inputs))})"
        if getattr(al, "weight", 1.0) != 1.0:
            text += f"<br/>weight={al.weight}"
        lines.append(f'    l{i}(["{text}"])')
        if al.node in by_label:
            lines.append(f"    {by_label[al.node]} -.-> l{i}")
    for i, m in enumerate(getattr(phase, "metrics", None) or []):
        lines.append(f'    m{i}("metric: {_esc(m.label)}")')
        if m.node in by_label:
            lines.append(f"    {by_label[m.node]} -.-> m{i}")
    return lines


def phase_to_mermaid(phase: Any, graph: Any = None) -> MermaidDiagram:
    """Mermaid ``flowchart LR`` text of what ``phase`` runs on ``graph``.

    Args:
        phase: a TrainPhase, EvalPhase or FitPhase.
        graph: the ModelGraph (default: the graph the phase last ran on, else the
            active experiment's graph).

    Returns:
        A :class:`~modjax.viz.mermaid.MermaidDiagram` (a ``str`` that renders in
        notebooks).

    Raises:
        ValueError: no graph is given and the active experiment has none.

    Example:
        >>> import numpy as np
        >>> from modjax import (AppliedLoss, FeatureSet, ModelGraph, ModelNode, SimpleSampler,
        ...                     SequentialMLP, TrainPhase)
        >>> fs = FeatureSet.from_dict("pv", {"x": np.ones((8, 3)), "y": np.ones(8)}, "x", "y")
        >>> _ = fs.split_random({"train": 0.5, "test": 0.5}, seed=0)
        >>> g = ModelGraph([ModelNode("pvm", SequentialMLP(n_layers=1),
        ...                           upstream_ref=fs.reference())])
        >>> ph = TrainPhase.from_split("fit", split="train", sampler=SimpleSampler(4),
        ...                            losses=[AppliedLoss("mse", on="pvm")], n_epochs=2)
        >>> text = phase_to_mermaid(ph, g)
        >>> text.splitlines()[1]
        'title: "TrainPhase \\'fit\\' (epochs=2, split=\\'train\\')"'
        >>> [ln.strip() for ln in text.splitlines() if "-.->" in ln]
        ['n0 -.-> l0']
    """
    graph = _graph_for(phase, graph)
    graph._sync_labels()
    active = phase._active_closure(graph)
    ids = {nid: f"n{i}" for i, nid in enumerate(graph.nodes)}
    by_label = {node.label: ids[nid] for nid, node in graph.nodes.items()}
    nodes, frozen = _node_lines(graph, ids, active)
    lines = ["---", f'title: "{_esc(_title(phase))}"', "---", "flowchart LR", *nodes,
             *_data_edges(graph, ids, _bindings(phase, graph, active)),
             *_objective_lines(phase, by_label)]
    inactive = [ids[nid] for nid, n in graph.nodes.items() if n.label not in active]
    if frozen:
        lines += ["    classDef frozen fill:#e6e6e6,stroke:#999,color:#777",
                  f"    class {','.join(frozen)} frozen"]
    if inactive:
        lines += ["    classDef inactive fill:#fafafa,stroke:#ccc,color:#bbb,stroke-dasharray:4",
                  f"    class {','.join(inactive)} inactive"]
    return MermaidDiagram("\n".join(lines))
