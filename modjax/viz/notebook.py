"""What the notebook views of the main objects show (see ``modjax.notebook``), and
DOT/SVG export of a ModelGraph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["model_graph_dot", "model_graph_svg", "featureset_view",
           "results_view", "observer_view"]


# --------------------------------------------------------------------------- ModelGraph
def _dq(text: Any) -> str:
    return '"' + str(text).replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(s: Any) -> str:
    return "?" if s is None else "(" + ", ".join(str(d) for d in s) + (
        ",)" if len(s) == 1 else ")")


def model_graph_dot(graph: Any) -> str:
    """Graphviz DOT text of a ModelGraph: FeatureSets as ellipses, nodes as boxes with
    their model and output shape, edges labelled with shapes once built.

    Example:
        >>> from modjax import FeatureSet
        >>> from modjax import ModelGraph
        >>> from modjax import SequentialMLP
        >>> from modjax import ModelNode
        >>> import numpy as np
        >>> fs = FeatureSet.from_dict("dd", {"x": np.ones((4, 3)), "y": np.ones(4)}, "x", "y")
        >>> g = ModelGraph([ModelNode("dotm", SequentialMLP(n_layers=1),
        ...                           upstream_ref=fs.reference())]).build(key=0)
        >>> print(model_graph_dot(g).splitlines()[3])
          "fs:dd" [shape=ellipse, label="dd"];
    """
    from modjax.graph.nodes import ModelNode

    built = graph.is_built
    lines = [f"digraph {_dq(graph.label)} {{", "  rankdir=LR;",
             "  node [shape=box, fontname=Helvetica];"]
    seen_fs: set[str] = set()
    edges = []
    for nid, node in graph.nodes.items():
        shapes = graph.node_shapes(nid) if built else None
        model = type(node.model).__name__ if isinstance(node, ModelNode) else type(node).__name__
        frozen = isinstance(node, ModelNode) and node.is_frozen
        out = _shape(shapes.output_shape) if shapes else "?"
        style = ", style=filled, fillcolor=\"#e6e6e6\"" if frozen else ""
        text = "\n".join((node.label, model, out))
        lines_node = f"  {_dq(node.label)} [label={_dq(text)}{style}];"
        ins = shapes.input_shapes if shapes else [None] * len(node.get_upstream_refs())
        for ref, s in zip(node.get_upstream_refs(), ins):
            if hasattr(ref, "featureset_label"):
                src = f"fs:{ref.featureset_label}"
                if src not in seen_fs:
                    seen_fs.add(src)
                    lines.append(f"  {_dq(src)} [shape=ellipse, label={_dq(ref.featureset_label)}];")
            else:
                src = getattr(ref, "node_label", None) or getattr(ref, "label", str(ref))
            edges.append(f"  {_dq(src)} -> {_dq(node.label)}" +
                         (f" [label={_dq(_shape(s))}];" if s is not None else ";"))
        lines.append(lines_node)
    return "\n".join(lines + edges + ["}"])


def model_graph_svg(graph: Any, path: str | Path | None = None) -> bytes:
    """SVG of :func:`model_graph_dot` through Graphviz ``dot`` (also written to ``path``).

    Raises:
        FileNotFoundError: the ``dot`` binary is not installed (says how to get it).
    """
    from modjax.viz.dot import _to_svg

    return _to_svg(model_graph_dot(graph), path)


# --------------------------------------------------------------------------- tables
def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def featureset_view(fs: Any) -> tuple[str, str, str | None]:
    """Title, key table (domain, key, shape, dtype, reps, scalers) and splits of a
    FeatureSet, plus its mermaid picture."""
    rows = [("domain", "key", "shape", "dtype", "reps", "scalers")]
    for dom in ("features", "targets", "tags"):
        for k in fs.keys_of(dom):
            cols = [c for c in fs.columns if c.startswith(f"{dom}.{k}.")]
            reps = ", ".join(c.rsplit(".", 1)[1] for c in cols)
            dtype = str(fs.get_column(cols[0]).dtype) if cols else "?"
            scalers = ", ".join(r.scaler.name for r in fs.scaler_records
                                if r.domain == dom and k in r.keys)
            rows.append((dom, k, _shape(fs.get_shape(dom, k)), dtype, reps, scalers or "-"))
    text = _table(rows)
    splits = {n: fs.get_split(n).n_samples for n in fs.available_splits}
    if splits:
        text += "\nsplits: " + ", ".join(f"{n} ({c})" for n, c in splits.items())
    try:
        picture = str(fs.visualize())
    except Exception:  # a picture is a bonus; the table is the content
        picture = None
    return f"FeatureSet {fs.label!r}: {fs.n_samples} samples", text, picture


def _metric_rows(metrics: Any) -> list[tuple[str, ...]]:
    rows = [("metric", "first", "last", "min", "values")]
    for name in metrics.names:
        s = metrics.series(name)
        rows.append((name, f"{s[0]:.4g}", f"{s[-1]:.4g}", f"{min(s):.4g}", str(len(s))))
    return rows


def results_view(res: Any) -> tuple[str, str, str | None]:
    """Title and metric table of phase results (or of every phase of group results)."""
    if hasattr(res, "flatten") and not hasattr(res, "metrics"):
        parts = []
        for label, r in res.flatten().items():
            rows = _metric_rows(r.metrics)
            parts.append(f"[{label}] {type(r).__name__}, {r.n_epochs} epoch(s)\n"
                         + (_table(rows) if len(rows) > 1 else "(no metrics)"))
        return f"{type(res).__name__} {res.label!r}", "\n\n".join(parts) or "(empty)", None
    rows = _metric_rows(res.metrics)
    text = _table(rows) if len(rows) > 1 else "(no metrics)"
    extra = []
    if getattr(res, "stopped_early", False):
        extra.append("stopped early")
    if getattr(res, "best_epoch", None) is not None:
        extra.append(f"best epoch {res.best_epoch}")
    title = f"{type(res).__name__} {res.label!r}: {res.n_epochs} epoch(s)"
    return title + (f" ({', '.join(extra)})" if extra else ""), text, None


def observer_view(obs: Any) -> tuple[str, str, str | None]:
    """Title and table of an observer's history (tag, epochs, first, last, best, slope)."""
    rows = [("tag", "epochs", "first", "last", "min", "slope")]
    for tag in obs.history_tags():
        t = obs.trend(tag)
        v = t.values()
        if len(v) == 0:
            continue
        slope = t.slope() if len(v) > 1 else 0.0
        rows.append((tag, str(len(v)), f"{v[0]:.4g}", f"{v[-1]:.4g}", f"{min(v):.4g}",
                     f"{slope:+.3g}"))
    text = _table(rows) if len(rows) > 1 else "(no history yet)"
    children = list(getattr(obs, "children", {}) or {})
    if children:
        text += "\nchildren: " + ", ".join(children)
    return "Observer", text, None
