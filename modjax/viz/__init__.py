"""modjax.viz: mermaid diagrams and text summaries."""

from modjax.viz.mermaid import MermaidDiagram, graph_to_mermaid
from modjax.viz.summary import count_params, graph_summary

__all__ = ["MermaidDiagram", "count_params", "graph_summary", "graph_to_mermaid"]

# DOT/SVG of flow graphs
from modjax.viz.dot import dot, dot_with_profile, svg, svg_with_profile  # noqa: E402

__all__ += ["dot", "dot_with_profile", "svg", "svg_with_profile"]
