"""Graph layer: models, nodes, ModelGraph, FlowBuilder, label paths."""

from modjax.graph.paths import get_at, has_path, join_path, path_mask, set_at, split_path

__all__ = ["get_at", "has_path", "join_path", "path_mask", "set_at", "split_path"]
