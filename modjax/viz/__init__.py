"""modjax.viz: mermaid diagrams and text summaries."""

from modjax.viz.mermaid import MermaidDiagram, graph_to_mermaid
from modjax.viz.summary import count_params, graph_summary

__all__ = ["MermaidDiagram", "count_params", "graph_summary", "graph_to_mermaid"]
