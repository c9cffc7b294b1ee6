"""Rewrite a checkpoint under new label paths (flodl's "Migrating checkpoints").

``migrate_checkpoint(src, dst, rename={"scan": "reader"})`` moves the subtree at each
old label path to the new one, in ``params`` and ``state`` alike, and writes ``dst`` in
the current format with a zeroed structural hash: it then loads without the architecture
hash check, while every leaf's name, shape and dtype are still checked on load. The
array values are copied bit-exactly. Optimizer state is dropped (it is keyed by the old
names); the graph's optimizer starts fresh for the loaded weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modjax.errors import CheckpointError
from modjax.io.checkpoints import open_artifact, write_artifact
from modjax.io.pytree_store import ZERO_HASH
from modjax.io.reports import LoadReport
from modjax.io.subtree import COLLECTIONS
from modjax.paths import get_at, join_path, split_path

__all__ = ["migrate_checkpoint"]


def _pop_at(tree: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node = get_at(tree, parts[:-1]) if len(parts) > 1 else tree
    return node.pop(parts[-1])


def _put_at(tree: dict[str, Any], parts: tuple[str, ...], value: Any, where: str) -> None:
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise CheckpointError(f"{where}: cannot create {join_path(parts)!r}: "
                                  f"{p!r} is a leaf")
    if parts[-1] in node:
        raise CheckpointError(f"{where}: rename target {join_path(parts)!r} already exists")
    node[parts[-1]] = value


def _renamed(path: str, rename: Mapping[str, str]) -> str:
    parts = split_path(path)
    for old, new in rename.items():
        o = split_path(old)
        if parts[: len(o)] == o:
            parts = split_path(new) + parts[len(o):]
    return join_path(parts)


def migrate_checkpoint(src: str | Path, dst: str | Path, rename: Mapping[str, str], *,
                       overwrite: bool = False) -> LoadReport:
    """Copy checkpoint ``src`` to ``dst`` with label paths renamed.

    Args:
        src: a checkpoint with a ``variables`` item (graph or subgraph checkpoint).
        dst: where to write the migrated checkpoint.
        rename: ``{old label path: new label path}``, applied in order to both
            ``params`` and ``state``; every old path must exist in one of them.
        overwrite: replace an existing ``dst``.

    Returns:
        A :class:`LoadReport` whose ``loaded`` lists the leaves written to ``dst`` under
        their new names (nothing missing or mismatched: migration never drops weights).

    Raises:
        CheckpointError: ``src`` is missing/truncated, an old path does not exist, or a
            new path is already taken.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from modjax.io.checkpoints import write_artifact
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> v = {"params": {"scan": {"w": np.ones(2)}}, "state": {"scan": {}}}
        >>> _ = write_artifact(d / "v1", "graph_checkpoint", items={"variables": v},
        ...                    hash_item="variables")
        >>> migrate_checkpoint(d / "v1", d / "v2", {"scan": "reader"}).loaded
        ('params.reader.w',)
    """
    art = open_artifact(src)
    variables = art.restore("variables")
    where = f"migrating {str(src)!r}"
    for old, new in rename.items():
        old_p, new_p = split_path(old), split_path(new)
        if not old_p or not new_p:
            raise CheckpointError(f"{where}: rename paths must be non-empty, got {old!r} -> {new!r}")
        moved = False
        for c in COLLECTIONS:
            tree = variables.get(c)
            if not isinstance(tree, dict):
                continue
            try:
                value = _pop_at(tree, old_p)
            except (KeyError, LookupError, AttributeError, TypeError):
                continue
            _put_at(tree, new_p, value, where)
            moved = True
        if not moved:
            labels = sorted(variables.get("params", {}))
            raise CheckpointError(
                f"{where}: label path {old!r} does not exist in the checkpoint; its top-level "
                f"labels are {labels[:12]}")
    extra = dict(art.extra)
    # renamed paths no longer describe the saved architecture: nothing to compare against
    extra.pop("definition_hash", None)
    if "frozen_paths" in extra:
        extra["frozen_paths"] = [_renamed(p, rename) for p in extra["frozen_paths"]]
    write_artifact(
        dst, art.kind, items={"variables": variables}, meta=art.meta,
        extra={**extra,
               "migrated_from": {"path": str(src), "version": art.manifest["checkpoint_version"],
                                 "structural_hash": art.structural_hash,
                                 "rename": dict(rename)}},
        structural_hash=ZERO_HASH, overwrite=overwrite)
    names = tuple(r["path"] for r in open_artifact(dst).spec("variables")["leaves"])
    return LoadReport(loaded=names, missing=(), mismatched=(), unexpected=(), hash_matched=False)
