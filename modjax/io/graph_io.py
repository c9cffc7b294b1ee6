"""Save/load and checkpoints of ModelGraph and flow Graphs (the GraphPersistence seam).

A saved graph (kind ``"graph"``) and a graph checkpoint (kind ``"graph_checkpoint"``)
are both artifact directories with a ``variables`` item (``{"params", "state"}``), an
``opt_state`` item when an optimizer state exists, and the frozen label paths in the
manifest; the saved graph also has ``config.json``. A checkpoint taken ``at`` a label
path holds that subtree in its own namespace (and no optimizer state).
"""

from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from modjax.context import ExperimentContext
from modjax.errors import CheckpointError
from modjax.paths import join_path, split_path
from modjax.io.checkpoints import Artifact, open_artifact, write_artifact
from modjax.io.objects import CONFIG_FILE, config_envelope, object_from_artifact
from modjax.io.progress import check_progress_args, io_progress, log_event
from modjax.io.reports import LoadReport
from modjax.io.subtree import extract_subtree, load_subtree

__all__ = ["save_graph", "load_graph", "save_graph_checkpoint", "restore_graph_checkpoint",
           "load_graph_subtree", "set_frozen", "frozen_paths_of", "GRAPH_KINDS"]

GRAPH_KINDS = ("graph", "graph_checkpoint")


def _built_variables(graph: Any) -> Any:
    """The graph's variables, or None when it is not built (hosts may raise instead)."""
    if getattr(graph, "is_built", True) is False:
        return None
    return getattr(graph, "variables", None)


def _variables(graph: Any, what: str) -> Any:
    v = _built_variables(graph)
    if v is None:
        raise CheckpointError(
            f"graph {getattr(graph, 'label', '?')!r} is not built (no variables) so it cannot "
            f"{what}; call build() first")
    return v


def _opt_state(graph: Any) -> Any:
    try:
        return getattr(graph, "opt_state", None)
    except Exception:  # a host may raise when no optimizer is attached
        return None


def _frozen(graph: Any) -> list[str]:
    return sorted(join_path(split_path(p)) for p in (getattr(graph, "frozen_paths", None) or ()))


def frozen_paths_of(graph: Any) -> list[str]:
    """The graph's frozen label paths, sorted (``[]`` for hosts without freezing)."""
    return _frozen(graph)


def set_frozen(graph: Any, paths: Any) -> None:
    """Make ``graph``'s frozen label paths exactly ``paths`` (thaw the others)."""
    old_frozen, new_frozen = set(_frozen(graph)), set(paths)
    if old_frozen - new_frozen:
        # ModelGraph calls it unfreeze, the flow Graph tree calls it thaw.
        thaw = getattr(graph, "unfreeze", None) or graph.thaw
        thaw(sorted(old_frozen - new_frozen))
    if new_frozen - old_frozen:
        graph.freeze(sorted(new_frozen - old_frozen))


def _items(graph: Any, at: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    variables = _variables(graph, "be saved")
    parts = split_path(at or ())
    items = {"variables": extract_subtree(variables, parts)}
    frozen = _frozen(graph)
    if parts:
        n = len(parts)
        frozen = [join_path(split_path(f)[n:]) for f in frozen
                  if split_path(f)[:n] == parts and len(split_path(f)) > n]
    else:
        opt = _opt_state(graph)
        if opt is not None:
            items["opt_state"] = opt
    extra = {"frozen_paths": frozen, "at": join_path(parts) or None,
             "graph_label": getattr(graph, "label", None),
             "definition_hash": _definition_hash(graph, join_path(parts) or None)}
    return items, extra


def _definition_hash(graph: Any, at: str | None) -> str | None:
    fn = getattr(graph, "definition_hash", None)
    return fn(at) if callable(fn) else None


def _label(graph: Any) -> str:
    return repr(getattr(graph, "label", "?"))


def save_graph(graph: Any, path: str | Path, *, overwrite: bool = False,
               show_progress: bool = False, progress_file: Any = None) -> Path:
    """Write config + variables + optimizer state + frozen set (kind ``"graph"``)."""
    check_progress_args(show_progress, what="save")
    items, extra = _items(graph, None) if _built_variables(graph) is not None else (
        {}, {"frozen_paths": _frozen(graph), "at": None})
    extra["built"] = "variables" in items
    with io_progress(show_progress, f"save graph {_label(graph)}", file=progress_file):
        return write_artifact(path, "graph", items=items, extra=extra, hash_item=(
            "variables" if items else None), json_files={CONFIG_FILE: config_envelope(graph)},
            overwrite=overwrite)


def load_graph(cls: type, path: str | Path, *, overwrite: bool = False,
               allow_packaged_code: bool = False, show_progress: bool = False,
               progress_file: Any = None) -> Any:
    """Rebuild a graph saved with :func:`save_graph` (new object, state restored)."""
    check_progress_args(show_progress, what="load")
    with io_progress(show_progress, f"load graph {str(path)!r}", file=progress_file):
        art = open_artifact(path, kind="graph")
        # all or nothing: a load that fails part-way leaves no node registered
        with ExperimentContext.get_active().all_or_nothing():
            graph = object_from_artifact(art, cls, overwrite=overwrite,
                                         allow_packaged_code=allow_packaged_code)
            restored = art.extra.get("built") and "variables" in art.items
            if restored:
                _apply_checkpoint(graph, art)
    log_event("loaded graph %s from %r (%s)", _label(graph), str(path),
              "variables restored" if restored else "not built: config only")
    return graph


def save_graph_checkpoint(graph: Any, path: str | Path, *, overwrite: bool = False,
                          meta: dict[str, Any] | None = None, at: str | None = None,
                          blocking: bool = True, show_progress: bool = False,
                          progress_file: Any = None) -> Path | Future:
    """Checkpoint the graph's learned values (or the subtree ``at``) atomically
    (in the background with ``blocking=False``: returns a Future of the path)."""
    check_progress_args(show_progress, blocking, what="save_checkpoint")
    items, extra = _items(graph, at)
    with io_progress(show_progress, f"checkpoint graph {_label(graph)}", file=progress_file):
        return write_artifact(path, "graph_checkpoint", items=items, extra=extra, meta=meta,
                              hash_item="variables", overwrite=overwrite, blocking=blocking)


def _apply_checkpoint(graph: Any, art: Artifact) -> list[str]:
    """Restore variables, optimizer state and frozen set; all or nothing. Returns the
    names of what was restored (for the log line)."""
    where = f"graph {getattr(graph, 'label', '?')!r}"
    old_vars = _built_variables(graph)
    if old_vars is not None:
        target = old_vars
    elif hasattr(graph, "abstract_variables"):
        # Unbuilt (just loaded from config): restore against the abstract shapes, no init.
        target = graph.abstract_variables()
    else:
        graph.build()
        target = graph.variables
    new_vars, _ = load_subtree(target, None, art, strict=True, where=where)
    old_opt = _opt_state(graph)
    new_frozen = set(art.extra.get("frozen_paths", []))
    graph.set_variables(new_vars)
    new_opt = None
    try:
        # set_variables may (re)initialise the optimizer state: it is the target now.
        target_opt = _opt_state(graph)
        if "opt_state" in art.items and target_opt is not None:
            new_opt = art.restore("opt_state", target_opt)
            graph.set_opt_state(new_opt)
        elif target_opt is not None:
            _reset_opt_state(graph, new_vars, art)
        set_frozen(graph, new_frozen)
    except BaseException:
        if old_vars is not None:
            graph.set_variables(old_vars)
            graph.set_opt_state(old_opt)
        raise
    done = ["variables"] + (["optimizer state"] if new_opt is not None else [])
    return done + [f"{len(new_frozen)} frozen paths"] if new_frozen else done


def _reset_opt_state(graph: Any, variables: Any, art: Artifact) -> None:
    """A checkpoint without optimizer state: moments of other variables must not be
    kept, so the state starts afresh for the restored variables (with a warning)."""
    opt = getattr(graph, "optimizer", None)
    if opt is None or not callable(getattr(opt, "init", None)):
        return
    graph.set_opt_state(opt.init(variables["params"]))
    warnings.warn(f"{str(art.path)!r} holds no optimizer state; the optimizer state of graph "
                  f"{getattr(graph, 'label', '?')!r} was reset (fresh moments and step count) "
                  "instead of keeping the values of the variables it replaced", stacklevel=4)


def restore_graph_checkpoint(graph: Any, path: str | Path, *, show_progress: bool = False,
                             progress_file: Any = None) -> Any:
    """Restore a checkpoint into ``graph`` in place (strict); returns the graph."""
    check_progress_args(show_progress, what="restore_checkpoint")
    with io_progress(show_progress, f"restore graph {_label(graph)}", file=progress_file):
        art = open_artifact(path, kind=GRAPH_KINDS)
        done = _apply_checkpoint(graph, art)
    log_event("restored graph %s from %s %r (%s)", _label(graph), art.kind, str(path),
              ", ".join(done))
    return graph


def load_graph_subtree(graph: Any, path_in_graph: str, checkpoint: str | Path, *,
                       strict: bool = True, match: str = "definition",
                       show_progress: bool = False, progress_file: Any = None) -> LoadReport:
    """Load a (sub)graph checkpoint or saved graph into the subtree ``path_in_graph``.

    ``match="definition"`` (default) also compares the architecture hashes (model
    classes and configs) of the saved part and the receiving one: with ``strict`` a
    different architecture is an error, otherwise ``hash_matched`` is False.
    ``match="shapes"`` compares parameter paths, shapes and dtypes only.
    """
    if match not in ("definition", "shapes"):
        raise ValueError(f"match must be 'definition' or 'shapes', got {match!r}")
    check_progress_args(show_progress, what="load_subgraph_checkpoint")
    with io_progress(show_progress, f"load subtree {path_in_graph!r} of graph {_label(graph)}",
                     file=progress_file):
        report = _load_subtree(graph, path_in_graph, checkpoint, strict=strict, match=match)
    log_event("loaded subtree %r of graph %s from %r (%s)", path_in_graph, _label(graph),
              str(checkpoint), report.summary())
    return report


def _load_subtree(graph: Any, path_in_graph: str, checkpoint: str | Path, *, strict: bool,
                  match: str) -> LoadReport:
    art = open_artifact(checkpoint, kind=GRAPH_KINDS)
    where = f"graph {getattr(graph, 'label', '?')!r}"
    saved = art.extra.get("definition_hash") if isinstance(art.extra, dict) else None
    mine = _definition_hash(graph, path_in_graph or None)
    differs = match == "definition" and saved is not None and mine is not None and saved != mine
    # shapes first (the report names leaves); then the architecture; nothing set until both pass
    new_vars, report = load_subtree(_variables(graph, "load a subgraph checkpoint"),
                                    path_in_graph, art, strict=strict, where=where)
    if differs and strict:
        raise CheckpointError(
            f"checkpoint {str(art.path)!r} holds another architecture than {where} subtree "
            f"{path_in_graph!r} (definition hash {saved} vs {mine}: model classes or configs "
            "differ, e.g. an activation); pass match='shapes' to load by shapes alone")
    graph.set_variables(new_vars)
    if differs:
        report = dataclasses.replace(report, hash_matched=False)
    return report
