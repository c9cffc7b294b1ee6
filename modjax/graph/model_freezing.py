"""Freezing of a ``ModelGraph``: its verbs over the shared :class:`FreezeStore`.

``freeze``/``unfreeze`` take nodes, labels, ids or dotted label paths into a node's
parameters; the store records marks, the node objects mirror whole-node marks
(``ModelNode.is_frozen``), and a node model's own marks (a flow graph's ``freeze``) hold
inside the ModelGraph under the node's label. Nothing is rebuilt: the optimizer turns
``frozen_paths`` into a traced mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax

from modjax.errors import GraphStructureError
from modjax.graph.nodes import GraphNode, ModelNode
from modjax.paths import flatten_paths, get_at, join_path, path_mask, split_path

__all__ = ["ModelGraphFreezing"]


def _is_prefix(p: tuple[str, ...], q: tuple[str, ...]) -> bool:
    return len(p) <= len(q) and q[: len(p)] == p


class ModelGraphFreezing:
    """Freezing mixin of ModelGraph (uses its ``_freeze`` store, nodes and variables)."""

    def _freeze_targets(self, nodes: Iterable[Any] | None) -> list[tuple[str, ...]]:
        if nodes is None:
            return [(n.label,) for n in self._model_nodes()]
        if isinstance(nodes, (str, GraphNode)):
            nodes = [nodes]
        out = []
        for item in nodes:
            if isinstance(item, str) and "." in item and item not in self._nodes:
                parts = split_path(item)
                head = self._get(parts[0])
                if self._built:
                    get_at(self._variables["params"], parts,  # type: ignore[index]
                           what=f"params of graph {self.label!r}")
            else:
                head, parts = self._get(item), None
            if not isinstance(head, ModelNode):
                raise GraphStructureError(
                    f"cannot freeze {head.label!r}: it is a {type(head).__name__}, which has no "
                    "parameters")
            out.append(tuple(parts) if parts else (head.label,))
        return out

    def _set_frozen(self, paths: set[tuple[str, ...]]) -> None:
        """Make exactly ``paths`` frozen (as a config restores it)."""
        self._freeze.clear()
        for p in paths:
            self._freeze.mark(tuple(p), True)
        self._mirror_frozen()

    def _mirror_frozen(self) -> None:
        """Nodes report ``is_frozen`` when the store freezes them as a whole."""
        for n in self._model_nodes():
            p = (n.label,)
            n._frozen = self._freeze.status(p) and all(self._freeze.marks_below(p).values())

    def _frozen_set(self) -> set[tuple[str, ...]]:
        params = self._variables["params"] if self._built and self._variables else None
        return set(self._freeze.frozen_paths(params))

    def _model_frozen(self) -> set[tuple[str, ...]]:
        """Paths a node's model froze itself (a flow Graph's ``freeze("encoder")``),
        under the node's label: what the model says is frozen stays frozen here too."""
        out: set[tuple[str, ...]] = set()
        for n in self._model_nodes():
            marks = getattr(n.model, "frozen_paths", None)
            if marks and not callable(marks):
                out |= {(n.label, *split_path(p)) for p in marks}
        return out

    def _thaw_models(self, targets: Iterable[tuple[str, ...]] | None) -> None:
        """Thaw the models' own marks that lie under ``targets`` (None: all of them)."""
        for n in self._model_nodes():
            marks = getattr(n.model, "frozen_paths", None)
            if not marks or callable(marks) or not hasattr(n.model, "thaw"):
                continue
            for t in ([(n.label,)] if targets is None else targets):
                if t[0] != n.label:
                    continue
                inside = [p for p in marks if len(t) == 1 or _is_prefix(t[1:], tuple(split_path(p)))]
                n.model.thaw(inside + ([join_path(t[1:])] if len(t) > 1 and not inside else []))

    def freeze(self, nodes: Iterable[Any] | None = None) -> Any:
        """Freeze nodes or label paths (``"Encoder"``, ``"Encoder.layer_0"``).

        Args:
            nodes: labels, ids, node instances or dotted label paths; None: every
                ModelNode.

        Returns:
            self (nothing is rebuilt; the optimizer masks frozen paths)
        """
        self._sync_labels()
        for t in self._freeze_targets(nodes):
            self._freeze.mark(t, True)
        self._mirror_frozen()
        return self

    def unfreeze(self, nodes: Iterable[Any] | None = None) -> Any:
        """Unfreeze nodes or label paths; thawing ``"Enc.layer_0"`` inside a frozen
        ``"Enc"`` keeps its siblings frozen (needs a built graph).

        Returns:
            self
        """
        self._sync_labels()
        if nodes is None:
            self._freeze.clear()
            self._thaw_models(None)
            self._mirror_frozen()
            return self
        targets = self._freeze_targets(nodes)
        if not self._built:
            for t in targets:
                outer = [q for q, v in self._freeze.ops.items() if v and _is_prefix(q, t) and q != t]
                if outer:
                    raise RuntimeError(
                        f"unfreezing {join_path(t)!r} inside frozen {join_path(outer[0])!r} "
                        "needs a built graph (to know the sibling paths)")
        self._thaw_models(targets)  # after every check: a refused unfreeze changes nothing
        for t in targets:
            self._freeze.mark(t, False)
        self._mirror_frozen()
        return self

    @property
    def frozen_paths(self) -> set[str]:
        """Frozen label paths (whole nodes and sub-paths)."""
        self._sync_labels()
        return {join_path(p) for p in self._frozen_set() | self._model_frozen()}

    @property
    def frozen_nodes(self) -> dict[str, ModelNode]:
        """ModelNodes frozen as a whole, keyed by node_id."""
        return {n.node_id: n for n in self._model_nodes() if n.is_frozen}

    def frozen_mask(self) -> Any:
        """Boolean pytree like ``params``: True where a leaf is frozen."""
        self._require_built("frozen_mask")
        return path_mask(self._variables["params"],  # type: ignore[index]
                         sorted(self._frozen_set() | self._model_frozen()))

    def get_optimizer_parameters(self) -> dict[str, Any]:
        """What the global optimizer trains (as in ModularML).

        Returns:
            ``{"backend", "contributing_nodes": set of node ids with trainable params,
            "parameters": {label path: array} of unfrozen leaves, "trainable_mask":
            pytree like params, True where trained}``.
        """
        self._require_built("get_optimizer_parameters")
        frozen = self.frozen_mask()
        trainable = jax.tree.map(lambda f: not f, frozen)
        flat = flatten_paths(self._variables["params"])  # type: ignore[index]
        fmask = flatten_paths(frozen)
        params = {p: v for p, v in flat.items() if not fmask[p]}
        contributing = {n.node_id for n in self._model_nodes()
                        if any(p == n.label or p.startswith(n.label + ".") for p in params)}
        return {"backend": self.backend or "jax", "contributing_nodes": contributing,
                "parameters": params, "trainable_mask": trainable}
