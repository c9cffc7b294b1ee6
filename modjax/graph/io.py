"""Save, load and checkpoints of ModelGraph and flow Graphs (the graph side of persistence).

What a graph artifact holds and how it is written is :mod:`modjax.io.graph_store`'s
business (pytrees and JSON only); this module reads the values off a graph (or takes
them explicitly, as a phase does with its running carry) and puts restored values back,
all or nothing. The methods users call (``ModelGraph.save_checkpoint``, ...) are in
:mod:`modjax.graph.persistence`.
"""

from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from modjax.context import ExperimentContext
from modjax.errors import CheckpointError
from modjax.io.graph_store import (
    GRAPH_KINDS,
    GraphArtifact,
    normalize_frozen,
    open_graph_checkpoint,
    save_graph_checkpoint,
)
from modjax.io.objects import config_envelope, object_from_artifact
from modjax.io.progress import check_progress_args, io_progress, log_event
from modjax.io.reports import LoadReport
from modjax.io.subtree import extract_subtree
from modjax.paths import join_path, split_path
from modjax.protocols import (
    AbstractlyBuildable,
    Buildable,
    CheckpointHost,
    HasDefinitionHash,
    HasOptimizer,
    HasOptState,
    ReportsBuilt,
    Thawable,
    Unfreezable,
)

__all__ = ["save_graph", "load_graph", "save_checkpoint",
           "restore_checkpoint", "load_subgraph", "set_frozen", "frozen_paths_of",
           "GRAPH_KINDS"]


def _built_variables(graph: CheckpointHost) -> Any:
    """The graph's variables, or None when it is not built (hosts may raise instead)."""
    if isinstance(graph, ReportsBuilt) and not graph.is_built:
        return None
    try:
        return graph.variables
    except AttributeError:  # an unbuilt host may not have them yet
        return None


def _variables(graph: CheckpointHost, what: str) -> Any:
    v = _built_variables(graph)
    if v is None:
        raise CheckpointError(
            f"graph {_label(graph)} is not built (no variables) so it cannot "
            f"{what}; call build() first")
    return v


def _opt_state(graph: CheckpointHost) -> Any:
    try:
        return graph.opt_state if isinstance(graph, HasOptState) else None
    except Exception:  # a host may raise when no optimizer is attached
        return None


def frozen_paths_of(graph: CheckpointHost) -> list[str]:
    """The graph's frozen label paths, sorted (``[]`` for hosts without freezing)."""
    return normalize_frozen(graph.frozen_paths)


def set_frozen(graph: CheckpointHost, paths: Any) -> None:
    """Make ``graph``'s frozen label paths exactly ``paths`` (thaw the others)."""
    old_frozen, new_frozen = set(frozen_paths_of(graph)), set(paths)
    if old_frozen - new_frozen:
        # ModelGraph calls it unfreeze, the flow Graph tree calls it thaw.
        gone = sorted(old_frozen - new_frozen)
        if isinstance(graph, Unfreezable):
            graph.unfreeze(gone)
        elif isinstance(graph, Thawable):
            graph.thaw(gone)
        else:
            raise TypeError(f"graph {_label(graph)} has neither unfreeze() nor thaw(); "
                            f"cannot thaw {gone}")
    if new_frozen - old_frozen:
        graph.freeze(sorted(new_frozen - old_frozen))


def _definition_hash(graph: Any, at: str | None) -> str | None:
    return graph.definition_hash(at) if isinstance(graph, HasDefinitionHash) else None


def _label(graph: CheckpointHost) -> str:
    return repr(graph.label)


def _subtree_frozen(frozen: list[str], parts: tuple[str, ...]) -> list[str]:
    n = len(parts)
    return [join_path(split_path(f)[n:]) for f in frozen
            if split_path(f)[:n] == parts and len(split_path(f)) > n]


def _values(graph: CheckpointHost, at: str | None, variables: Any,
            opt_state: Any) -> tuple[Any, Any, list[str], dict[str, Any]]:
    """``(variables, opt_state, frozen, extra)`` to store: the given pytrees, or the
    graph's own where None; a subtree ``at`` in its own namespace (no optimizer state)."""
    if variables is None:
        variables = _variables(graph, "be saved")
    parts = split_path(at or ())
    frozen = frozen_paths_of(graph)
    if parts:
        variables, opt_state = extract_subtree(variables, parts), None
        frozen = _subtree_frozen(frozen, parts)
    elif opt_state is None:
        opt_state = _opt_state(graph)
    at_name = join_path(parts) or None
    extra = {"at": at_name, "graph_label": graph.label,
             "definition_hash": _definition_hash(graph, at_name)}
    return variables, opt_state, frozen, extra


def save_checkpoint(graph: CheckpointHost, path: str | Path, *, variables: Any = None,
                    opt_state: Any = None, overwrite: bool = False,
                    meta: dict[str, Any] | None = None, at: str | None = None,
                    blocking: bool = True, show_progress: bool = False,
                    progress_file: Any = None) -> Path | Future:
    """Checkpoint a graph's learned values (or the subtree ``at``) atomically.

    Args:
        graph: the graph whose frozen set, label and architecture hash are recorded.
        path: the checkpoint directory.
        variables: the ``{"params", "state"}`` pytree to store; None stores the graph's
            own. A phase passes its running carry's variables here, so nothing is copied
            into the graph and back.
        opt_state: the optimizer state to store; None stores the graph's own (if any).
        overwrite: replace an existing checkpoint.
        meta: JSON metadata stored in the manifest.
        at: label path of a subtree to save standalone, in its own namespace (no
            optimizer state).
        blocking: with False the values are frozen now and written on the background
            checkpoint thread; a Future of the path is returned.
        show_progress: draw a tqdm bar (needs ``blocking=True``).
        progress_file: stream for the bar (default stderr).

    Returns:
        ``path`` as a Path, or a Future of it.
    """
    check_progress_args(show_progress, blocking, what="save_checkpoint")
    variables, opt_state, frozen, extra = _values(graph, at, variables, opt_state)
    with io_progress(show_progress, f"checkpoint graph {_label(graph)}", file=progress_file):
        return save_graph_checkpoint(path, variables=variables, opt_state=opt_state,
                                     frozen=frozen, meta=meta, extra=extra,
                                     overwrite=overwrite, blocking=blocking)


def save_graph(graph: CheckpointHost, path: str | Path, *, overwrite: bool = False,
               show_progress: bool = False, progress_file: Any = None) -> Path:
    """Write config + variables + optimizer state + frozen set (kind ``"graph"``)."""
    check_progress_args(show_progress, what="save")
    built = _built_variables(graph) is not None
    if built:
        variables, opt_state, frozen, extra = _values(graph, None, None, None)
    else:
        variables, opt_state, frozen, extra = None, None, frozen_paths_of(graph), {}
    extra["built"] = built
    with io_progress(show_progress, f"save graph {_label(graph)}", file=progress_file):
        return save_graph_checkpoint(path, variables=variables, opt_state=opt_state,
                                     frozen=frozen, extra=extra, kind="graph",
                                     config=config_envelope(graph), overwrite=overwrite)


def load_graph(cls: type, path: str | Path, *, overwrite: bool = False,
               allow_packaged_code: bool = False, show_progress: bool = False,
               progress_file: Any = None) -> Any:
    """Rebuild a graph saved with :func:`save_graph` (new object, state restored)."""
    check_progress_args(show_progress, what="load")
    with io_progress(show_progress, f"load graph {str(path)!r}", file=progress_file):
        ck = open_graph_checkpoint(path, kind="graph")
        # all or nothing: a load that fails part-way leaves no node registered
        with ExperimentContext.get_active().all_or_nothing():
            graph = object_from_artifact(ck.artifact, cls, overwrite=overwrite,
                                         allow_packaged_code=allow_packaged_code)
            restored = bool(ck.extra.get("built")) and ck.has_variables
            if restored:
                _apply_checkpoint(graph, ck)
    log_event("loaded graph %s from %r (%s)", _label(graph), str(path),
              "variables restored" if restored else "not built: config only")
    return graph


def _restore_target(graph: CheckpointHost) -> tuple[Any, Any]:
    """``(current variables or None, the tree to restore onto)``."""
    old_vars = _built_variables(graph)
    if old_vars is not None:
        return old_vars, old_vars
    if isinstance(graph, AbstractlyBuildable):
        # Unbuilt (just loaded from config): restore against the abstract shapes, no init.
        return None, graph.abstract_variables()
    if not isinstance(graph, Buildable):
        raise CheckpointError(f"graph {_label(graph)} is not built and has no build(); "
                              "cannot restore a checkpoint into it")
    graph.build()
    return None, graph.variables


def _apply_checkpoint(graph: CheckpointHost, ck: GraphArtifact) -> list[str]:
    """Restore variables, optimizer state and frozen set; all or nothing. Returns the
    names of what was restored (for the log line)."""
    old_vars, target = _restore_target(graph)
    new_vars, _ = ck.variables(target, None, strict=True, where=f"graph {_label(graph)}")
    old_opt = _opt_state(graph)
    new_frozen = set(ck.frozen)
    graph.set_variables(new_vars)
    new_opt = None
    try:
        # set_variables may (re)initialise the optimizer state: it is the target now.
        target_opt = _opt_state(graph)
        if ck.has_opt_state and target_opt is not None:
            new_opt = ck.opt_state(target_opt)
            graph.set_opt_state(new_opt)  # type: ignore[attr-defined]  # HasOptState
        elif target_opt is not None:
            _reset_opt_state(graph, new_vars, ck)
        set_frozen(graph, new_frozen)
    except BaseException:
        if old_vars is not None:
            graph.set_variables(old_vars)
            if isinstance(graph, HasOptState):
                graph.set_opt_state(old_opt)
        raise
    done = ["variables"] + (["optimizer state"] if new_opt is not None else [])
    return done + [f"{len(new_frozen)} frozen paths"] if new_frozen else done


def _reset_opt_state(graph: CheckpointHost, variables: Any, ck: GraphArtifact) -> None:
    """A checkpoint without optimizer state: moments of other variables must not be
    kept, so the state starts afresh for the restored variables (with a warning)."""
    opt = graph.optimizer if isinstance(graph, HasOptimizer) else None
    if opt is None or not callable(getattr(opt, "init", None)):
        # the optimizer is the user's (an Optimizer or any optax-like object): duck-typed
        return
    graph.set_opt_state(opt.init(variables["params"]))
    warnings.warn(f"{str(ck.path)!r} holds no optimizer state; the optimizer state of graph "
                  f"{_label(graph)} was reset (fresh moments and step count) "
                  "instead of keeping the values of the variables it replaced", stacklevel=4)


def restore_checkpoint(graph: CheckpointHost, path: str | Path, *, show_progress: bool = False,
                       progress_file: Any = None) -> Any:
    """Restore a checkpoint into ``graph`` in place (strict); returns the graph."""
    check_progress_args(show_progress, what="restore_checkpoint")
    with io_progress(show_progress, f"restore graph {_label(graph)}", file=progress_file):
        ck = open_graph_checkpoint(path)
        done = _apply_checkpoint(graph, ck)
    log_event("restored graph %s from %s %r (%s)", _label(graph), ck.kind, str(path),
              ", ".join(done))
    return graph


def load_subgraph(graph: CheckpointHost, path_in_graph: str, checkpoint: str | Path, *,
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


def _load_subtree(graph: CheckpointHost, path_in_graph: str, checkpoint: str | Path, *,
                  strict: bool, match: str) -> LoadReport:
    ck = open_graph_checkpoint(checkpoint)
    where = f"graph {_label(graph)}"
    saved = ck.definition_hash
    mine = _definition_hash(graph, path_in_graph or None)
    differs = match == "definition" and saved is not None and mine is not None and saved != mine
    # shapes first (the report names leaves); then the architecture; nothing set until both pass
    new_vars, report = ck.variables(_variables(graph, "load a subgraph checkpoint"),
                                    path_in_graph, strict=strict, where=where)
    if differs and strict:
        raise CheckpointError(
            f"checkpoint {str(ck.path)!r} holds another architecture than {where} subtree "
            f"{path_in_graph!r} (definition hash {saved} vs {mine}: model classes or configs "
            "differ, e.g. an activation); pass match='shapes' to load by shapes alone")
    graph.set_variables(new_vars)
    if differs:
        report = dataclasses.replace(report, hash_matched=False)
    return report
