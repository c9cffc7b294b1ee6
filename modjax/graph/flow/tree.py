"""Graph-tree queries for flow graphs: label paths across labelled subgraphs.

A labelled :class:`~modjax.graph.flow.Graph` used as a step of another flow becomes a
*child*: its variables nest under its label, its observer joins the parent's, and label
paths address it: ``"encoder"`` (a subgraph), ``"encoder.scan"`` (a tag inside it).
Resolution is exact (no fuzzy matching, no walking up), and tags starting with ``_`` or
marked ``internal`` are invisible from parents.

Freezing records label paths only (``frozen_paths``); the training layer's optimizer
turns them into an optax mask, so freezing never rebuilds anything.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from modjax.errors import GraphStructureError, LabelPathError, closest_names
from modjax.graph.freezing import FreezeStore
from modjax.paths import flatten_paths, get_at, join_path, split_path

__all__ = ["GraphTree", "SUBGRAPH", "TAG"]

#: :meth:`GraphTree.validate_path` result for a labelled child graph.
SUBGRAPH = "subgraph"
#: :meth:`GraphTree.validate_path` result for a tag.
TAG = "tag"


def _count(tree: Any) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def _paths_arg(paths: str | Iterable[str]) -> list[str]:
    return [paths] if isinstance(paths, (str, tuple)) else list(paths)


class GraphTree:
    """Tree mixin of the flow ``Graph`` (uses its ``_entries``, ``_tags``, ``_internal``)."""

    # ---------------------------------------------------------------- children
    def _init_tree(self) -> None:
        self._children: dict[str, Any] = {}
        self._freeze_store = FreezeStore()
        for e in self._entries:
            child = e.child
            if child is None:
                continue
            if child.label in self._children:
                raise GraphStructureError(
                    f"graph {self._name!r}: duplicate child label {child.label!r} (two "
                    "labelled subgraphs at the same level need different labels)")
            self._children[child.label] = child
            child._composed = True
            # the child becomes a view onto this graph's variables at its entry
            child._parent_ref = weakref.ref(self)
            # every composing graph, so a child of two parents can tell it is ambiguous
            child.__dict__.setdefault("_parent_refs", []).append(child._parent_ref)
            child._path_in_parent = e.id
            for p, v in child._freeze_store.ops.items():  # frozen on its own stays frozen
                self._freeze_store.mark((e.id, *p), v)

    def tree_children(self) -> dict[str, Any]:
        """``{label: child graph}`` of the direct labelled children.

        Returns:
            A new dict (changing it does not change the tree).

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> list(model.tree_children()), model.child_graph("encoder") is enc
            (['encoder'], True)
        """
        return dict(self._children)

    def child_graph(self, label: str) -> Any | None:
        """The direct child with this label, or ``None``.

        Args:
            label: a child label (one level; use :meth:`subgraph` for paths).

        Returns:
            The child graph or ``None``.
        """
        return self._children.get(label)

    def subgraph(self, path: str) -> Any:
        """The graph at a dotted path of child labels (``"a.b"``).

        Args:
            path: child labels joined by dots.

        Returns:
            The graph at that path.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> model.subgraph("encoder") is enc, enc.is_composed(), model.is_composed()
            (True, True, False)

        Raises:
            LabelPathError: naming the missing label and the children that exist.
        """
        g = self
        parts = split_path(path)
        if not parts:
            raise LabelPathError("subgraph path is empty; give a child label such as 'encoder'")
        for i, part in enumerate(parts):
            if part not in g._children:
                raise LabelPathError(
                    f"label path {path!r}: graph {g._name!r} has no child {part!r} (at "
                    f"{join_path(parts[:i]) or '<root>'}); children: {sorted(g._children)}"
                    + (f"; did you mean {closest_names(part, g._children)}?" if g._children
                       else ""))
            g = g._children[part]
        return g

    def is_composed(self) -> bool:
        """Whether this graph has been nested in a parent flow."""
        return self._composed

    def internal_tags(self) -> set[str]:
        """Tags hidden from parents (leading underscore or ``internal(...)``)."""
        return set(self._internal)

    # ---------------------------------------------------------------- paths
    def _walk_path(self, path: str | tuple[str, ...],
                   node_ids: bool = False) -> tuple[Any, str, str]:
        """Resolve a label path to ``(owning graph, last segment, kind)``.

        With ``node_ids`` the last segment may also be a node id (``"Linear_0"``), which
        is how ``frozen_paths`` names untagged nodes.
        """
        parts = split_path(path)
        if not parts:
            raise LabelPathError("label path is empty")
        g = self
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i > 0 and part in g._internal and not (node_ids and last and part in g._by_id):
                raise LabelPathError(
                    f"label path {join_path(parts)!r}: tag {part!r} of graph {g._name!r} is "
                    "internal (hidden from parent graphs)")
            if part in g._children:
                if last:
                    return g, part, SUBGRAPH
                g = g._children[part]
                continue
            if part in g._tags:
                if last:
                    return g, part, TAG
                raise LabelPathError(
                    f"label path {join_path(parts)!r}: {part!r} is a tag of graph {g._name!r}, "
                    "not a labelled subgraph, so nothing lies below it")
            if node_ids and last and part in g._by_id:
                return g, part, "node"
            options = [*g._children, *(t for t in g._tags if i == 0 or t not in g._internal)]
            raise LabelPathError(
                f"label path {join_path(parts)!r} does not resolve: graph {g._name!r} has no "
                f"child or tag {part!r} (at {join_path(parts[:i]) or '<root>'}); children: "
                f"{sorted(g._children)}, tags: {sorted(t for t in g._tags if i == 0 or t not in g._internal)}"
                + (f"; did you mean {closest_names(part, options)}?" if options else ""))
        raise AssertionError("unreachable")  # pragma: no cover

    def validate_path(self, path: str) -> str:
        """``"subgraph"`` or ``"tag"`` for a resolving label path.

        Raises:
            LabelPathError: the path does not resolve or crosses into an internal tag.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = FlowBuilder.from_(Linear(4)).tag("hidden").label("encoder").build()
            >>> model = FlowBuilder.from_(enc).through(Linear(2)).build()
            >>> model.validate_path("encoder"), model.validate_path("encoder.hidden")
            ('subgraph', 'tag')
        """
        return self._walk_path(path)[2]

    def _check_visible(self, parts: tuple[str, ...], full: str) -> None:
        if parts and parts[0] in self._internal:
            raise LabelPathError(
                f"label path {full!r}: tag {parts[0]!r} of graph {self._name!r} is internal "
                "(hidden from parent graphs)")
        self._walk_path(parts)

    def _param_path(self, path: str | tuple[str, ...]) -> tuple[str, ...]:
        """Label path (tags, child labels, or a node id last) -> node-id path in ``params``."""
        self._walk_path(path, node_ids=True)
        out, g = [], self
        for part in split_path(path):
            if part in g._children:
                out.append(part)
                g = g._children[part]
            else:
                out.append(g._tags.get(part, part))
        return tuple(out)

    # ---------------------------------------------------------------- variables at paths
    def _require_variables(self, what: str) -> dict[str, Any]:
        v = self.variables
        if v is None:
            raise ValueError(f"graph {self._name!r} is not built, so it has no {what}; call "
                             "build(input_shape) or run a forward first")
        return v

    def parameters_at(self, path: str) -> Any:
        """The params subtree at a label path (for optimizer groups).

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(3)).tag("a").through(Linear(2)).build(
            ...     input_shape=(4,))
            >>> sorted(g.parameters_at("a"))
            ['bias', 'kernel']
        """
        return get_at(self._require_variables("parameters")["params"], self._param_path(path))

    def named_parameters_at(self, path: str) -> dict[str, Any]:
        """``{name: array}`` under a label path, named in the target's own namespace.

        Args:
            path: a label path (subgraph or tag).

        Returns:
            Dotted names relative to the target (``"scan.kernel"``), as a checkpoint of
            the target alone would name them.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> sorted(model.named_parameters_at("encoder"))
            ['read.bias', 'read.kernel', 'scan.bias', 'scan.kernel']
        """
        return flatten_paths(self.parameters_at(path))

    def named_buffers_at(self, path: str) -> dict[str, Any]:
        """``{name: array}`` of non-trained state under a label path (own namespace).

        Args:
            path: a label path (subgraph or tag).

        Returns:
            Dotted names relative to the target (batch-norm ``mean``/``var``...).

        Example:
            >>> from modjax import Linear
            >>> from modjax import BatchNorm
            >>> from modjax.flow import FlowBuilder
            >>> g = FlowBuilder.from_(Linear(2)).through(BatchNorm()).tag("bn").build(
            ...     input_shape=(3,))
            >>> sorted(g.named_buffers_at("bn"))
            ['mean', 'var']
        """
        state = self._require_variables("buffers")["state"]
        return flatten_paths(get_at(state, self._param_path(path)))

    # ---------------------------------------------------------------- freezing
    def _status(self, p: tuple[str, ...]) -> bool:
        return self._freeze_store.status(p)

    def _set_frozen(self, p: tuple[str, ...], value: bool) -> None:
        self._freeze_store.mark(p, value)

    def _freeze_path(self, path: str | tuple[str, ...]) -> tuple[str, ...]:
        """The params path freezing acts on: a tied use's parameters are its owner's."""
        out, g = [], self
        for part in self._param_path(path):
            if g is not None:
                part = getattr(g, "_tied", {}).get(part, part)
                g = g._children.get(part)
            out.append(part)
        return tuple(out)

    def freeze(self, paths: str | Iterable[str]) -> None:
        """Freeze every parameter under the given label path(s).

        Only the frozen set changes (see :attr:`frozen_paths`); the optimizer masks
        those leaves. All paths are checked before anything changes.

        Args:
            paths: one label path or several (subgraphs, tags, or node ids).

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> model.freeze("encoder")
            >>> model.thaw("encoder.scan")
            >>> model.is_frozen("encoder.read"), model.is_frozen("encoder"), model.frozen_paths
            (True, False, ('encoder.read',))

        Raises:
            LabelPathError: a path does not resolve (nothing is changed).
        """
        resolved = [self._freeze_path(p) for p in _paths_arg(paths)]
        for p in resolved:
            self._set_frozen(p, True)

    def thaw(self, paths: str | Iterable[str]) -> None:
        """Unfreeze every parameter under the given label path(s) (all checked first).

        Args:
            paths: one label path or several; thawing inside a frozen subtree keeps
                the rest of it frozen (see :meth:`freeze`).

        Raises:
            LabelPathError: a path does not resolve (nothing is changed).
        """
        resolved = [self._freeze_path(p) for p in _paths_arg(paths)]
        for p in resolved:
            self._set_frozen(p, False)

    unfreeze = thaw

    def _frozen_leaves(self, p: tuple[str, ...]) -> list[bool] | None:
        v = self.variables
        if v is None:
            return None
        sub = get_at(v["params"], p)
        flags = []
        for name in flatten_paths(sub):
            leaf = p + tuple(split_path(name)) if name else p
            flags.append(self._status(leaf))
        return flags

    def is_frozen(self, path: str) -> bool:
        """Whether every parameter under ``path`` is frozen.

        A path without parameters is frozen when it lies in a frozen region.

        Args:
            path: a label path.

        Returns:
            True when all its parameters are frozen (see :meth:`freeze`).
        """
        p = self._freeze_path(path)
        flags = self._frozen_leaves(p)
        if not flags:
            return self._status(p) and all(self._freeze_store.marks_below(p).values())
        return all(flags)

    @property
    def frozen_paths(self) -> tuple[str, ...]:
        """Minimal label paths (node ids, resolving in ``params``) whose leaves are all frozen.

        This is what the optimizer turns into an optax mask.
        """
        v = self.variables
        found = self._freeze_store.frozen_paths(None if v is None else v["params"])
        return tuple(join_path(q) for q in found)

    def frozen_mask(self) -> Any:
        """Boolean pytree like ``params``: True where a leaf is frozen (for optax masks).

        Returns:
            The ``frozen=`` argument of :meth:`modjax.train.Optimizer.update`.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> model.freeze("encoder.read")
            >>> m = model.frozen_mask()
            >>> bool(m["encoder"]["read"]["kernel"]), bool(m["encoder"]["scan"]["kernel"])
            (True, False)
        """
        from modjax.paths import path_mask

        return path_mask(self._require_variables("parameters")["params"], self.frozen_paths)

    # ---------------------------------------------------------------- training mode
    def set_training_at(self, path: str, training: bool | None) -> None:
        """Fix the training flag of the subgraph or tagged node at ``path``.

        E.g. ``set_training_at("encoder", False)`` keeps batch-norm inside the encoder
        on running statistics while the rest trains. ``None`` clears the override.

        Args:
            path: a label path (subgraph or tag).
            training: the fixed flag, or ``None`` to follow the graph again.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = (FlowBuilder.from_(Linear(4)).tag("scan").through(Linear(4)).tag("read")
            ...        .label("encoder").build())
            >>> model = FlowBuilder.from_(enc).through(Linear(1)).build(input_shape=(2,))
            >>> model.set_training_at("encoder", False)
            >>> model.training_at("encoder"), model.training_at("encoder.scan")
            (False, None)
        """
        g, last, kind = self._walk_path(path)
        node_id = last if kind == SUBGRAPH else g._tags[last]
        g._by_id[node_id].node.train_override = None if training is None else bool(training)
        for owner in self._lineage(path):
            owner._jit_cache.clear()

    def _lineage(self, path: str) -> list[Any]:
        out, g = [self], self
        for part in split_path(path)[:-1]:
            g = g._children[part]
            out.append(g)
        return out

    def training_at(self, path: str) -> bool | None:
        """The override set by :meth:`set_training_at` (``None``: follows the graph).

        Args:
            path: a label path (subgraph or tag).

        Returns:
            ``True``/``False`` when fixed, else ``None``.
        """
        g, last, kind = self._walk_path(path)
        node_id = last if kind == SUBGRAPH else g._tags[last]
        return g._by_id[node_id].node.train_override

    # ---------------------------------------------------------------- summaries
    def _param_counts(self) -> tuple[int | None, dict[str, int]]:
        v = self.variables
        if v is None:
            return None, {}
        params = v["params"]
        return _count(params), {label: _count(params[label]) for label in self._children}

    def tree_summary(self) -> str:
        """The tree as text: each graph's hash, visible tags, parameter count, children.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = FlowBuilder.from_(Linear(4)).tag("hidden").label("encoder").build()
            >>> m = FlowBuilder.from_(enc).through(Linear(2)).tag("out").build(input_shape=(3,))
            >>> print(m.tree_summary())  # doctest: +ELLIPSIS
            (root) [hash: ...]
            +-- tags: out
            +-- params: 26
            +-- encoder [hash: ...]
                +-- tags: hidden
                +-- params: 16
        """
        lines: list[str] = []
        self._tree_lines(lines, "", self.label or "(root)")
        return "\n".join(lines)

    def _tree_lines(self, lines: list[str], indent: str, name: str) -> None:
        lines.append(f"{indent}{name} [hash: {self.structural_hash()}]" if not indent else
                     f"{indent[:-4]}+-- {name} [hash: {self.structural_hash()}]")
        pad = indent
        tags = [t + (" (internal)" if t in self._internal else "") for t in self._tags]
        lines.append(f"{pad}+-- tags: {', '.join(tags) if tags else '-'}")
        total, _ = self._param_counts()
        lines.append(f"{pad}+-- params: {'?' if total is None else total}")
        for label, child in self._children.items():
            child._tree_lines(lines, pad + "    ", label)

    def param_summary(self) -> str:
        """Parameter breakdown: total, per child subgraph and own, with frozen status.

        Example:
            >>> from modjax import Linear
            >>> from modjax.flow import FlowBuilder
            >>> enc = FlowBuilder.from_(Linear(4)).label("encoder").build()
            >>> m = FlowBuilder.from_(enc).through(Linear(2)).build(input_shape=(3,))
            >>> m.freeze("encoder")
            >>> print(m.param_summary())
            Total: 26 parameters
              encoder: 16 (61.5%)  frozen
              (own): 10 (38.5%)  trainable
        """
        total, per_child = self._param_counts()
        if total is None:
            return f"Total: ? parameters (graph {self._name!r} is not built)"
        lines = [f"Total: {total} parameters"]
        params = self.variables["params"]
        own_ids = [e.id for e in self._entries if e.id not in self._children]
        rows = [(label, n, self._status_text((label,))) for label, n in per_child.items()]
        own = sum(_count(params[i]) for i in own_ids)
        own_frozen = sum(_count(params[i]) for i in own_ids if self._all_frozen((i,)))
        rows.append(("(own)", own, "frozen" if own and own_frozen == own else (
            "trainable" if not own_frozen else f"partly frozen ({own_frozen} frozen)")))
        for name, n, status in rows:
            pct = 100.0 * n / total if total else 0.0
            lines.append(f"  {name}: {n} ({pct:.1f}%)  {status}")
        return "\n".join(lines)

    def _all_frozen(self, p: tuple[str, ...]) -> bool:
        flags = self._frozen_leaves(p)
        return bool(flags) and all(flags)

    def _status_text(self, p: tuple[str, ...]) -> str:
        flags = self._frozen_leaves(p) or []
        n = sum(flags)
        if flags and n == len(flags):
            return "frozen"
        if n == 0:
            return "trainable"
        sub = get_at(self.variables["params"], p)
        frozen = sum(int(np.size(leaf)) for (name, leaf), f in zip(
            flatten_paths(sub).items(), flags) if f)
        return f"partly frozen ({frozen} frozen)"

    def verbose_text(self) -> str:
        """What ``verbose(True)`` prints on build: tree and parameter summaries."""
        return ("=== Graph Tree ===\n" + self.tree_summary() +
                "\n\n=== Parameter Summary ===\n" + self.param_summary())
