"""Graph layer: models, nodes, ModelGraph, FlowBuilder, label paths."""

from modjax.graph.definition import GraphDef, apply, definition_hash
from modjax.graph.model_graph import ModelGraph
from modjax.graph.models import *
from modjax.graph.models import __all__ as _models_all
from modjax.graph.nodes import (
    AddNode,
    ConcatNode,
    GraphNode,
    MeanNode,
    MergeNode,
    MergeStrategy,
    ModelNode,
    NodeReference,
    StackNode,
)
from modjax.paths import get_at, has_path, join_path, path_mask, set_at, split_path
from modjax.graph.sample_data import SampleData

__all__ = ["get_at", "has_path", "join_path", "path_mask", "set_at", "split_path"]
__all__ += ["GraphDef", "apply", "definition_hash"]
__all__ += ["AddNode", "ConcatNode", "GraphNode", "MeanNode", "MergeNode", "MergeStrategy",
            "ModelGraph", "ModelNode", "NodeReference", "SampleData", "StackNode", *_models_all]

# FlowBuilder and the graph tree
from modjax.graph.flow import *  # noqa: E402
from modjax.graph.flow import __all__ as _flow_all  # noqa: E402

__all__ += [*_flow_all]
