"""Graph artifacts as a store: variables, optimizer state and frozen paths, nothing more.

This module knows pytrees and JSON only; which object the values came from (a
ModelGraph, a flow Graph, a phase's running carry) is the graph layer's business
(:mod:`modjax.graph.io`). A graph artifact (kind ``"graph"`` for a saved graph,
``"graph_checkpoint"`` for a checkpoint) holds:

- pytree item ``variables`` (``{"params", "state"}``) — absent for an unbuilt saved graph;
- pytree item ``opt_state`` when an optimizer state was given;
- manifest ``extra``: ``frozen_paths`` (sorted label paths), ``at`` (the label path a
  subtree checkpoint was cut at), and whatever else the writer adds (``graph_label``,
  ``definition_hash``, ``built``);
- ``config.json`` when a config envelope is given (saved graphs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from modjax.io.checkpoints import Artifact, open_artifact, write_artifact
from modjax.io.objects import CONFIG_FILE
from modjax.io.reports import LoadReport
from modjax.io.subtree import load_subtree
from modjax.paths import join_path, split_path

__all__ = ["GRAPH_KINDS", "GraphArtifact", "save_graph_checkpoint", "open_graph_checkpoint",
           "normalize_frozen"]

GRAPH_KINDS = ("graph", "graph_checkpoint")


def normalize_frozen(paths: Iterable[Any] | None) -> list[str]:
    """Frozen label paths (strings or tuples) as sorted dotted strings.

    Example:
        >>> normalize_frozen([("enc", "w"), "head"])
        ['enc.w', 'head']
    """
    return sorted(join_path(split_path(p)) for p in (paths or ()))


def save_graph_checkpoint(path: str | Path, *, variables: Any, opt_state: Any = None,
                          frozen: Iterable[Any] = (), meta: Mapping[str, Any] | None = None,
                          extra: Mapping[str, Any] | None = None,
                          config: Mapping[str, Any] | None = None,
                          kind: str = "graph_checkpoint", overwrite: bool = False,
                          blocking: bool = True) -> Path | Future:
    """Write graph values atomically: pytrees and JSON in, an artifact directory out.

    Args:
        path: the artifact directory.
        variables: the ``{"params", "state"}`` pytree, or None (a saved graph that was
            never built: config and frozen paths only).
        opt_state: the optimizer state pytree, or None to store none.
        frozen: frozen label paths (strings or tuples).
        meta: user metadata (JSON) stored in the manifest.
        extra: more manifest data (JSON): ``at``, ``graph_label``, ``definition_hash``...
        config: the config envelope written as ``config.json`` (saved graphs).
        kind: ``"graph_checkpoint"`` (default) or ``"graph"``.
        overwrite: replace an existing artifact at ``path``.
        blocking: with False the write runs on the background checkpoint thread and a
            Future of the path is returned.

    Returns:
        ``path`` as a Path, or a Future of it.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "ck"
        >>> v = {"params": {"enc": {"w": np.ones(2)}}, "state": {"enc": {}}}
        >>> _ = save_graph_checkpoint(p, variables=v, frozen=["enc"], meta={"epoch": 1})
        >>> ck = open_graph_checkpoint(p)
        >>> ck.frozen, ck.meta, ck.has_opt_state
        (['enc'], {'epoch': 1}, False)
    """
    if kind not in GRAPH_KINDS:
        raise ValueError(f"kind must be one of {GRAPH_KINDS}, got {kind!r}")
    items: dict[str, Any] = {}
    if variables is not None:
        items["variables"] = variables
        if opt_state is not None:
            items["opt_state"] = opt_state
    manifest_extra = {"frozen_paths": normalize_frozen(frozen), "at": None, **dict(extra or {})}
    json_files = {CONFIG_FILE: dict(config)} if config is not None else None
    return write_artifact(path, kind, items=items, extra=manifest_extra, meta=meta,
                          json_files=json_files,
                          hash_item="variables" if variables is not None else None,
                          overwrite=overwrite, blocking=blocking)


class GraphArtifact:
    """An opened graph artifact: read its pytrees onto targets, all checks done.

    Attributes:
        artifact: the underlying :class:`~modjax.io.checkpoints.Artifact` (files verified).
    """

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def kind(self) -> str:
        return self.artifact.kind

    @property
    def meta(self) -> dict[str, Any]:
        return self.artifact.meta

    @property
    def extra(self) -> dict[str, Any]:
        extra = self.artifact.extra
        return extra if isinstance(extra, dict) else {}

    @property
    def frozen(self) -> list[str]:
        """The frozen label paths recorded at save time."""
        return list(self.extra.get("frozen_paths", []))

    @property
    def has_variables(self) -> bool:
        return "variables" in self.artifact.items

    @property
    def has_opt_state(self) -> bool:
        return "opt_state" in self.artifact.items

    @property
    def definition_hash(self) -> str | None:
        return self.extra.get("definition_hash")

    def variables(self, target: Any, at: str | None = None, *, strict: bool = True,
                  where: str = "graph") -> tuple[Any, LoadReport]:
        """The stored variables loaded into subtree ``at`` of ``target`` (a copy).

        Strict loads are all or nothing (see :func:`modjax.io.subtree.load_subtree`).

        Returns:
            ``(new_variables, report)``.
        """
        return load_subtree(target, at, self.artifact, strict=strict, where=where)

    def opt_state(self, target: Any) -> Any:
        """The stored optimizer state, restored onto ``target``'s structure and shardings."""
        return self.artifact.restore("opt_state", target)


def open_graph_checkpoint(path: str | Path,
                          kind: str | tuple[str, ...] = GRAPH_KINDS) -> GraphArtifact:
    """Open a graph artifact (saved graph or checkpoint) for reading.

    Raises:
        CheckpointError: missing, not a graph artifact, truncated or edited.
    """
    return GraphArtifact(open_artifact(path, kind=kind))
