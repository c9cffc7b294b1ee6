"""DAG bookkeeping for ModelGraph: reference resolution, validation, topological order.

Everything here is a pure function of (nodes, upstream references), so a mutation can
validate its result on the side and commit only when it is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modjax.errors import GraphStructureError, closest_names
from modjax.graph.nodes import GraphNode, MergeNode, NodeReference, ref_label

__all__ = ["Topology", "analyse"]


@dataclass(frozen=True)
class Topology:
    """Resolved wiring of a graph.

    Attributes:
        order: node ids in topological order (ties keep the given node order).
        inputs: per node id, one entry per upstream reference: a node id, or the
            FeatureSet reference itself.
        downstream: per node id, the ids of the nodes that consume it (in order).
    """

    order: tuple[str, ...]
    inputs: Mapping[str, tuple[Any, ...]]
    downstream: Mapping[str, tuple[str, ...]]

    def is_node_input(self, item: Any) -> bool:
        return isinstance(item, str)


def _resolve(ref: NodeReference, owner: GraphNode, by_id: Mapping[str, GraphNode],
             by_label: Mapping[str, str], graph_label: str) -> str:
    if ref.node_id is not None and ref.node_id in by_id:
        return ref.node_id
    if ref.node_label in by_label:
        return by_label[ref.node_label]
    raise GraphStructureError(
        f"node {owner.label!r} has upstream {ref.node_label!r}, which is not a node of graph "
        f"{graph_label!r}; its nodes like it: {closest_names(ref.node_label, by_label)}")


def analyse(nodes: list[GraphNode], refs: Mapping[str, list[Any]], *,
            graph_label: str) -> Topology:
    """Validate a wiring and return its :class:`Topology`.

    Args:
        nodes: the graph's nodes, in their preferred order.
        refs: upstream references per node id (lets a mutation try new wiring without
            touching the nodes).
        graph_label: used in error messages.

    Raises:
        GraphStructureError: duplicate ids or labels, a node with too many or no inputs,
            an upstream that is not in the graph, a merge strategy naming a node that
            is not one of its inputs, or a cycle (the message lists the cycle).
    """
    by_id, by_label = _index_nodes(nodes, graph_label)
    inputs: dict[str, tuple[Any, ...]] = {}
    downstream: dict[str, list[str]] = {nid: [] for nid in by_id}
    for n in nodes:
        node_refs = refs[n.node_id]
        _check_ref_count(n, node_refs)
        items = []
        for r in node_refs:
            if isinstance(r, NodeReference):
                uid = _resolve(r, n, by_id, by_label, graph_label)
                if uid == n.node_id:
                    raise GraphStructureError(f"node {n.label!r} lists itself as its upstream")
                items.append(uid)
                if n.node_id not in downstream[uid]:
                    downstream[uid].append(n.node_id)
            else:
                items.append(r)
        inputs[n.node_id] = tuple(items)
        if isinstance(n, MergeNode):
            _check_merge_strategies(n, node_refs)
    order = _topological_order(nodes, inputs, downstream)
    if len(order) != len(nodes):
        cycle = _find_cycle({nid for nid in by_id if nid not in order}, inputs)
        names = " -> ".join(by_id[c].label for c in cycle)
        raise GraphStructureError(f"graph {graph_label!r} has a cycle: {names}")
    return Topology(tuple(order), inputs, {k: tuple(v) for k, v in downstream.items()})


def _index_nodes(nodes: list[GraphNode], graph_label: str
                 ) -> tuple[dict[str, GraphNode], dict[str, str]]:
    """``({node_id: node}, {label: node_id})``, refusing non-nodes and duplicate ids/labels."""
    by_id: dict[str, GraphNode] = {}
    by_label: dict[str, str] = {}
    for n in nodes:
        if not isinstance(n, GraphNode):
            raise GraphStructureError(
                f"graph {graph_label!r}: {n!r} is not a GraphNode (ModelNode, ConcatNode, ...)")
        if n.node_id in by_id:
            raise GraphStructureError(
                f"graph {graph_label!r}: node {n.label!r} (id {n.node_id[:8]}) appears twice")
        if n.label in by_label:
            raise GraphStructureError(
                f"graph {graph_label!r}: two nodes are labelled {n.label!r}; labels must be "
                "unique because they key the variables")
        by_id[n.node_id] = n
        by_label[n.label] = n.node_id
    return by_id, by_label


def _check_ref_count(n: GraphNode, node_refs: list[Any]) -> None:
    if not node_refs:
        raise GraphStructureError(f"node {n.label!r} has no upstream reference")
    if n.max_upstream_refs is not None and len(node_refs) > n.max_upstream_refs:
        raise GraphStructureError(
            f"node {n.label!r} is a {type(n).__name__} and accepts {n.max_upstream_refs} "
            f"upstream input(s), but would receive {len(node_refs)}: "
            f"{[ref_label(r) for r in node_refs]}; merge them with a ConcatNode first")


def _check_merge_strategies(n: MergeNode, node_refs: list[Any]) -> None:
    # checked against the wiring being tried, which the node itself does not hold yet
    saved = n._upstream_refs
    n._upstream_refs = list(node_refs)
    try:
        n._check_strategies()
    finally:
        n._upstream_refs = saved


def _topological_order(nodes: list[GraphNode], inputs: Mapping[str, tuple[Any, ...]],
                       downstream: Mapping[str, list[str]]) -> list[str]:
    """Kahn's algorithm; ties broken by the given node order for a stable layout."""
    position = {n.node_id: i for i, n in enumerate(nodes)}
    indeg = {nid: len({u for u in inputs[nid] if isinstance(u, str)}) for nid in position}
    ready = sorted((nid for nid, d in indeg.items() if d == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for d in downstream[nid]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
                ready.sort(key=position.__getitem__)
    return order


def _find_cycle(remaining: set[str], inputs: Mapping[str, tuple[Any, ...]]) -> list[str]:
    """One cycle among ``remaining`` (every one of them has an upstream in the set)."""
    start = sorted(remaining)[0]
    seen: dict[str, int] = {}
    path: list[str] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(u for u in inputs[node] if isinstance(u, str) and u in remaining)
    cyc = path[seen[node]:]
    cyc.reverse()  # upstream -> downstream reading order
    return [*cyc, cyc[0]]
