"""Editing a ``ModelGraph``'s wiring: add, remove, replace and insert nodes.

A mixin of :class:`~modjax.graph.model_graph.ModelGraph`, which supplies the node table
(``_nodes``), label sync, lookup (``_get``) and ``_try_wiring``: every verb computes the
new upstream references of all nodes and commits them only if the whole wiring is valid,
so a failed edit changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modjax.errors import GraphStructureError
from modjax.graph.nodes import GraphNode, NodeReference

if TYPE_CHECKING:
    from modjax.graph.model_graph import ModelGraph

__all__ = ["ModelGraphEditing"]


class ModelGraphEditing:
    """The wiring verbs of ModelGraph (each returns the graph)."""

    def _check_new(self, new_node: GraphNode) -> None:
        if not isinstance(new_node, GraphNode):
            raise TypeError(f"graph {self.label!r}: expected a GraphNode, got "
                            f"{type(new_node).__name__}")
        if new_node.node_id in self._nodes:
            raise GraphStructureError(
                f"node {new_node.label!r} (id {new_node.node_id[:8]}) is already in graph "
                f"{self.label!r}")

    def _refs(self) -> dict[str, list[Any]]:
        return {nid: n.get_upstream_refs() for nid, n in self._nodes.items()}

    @staticmethod
    def _points_to(ref: Any, node: GraphNode) -> bool:
        return isinstance(ref, NodeReference) and (
            ref.node_id == node.node_id or (ref.node_id is None and ref.node_label == node.label))

    def add_node(self, node: GraphNode) -> ModelGraph:
        """Add a node already wired (through its upstream refs) to this graph's nodes.

        Returns:
            self

        Raises:
            GraphStructureError: the node is already in the graph, its label is taken,
                or its upstream is not in the graph.
        """
        self._sync_labels()
        self._check_new(node)
        refs = self._refs()
        refs[node.node_id] = node.get_upstream_refs()
        self._try_wiring([*self._nodes.values(), node], refs)
        return self

    def remove_node(self, node: str | GraphNode) -> ModelGraph:
        """Remove a node; its consumers take over its inputs.

        ``A -> B -> C`` minus ``B`` is ``A -> C``; ``[A, B] -> C -> D`` minus ``C`` is
        ``[A, B] -> D``, which is an error if ``D`` accepts one input only.

        Returns:
            self
        """
        self._sync_labels()
        old = self._get(node)
        refs = self._refs()
        inherited = refs.pop(old.node_id)
        for nid, rs in refs.items():
            if any(self._points_to(r, old) for r in rs):
                new_rs: list[Any] = []
                for r in rs:
                    for x in (inherited if self._points_to(r, old) else [r]):
                        if x not in new_rs:
                            new_rs.append(x)
                refs[nid] = new_rs
        nodes = [n for n in self._nodes.values() if n.node_id != old.node_id]
        if not nodes:
            raise GraphStructureError(
                f"cannot remove {old.label!r}: it is the last node of graph {self.label!r}")
        try:
            self._try_wiring(nodes, refs)
        except GraphStructureError as e:
            raise GraphStructureError(f"cannot remove node {old.label!r}: {e}") from None
        return self

    def replace_node(self, old_node: str | GraphNode, new_node: GraphNode) -> ModelGraph:
        """Put ``new_node`` in ``old_node``'s place with the same inputs and consumers.

        The new node's upstream refs are set to the old node's (on success only).

        Returns:
            self
        """
        self._sync_labels()
        old = self._get(old_node, what="old_node")
        self._check_new(new_node)
        refs = self._refs()
        inherited = refs.pop(old.node_id)
        new_ref = NodeReference(new_node.label, new_node.node_id)
        for nid, rs in refs.items():
            refs[nid] = [new_ref if self._points_to(r, old) else r for r in rs]
        refs[new_node.node_id] = inherited
        nodes = [new_node if n.node_id == old.node_id else n for n in self._nodes.values()]
        try:
            self._try_wiring(nodes, refs)
        except GraphStructureError as e:
            raise GraphStructureError(
                f"cannot replace {old.label!r} with {new_node.label!r}: {e}") from None
        return self

    def insert_node_between(self, new_node: GraphNode, *, upstream: str | GraphNode,
                            downstream: str | GraphNode) -> ModelGraph:
        """Turn the edge ``upstream -> downstream`` into ``upstream -> new -> downstream``.

        Raises:
            GraphStructureError: the two nodes are not connected.
        """
        self._sync_labels()
        up, down = self._get(upstream, what="upstream"), self._get(downstream, what="downstream")
        self._check_new(new_node)
        refs = self._refs()
        if not any(self._points_to(r, up) for r in refs[down.node_id]):
            raise GraphStructureError(
                f"cannot insert {new_node.label!r} between {up.label!r} and {down.label!r}: "
                f"they are not connected ({down.label!r} takes input from "
                f"{self.upstream_of(down)})")
        new_ref = NodeReference(new_node.label, new_node.node_id)
        refs[down.node_id] = [new_ref if self._points_to(r, up) else r
                              for r in refs[down.node_id]]
        refs[new_node.node_id] = [NodeReference(up.label, up.node_id)]
        self._try_wiring(self._inserted_before(new_node, down), refs)
        return self

    def insert_node_before(self, new_node: GraphNode, *,
                           downstream: str | GraphNode) -> ModelGraph:
        """Insert before ``downstream``: the new node takes all its inputs and feeds it."""
        self._sync_labels()
        down = self._get(downstream, what="downstream")
        self._check_new(new_node)
        refs = self._refs()
        refs[new_node.node_id] = refs[down.node_id]
        refs[down.node_id] = [NodeReference(new_node.label, new_node.node_id)]
        try:
            self._try_wiring(self._inserted_before(new_node, down), refs)
        except GraphStructureError as e:
            raise GraphStructureError(
                f"cannot insert {new_node.label!r} before {down.label!r}: {e}") from None
        return self

    def insert_node_after(self, new_node: GraphNode, *, upstream: str | GraphNode) -> ModelGraph:
        """Add ``new_node`` as an extra consumer of ``upstream`` (a new branch)."""
        self._sync_labels()
        up = self._get(upstream, what="upstream")
        self._check_new(new_node)
        refs = self._refs()
        refs[new_node.node_id] = [NodeReference(up.label, up.node_id)]
        self._try_wiring([*self._nodes.values(), new_node], refs)
        return self

    def _inserted_before(self, new_node: GraphNode, anchor: GraphNode) -> list[GraphNode]:
        out: list[GraphNode] = []
        for n in self._nodes.values():
            if n.node_id == anchor.node_id:
                out.append(new_node)
            out.append(n)
        return out
