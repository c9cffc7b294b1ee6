"""Mermaid flowcharts of model graphs."""

from __future__ import annotations

from typing import Any

__all__ = ["MermaidDiagram", "graph_to_mermaid"]


class MermaidDiagram(str):
    """Mermaid source text that renders itself in notebooks (``_repr_markdown_``)."""

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self}\n```"


def _esc(text: str) -> str:
    return str(text).replace('"', "#quot;")


def _shape(s: Any) -> str:
    return "(" + ", ".join(str(d) for d in s) + (",)" if len(s) == 1 else ")")


def _fs_lines(ref: Any, opts: dict[str, bool]) -> list[str]:
    lines = [f"FeatureSet: {ref.featureset_label}"]
    for flag, attr in (("show_features", "features"), ("show_targets", "targets"),
                       ("show_tags", "tags")):
        if opts[flag] and getattr(ref, attr, None):
            lines.append(f"{attr}: {', '.join(getattr(ref, attr))}")
    if opts["show_splits"]:
        try:
            fs = ref.resolve()
            splits = getattr(fs, "available_splits", None) or getattr(fs, "splits", None)
            if splits:
                lines.append(f"splits: {', '.join(sorted(splits))}")
        except Exception:  # an unresolvable FeatureSet just shows no splits
            pass
    return lines


def _fs_key(ref: Any) -> tuple[Any, ...]:
    """One cylinder per distinct reference (same FeatureSet and same columns)."""
    return (ref.featureset_label, *(tuple(getattr(ref, d, ()) or ()) for d in
                                    ("features", "targets", "tags")))


def graph_to_mermaid(graph: Any, *, show_features: bool = False, show_targets: bool = False,
                     show_tags: bool = False, show_frozen: bool = True,
                     show_splits: bool = False) -> MermaidDiagram:
    """Mermaid ``flowchart LR`` text for a ModelGraph.

    FeatureSets are cylinders, ModelNodes rectangles (with their model class), merge
    nodes hexagons. Once the graph is built every edge is labelled with the per-sample
    shape it carries. Frozen nodes are marked ``(frozen)`` and dimmed.

    Args:
        graph: a ModelGraph.
        show_features / show_targets / show_tags: list those columns on FeatureSet nodes.
        show_frozen: mark frozen nodes.
        show_splits: list the FeatureSet's splits (when it resolves).

    Returns:
        A :class:`MermaidDiagram` (a ``str``).
    """
    from modjax.graph.nodes import ModelNode

    opts = {"show_features": show_features, "show_targets": show_targets,
            "show_tags": show_tags, "show_splits": show_splits}
    lines = ["flowchart LR"]
    ids: dict[str, str] = {}
    fs_ids: dict[Any, str] = {}
    built = graph.is_built
    for i, (nid, node) in enumerate(graph.nodes.items()):
        ids[nid] = f"n{i}"
        for ref in node.get_upstream_refs():
            if hasattr(ref, "featureset_label"):
                key = _fs_key(ref)
                if key not in fs_ids:
                    fs_ids[key] = f"fs{len(fs_ids)}"
                    text = "<br/>".join(_esc(t) for t in _fs_lines(ref, opts))
                    lines.append(f'    {fs_ids[key]}[("{text}")]')
    frozen = []
    for nid, node in graph.nodes.items():
        if isinstance(node, ModelNode):
            text = f"{_esc(node.label)}<br/>{type(node.model).__name__}"
            if show_frozen and node.is_frozen:
                text += " (frozen)"
                frozen.append(ids[nid])
            lines.append(f'    {ids[nid]}["{text}"]')
        else:
            lines.append(f'    {ids[nid]}{{{{"{_esc(node.label)}<br/>{type(node).__name__}"}}}}')
    for nid, node in graph.nodes.items():
        topo_inputs = graph._topo.inputs[nid]
        for item, ref in zip(topo_inputs, node.get_upstream_refs()):
            if isinstance(item, str):
                src = ids[item]
                shape = graph.node_shapes(item).output_shape if built else None
            else:
                key = _fs_key(ref)
                src = fs_ids[key]
                shape = tuple(ref.feature_shape) if built else None
            arrow = f' -->|"{_shape(shape)}"| ' if shape is not None else " --> "
            lines.append(f"    {src}{arrow}{ids[nid]}")
    if frozen:
        lines.append("    classDef frozen fill:#e6e6e6,stroke:#999,color:#777")
        lines.append(f"    class {','.join(frozen)} frozen")
    return MermaidDiagram("\n".join(lines))
