"""Dotted label paths into the nested-dict variables pytree.

``"encoder.scan"`` is the tree path ``("encoder", "scan")``. Every feature that
addresses a part of a model (freeze, parameters_at, subgraph checkpoints, observation
tags, per-node optimizers) resolves paths here, so every one of them fails the same
way: a :class:`~modjax.errors.LabelPathError` naming the path and the nearest labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from modjax.errors import LabelPathError, closest_names

__all__ = [
    "validate_label",
    "split_path",
    "join_path",
    "get_at",
    "set_at",
    "has_path",
    "flatten_paths",
    "key_name",
    "path_mask",
]

_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def validate_label(label: str, *, what: str = "label") -> str:
    """Check that ``label`` is usable as one level of a label path.

    Labels are identifiers (letters, digits, ``_`` and ``-``, not starting with a
    digit) and never contain dots.

    Example:
        >>> validate_label("Encoder")
        'Encoder'
    """
    if not isinstance(label, str) or not _LABEL_RE.match(label):
        raise ValueError(
            f"invalid {what} {label!r}: labels must match [A-Za-z_][A-Za-z0-9_-]* "
            "(no dots: a dot separates the levels of a label path)")
    return label


def split_path(path: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a.b"`` -> ``("a", "b")``; tuples pass through; ``""`` is the root ``()``.

    Example:
        >>> split_path("encoder.scan")
        ('encoder', 'scan')
    """
    if isinstance(path, (tuple, list)):
        return tuple(path)
    if not isinstance(path, str):
        raise TypeError(f"a label path is a dotted string or a tuple, got {path!r}")
    return tuple(p for p in path.split(".")) if path else ()


def join_path(parts: Iterable[str]) -> str:
    """``("a", "b")`` -> ``"a.b"``."""
    return ".".join(parts)


def get_at(tree: Mapping[str, Any], path: str | tuple[str, ...], *, what: str = "tree") -> Any:
    """The subtree at ``path``.

    Raises:
        LabelPathError: naming the full path, the first level that failed, and the
            labels that exist at that level.

    Example:
        >>> get_at({"enc": {"w": 1}}, "enc.w")
        1
    """
    parts = split_path(path)
    node: Any = tree
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            here = join_path(parts[:i]) or "<root>"
            options = list(node.keys()) if isinstance(node, Mapping) else []
            raise LabelPathError(
                f"label path {join_path(parts)!r} does not resolve in the {what}: no "
                f"{part!r} under {here}; labels there: {sorted(options)[:12]}"
                + (f"; did you mean {closest_names(part, options)}?" if options else ""))
        node = node[part]
    return node


def has_path(tree: Mapping[str, Any], path: str | tuple[str, ...]) -> bool:
    """Whether ``path`` resolves in ``tree``."""
    try:
        get_at(tree, path)
    except LabelPathError:
        return False
    return True


def set_at(tree: Mapping[str, Any], path: str | tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with the subtree at ``path`` replaced (parents must exist).

    Only the dicts along the path are copied; leaves are shared.
    """
    parts = split_path(path)
    if not parts:
        return value
    get_at(tree, parts[:-1])
    head, rest = parts[0], parts[1:]
    out = dict(tree)
    out[head] = set_at(tree[head], rest, value) if rest else value
    return out


def key_name(k: Any) -> str:
    """The label of one step of a jax key path (dict key, sequence index, attribute).

    Example:
        >>> [key_name(k) for k in jax.tree_util.tree_flatten_with_path({"a": [0]})[0][0][0]]
        ['a', '0']
    """
    if isinstance(k, jax.tree_util.DictKey | jax.tree_util.FlattenedIndexKey):
        return str(k.key)
    if isinstance(k, jax.tree_util.SequenceKey):
        return str(k.idx)
    if isinstance(k, jax.tree_util.GetAttrKey):
        return str(k.name)
    return str(k)


def flatten_paths(tree: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Leaves keyed by dotted path (dict keys, and sequence indices as digits).

    Example:
        >>> flatten_paths({"a": {"w": 1, "b": 2}})
        {'a.b': 2, 'a.w': 1}
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for kp, leaf in leaves:
        out[join_path(prefix + tuple(key_name(k) for k in kp))] = leaf
    return out


def path_mask(tree: Any, selected: Iterable[str | tuple[str, ...]],
              leaf_fn: Callable[[bool], Any] = bool) -> Any:
    """Pytree like ``tree`` whose leaves say whether they lie under a selected path.

    Every selected path must resolve (a typo is an error, never a silent no-op).

    Example:
        >>> path_mask({"a": {"w": 1}, "b": {"w": 2}}, ["a"])
        {'a': {'w': True}, 'b': {'w': False}}
    """
    prefixes = [split_path(p) for p in selected]
    for p in prefixes:
        get_at(tree, p)

    def mark(kp: tuple[Any, ...], _leaf: Any) -> Any:
        names = tuple(key_name(k) for k in kp)
        return leaf_fn(any(names[: len(p)] == p for p in prefixes))

    return jax.tree_util.tree_map_with_path(mark, tree)
