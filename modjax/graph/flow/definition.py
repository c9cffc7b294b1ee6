"""The definition of a flow ``Graph`` and the runner that gives it the graph-level apply.

A flow graph's definition describes its nodes in order (kind, configuration, model
fingerprints, wiring, references, tags, training overrides), its tied modules and its
input shapes. Run through :func:`~modjax.graph.definition.apply` (or a training step),
a flow graph is a one-node graph: its inputs are the flow's input array (or a dict with
one entry, or a batch dict with ``"features"``), its output is named by the graph's label
(``"output"`` when it has none) and captured tags come back under their paths, so
``make_train_step``/``make_eval_step`` take a flow graph as they take a ModelGraph.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from modjax.graph.definition import GraphDef, freeze_value, model_fingerprint

__all__ = ["flow_definition", "OUTPUT_LABEL"]

#: the output's name when a flow graph has no label
OUTPUT_LABEL = "output"


class _OneNode:
    """What a training step needs to know of the flow graph's single logical node."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.optimizer = None


def _node_key(node: Any) -> tuple[Any, ...]:
    models = tuple((name, model_fingerprint(m)) for name, m in node.models().items())
    try:
        cfg = node.get_config()
        cfg.pop("models", None)
        rest: Any = json.dumps(cfg, sort_keys=True)
    except Exception:  # a model without a JSON config: describe the node's own fields
        rest = freeze_value({k: v for k, v in vars(node).items()
                             if not any(v is m for m in node.models().values())})
    return (type(node).__module__, type(node).__qualname__, rest, models, node.train_override)


def _frozen_node(node: Any) -> Any:
    # the snapshot owns its nodes and runs child graphs from their own snapshots, so a
    # later set_training_at on the live graph or a child cannot reach a program compiled
    # for this definition (retraced later on behalf of another graph of this structure)
    from modjax.graph.graph_def import frozen_model

    c = copy.copy(node)
    for k, v in vars(c).items():
        if type(v) in (list, tuple):
            setattr(c, k, type(v)(frozen_model(m) for m in v))
        else:
            setattr(c, k, frozen_model(v))
    return c


def _unwrap(inputs: Any, n_inputs: int) -> Any:
    if isinstance(inputs, Mapping) and "features" in inputs:
        return inputs["features"]
    if isinstance(inputs, Mapping):
        values = list(inputs.values())
        if n_inputs == 1 and len(values) == 1:
            return _unwrap(values[0], 1)
        return tuple(_unwrap(v, 1) for v in values)
    return inputs


class _FlowRunner:
    """A flow graph seen as a one-node graph (the runner of its definition)."""

    def __init__(self, graph: Any) -> None:
        self._graph = graph
        self.label = graph.label or OUTPUT_LABEL
        self.nodes = {self.label: _OneNode(self.label)}
        self.node_labels = [self.label]
        self.optimizer = None

    def upstream_of(self, label: str) -> list[str]:
        return []

    def apply(self, variables: Mapping[str, Any], inputs: Any, *, key: Any = None,
              train: bool = False, active_nodes: Iterable[Any] | None = None,
              capture: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        g = self._graph
        x = _unwrap(inputs, g._n_inputs)
        y, state, captured = g._apply_impl(variables["params"], variables["state"], x,
                                           key=key, train=train, capture=tuple(capture),
                                           check=True)
        return {self.label: y, **captured}, state

    def route_targets(self, targets_by_head: Mapping[str, Any], *,
                      active_nodes: Iterable[Any] | None = None) -> dict[str, Any]:
        values = list(targets_by_head.values())
        if not values:
            return {}
        t = values[0]
        if isinstance(t, Mapping):
            t = t.get("targets")
        return {self.label: t}


def flow_definition(graph: Any) -> GraphDef:
    """The :class:`~modjax.graph.definition.GraphDef` of a flow graph as it is now.

    Args:
        graph: a built or unbuilt flow ``Graph``.

    Returns:
        A definition equal to that of any flow of the same structure.
    """
    specs = None if graph._in_specs is None else tuple(
        (tuple(s.shape), str(s.dtype)) for s in graph._in_specs)
    entries = tuple((e.id, _node_key(e.node), tuple(e.inputs), tuple(e.refs), tuple(e.tags))
                    for e in graph._entries)
    key = (graph.label, entries, graph._output, tuple(sorted(graph._tags.items())),
           tuple(sorted(graph._internal)), tuple(graph._input_names), specs,
           tuple(sorted(graph._tied.items())))
    snap = copy.copy(graph)
    snap._entries = [dataclasses.replace(e, node=_frozen_node(e.node)) for e in graph._entries]
    snap._jit_cache = {}
    snap._variables = None  # structure only: no arrays kept alive by cached programs
    return GraphDef("flow", key, _FlowRunner(snap))
