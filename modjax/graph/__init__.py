"""modjax.graph: graph definitions (GraphDef, apply), the node base classes and SampleData.

ModelGraph, ModelNode, the merge nodes and the built-in models are at the top level; the
model protocol, base classes and adapters in :mod:`modjax.graph.models`; flow graphs in
:mod:`modjax.flow`; label paths in :mod:`modjax.paths`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.graph.definition import GraphDef, apply, definition_hash
    from modjax.graph.nodes import GraphNode, MergeNode, MergeStrategy, NodeReference
    from modjax.graph.sample_data import SampleData

_WHERE: dict[str, str] = {
    **dict.fromkeys(("apply", "definition_hash", "GraphDef"), "modjax.graph.definition"),
    **dict.fromkeys((
        "GraphNode", "MergeNode", "MergeStrategy", "NodeReference",
    ), "modjax.graph.nodes"),
    "SampleData": "modjax.graph.sample_data",
}

__all__ = [
    "apply", "definition_hash", "GraphDef", "GraphNode", "MergeNode", "MergeStrategy",
    "NodeReference", "SampleData",
]

__getattr__, __dir__ = lazy_namespace("modjax.graph", _WHERE, ("models",))
