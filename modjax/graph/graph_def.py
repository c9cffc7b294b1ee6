"""The definition of a ``ModelGraph``: its structure as a value, and a frozen snapshot to run it.

:func:`model_graph_definition` describes every node in topological order by label, kind,
model fingerprint (see :func:`~modjax.graph.definition.model_fingerprint`), merge
configuration, wiring (upstream labels, FeatureSet columns and shapes) and inferred
shapes, and pairs that description with a snapshot of the graph that later mutations of
the graph cannot reach (the snapshot owns its node table, wiring and shapes).
"""

from __future__ import annotations

import copy
from typing import Any

from modjax.graph.definition import GraphDef, freeze_value, model_fingerprint
from modjax.graph.nodes import ModelNode, NodeReference

__all__ = ["model_graph_definition"]

_VOLATILE = ("node_id", "featureset_id", "upstream_refs", "label")


def _ref_key(ref: Any, item: Any, labels: dict[str, str]) -> Any:
    if isinstance(item, str):  # an upstream node, by label
        return ("node", labels[item])
    if isinstance(ref, NodeReference):
        return ("node", ref.node_label)
    cfg = {k: v for k, v in ref.get_config().items() if k not in _VOLATILE}
    shape = getattr(ref, "feature_shape", None)
    return ("data", freeze_value(cfg), freeze_value(shape))


def _without_ids(value: Any) -> Any:
    # a merge strategy naming an input by reference carries that node's instance id,
    # which another graph of the same structure does not share
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items()
                if k not in ("node_id", "featureset_id")}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _node_key(graph: Any, nid: str, labels: dict[str, str]) -> tuple[Any, ...]:
    node = graph._nodes[nid]
    wiring = tuple(_ref_key(r, i, labels) for r, i in zip(
        node.get_upstream_refs(), graph._topo.inputs[nid]))
    s = graph._shapes.get(nid)
    shapes = None if s is None else freeze_value((s.input_shapes, s.output_shape))
    if isinstance(node, ModelNode):
        what = ("model", model_fingerprint(node.model))
    else:
        cfg = {k: _without_ids(v) for k, v in node.get_config().items() if k not in _VOLATILE}
        what = (type(node).__module__, type(node).__qualname__, freeze_value(cfg))
    return (node.label, what, wiring, shapes)


def frozen_model(model: Any) -> Any:
    """What a snapshot runs for ``model``: a flow graph's frozen snapshot, else the model."""
    definition = getattr(model, "definition", None)
    if not isinstance(definition, GraphDef):
        return model
    return getattr(definition._runner, "_graph", model)


def _frozen_node(node: Any) -> Any:
    # the snapshot owns its nodes: renaming or editing a live node in place (a label, a
    # merge strategy, an override inside a flow model) must not reach a program that was
    # compiled for this definition and is retraced later on behalf of another graph
    c = copy.copy(node)
    if isinstance(c, ModelNode):
        c._model = frozen_model(c._model)
    return c


def _snapshot(graph: Any) -> Any:
    """A shallow copy that owns the containers a mutation replaces or edits, and its nodes."""
    snap = copy.copy(graph)
    snap._nodes = {nid: _frozen_node(n) for nid, n in graph._nodes.items()}
    snap._shapes = dict(graph._shapes)
    snap._labels_at_commit = dict(graph._labels_at_commit)
    snap._freeze = graph._freeze.copy()
    snap._forward_cache = {}
    snap._definition = None
    # a definition is structure only: it must not keep the graph's arrays alive (programs
    # keyed on it outlive many trainings)
    snap._variables = None
    snap._opt_state = None
    snap._is_snapshot = True
    return snap


def model_graph_definition(graph: Any) -> GraphDef:
    """The :class:`~modjax.graph.definition.GraphDef` of a ModelGraph as it is now.

    Args:
        graph: a ModelGraph (shapes are inferred if they are not known yet).

    Returns:
        A definition equal to that of any graph with the same structure.
    """
    graph._ensure_shapes()
    labels = {nid: n.label for nid, n in graph._nodes.items()}
    # by label (unique), not in execution order: listing independent nodes in another
    # order gives another topological order but the same function
    key = tuple(sorted((_node_key(graph, nid, labels) for nid in graph._topo.order),
                       key=lambda k: k[0]))
    return GraphDef("model_graph", key, _snapshot(graph))
