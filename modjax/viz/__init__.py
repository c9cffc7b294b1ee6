"""modjax.viz: mermaid diagrams, DOT/SVG of flow graphs and text summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.viz.dot import dot, dot_with_profile, svg, svg_with_profile
    from modjax.viz.mermaid import MermaidDiagram, graph_to_mermaid
    from modjax.viz.summary import count_params, graph_summary

_WHERE: dict[str, str] = {
    **dict.fromkeys(("dot", "dot_with_profile", "svg", "svg_with_profile"), "modjax.viz.dot"),
    **dict.fromkeys(("graph_to_mermaid", "MermaidDiagram"), "modjax.viz.mermaid"),
    **dict.fromkeys(("count_params", "graph_summary"), "modjax.viz.summary"),
}

__all__ = [
    "count_params", "dot", "dot_with_profile", "graph_summary", "graph_to_mermaid",
    "MermaidDiagram", "svg", "svg_with_profile",
]

__getattr__, __dir__ = lazy_namespace("modjax.viz", _WHERE)

# modjax.viz.dot is also a submodule: importing it binds the package attribute ``dot`` to
# the module, which would shadow the function, so the DOT/SVG functions are bound here.
from modjax.viz.dot import dot, dot_with_profile, svg, svg_with_profile  # noqa: E402
