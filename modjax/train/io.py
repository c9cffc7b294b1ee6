"""Experiment save/load, named experiment checkpoints and the checkpoint directory.

``Experiment``'s persistence methods (:mod:`modjax.train.persistence`) call these; the
artifacts are written by the store (:mod:`modjax.io.checkpoints`).

An Experiment artifact (kind ``"experiment"``) holds::

    config.json                          the Experiment config (graph, phases, callbacks...)
    featuresets/<node_id>/config.json    every FeatureSet of the experiment's context
    featuresets/<node_id>/table.parquet
    history.json                         execution history: runs, results hierarchy,
                                         recorded metrics, epoch times (see train/history_io.py)
    arrays/experiment                    get_state(): graph variables/optimizer state,
                                         phase counters, sampler RNG
    arrays/history                       per-batch losses, recorded tensors, index plans
    arrays/featuresets/<node_id>/...     split indices and scaler states
    checkpoints/                         copy of the checkpoint directory (optional)

An experiment checkpoint (kind ``"experiment_checkpoint"``) holds the state item and the
history (``history.json`` + ``arrays/history``), not the FeatureSets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from modjax.context import ExperimentContext
from modjax.data.io import featureset_payload, read_featureset_files, write_table
from modjax.errors import CheckpointError, closest_names
from modjax.graph.io import frozen_paths_of, set_frozen
from modjax.io import async_writer
from modjax.io.atomic import POINTER_FILE, confined_path, read_pointer, resolve_artifact
from modjax.io.checkpoints import open_artifact, write_artifact
from modjax.io.objects import CONFIG_FILE, config_envelope, object_from_artifact
from modjax.io.progress import check_progress_args, io_progress, log_event
from modjax.io.registry import registered_name
from modjax.protocols import CheckpointOwner, ExperimentHost, HasContext, PhaseContainer
from modjax.train.history_io import history_from_payload, history_payload

__all__ = [
    "save_experiment",
    "load_experiment",
    "save_experiment_checkpoint",
    "restore_experiment_checkpoint",
    "set_checkpoint_dir",
    "available_checkpoints",
    "disable_checkpointing",
    "EXPERIMENT_CHECKPOINT_KINDS",
]

EXPERIMENT_CHECKPOINT_KINDS = ("experiment_checkpoint", "graph_checkpoint", "graph")


def set_checkpoint_dir(exp: ExperimentHost, path: str | Path, *, create: bool = True) -> None:
    """Set ``exp``'s checkpoint directory (created when ``create``)."""
    path = Path(path)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist "
                                "(pass create=True to make it)")
    exp._mj_checkpoint_dir = path


@contextlib.contextmanager
def disable_checkpointing(exp: ExperimentHost) -> Iterator[None]:
    """Suppress experiment- and phase-level checkpointing inside the block (nestable)."""
    exp._mj_checkpointing_disabled += 1
    try:
        yield
    finally:
        exp._mj_checkpointing_disabled -= 1


def _checkpoint_path(exp: ExperimentHost, name: str | os.PathLike) -> Path:
    """A ``str`` is a name inside the checkpoint directory (confined to it); a
    ``pathlib.Path`` (any ``os.PathLike``) is a location the caller chose."""
    if not isinstance(name, str):
        return Path(name)
    base = exp._mj_checkpoint_dir
    if base is None:
        raise CheckpointError(
            f"Experiment {exp.label!r} has no checkpoint directory for "
            f"checkpoint {name!r}: call set_checkpoint_dir(path) or pass a pathlib.Path")
    return confined_path(base, name, what=f"Experiment {exp.label!r} "
                                          "checkpoint")


HISTORY_FILE = "history.json"


def _history_list(exp: ExperimentHost) -> list[Any] | None:
    """The host's list of ExperimentRun (None for hosts that keep history in their state)."""
    # the Experiment keeps its runs in a private list; other hosts (test doubles) keep
    # their history inside get_state(), so this stays a probe rather than a contract
    hist = getattr(exp, "_history", None)
    return hist if isinstance(hist, list) else None


def _history_files(exp: ExperimentHost) -> tuple[dict[str, Any], dict[str, Any]]:
    hist = _history_list(exp)
    if hist is None:
        return {}, {}
    runs, arrays = history_payload(hist)
    return {HISTORY_FILE: runs}, {"history": arrays}


def _read_history(exp: ExperimentHost, art: Any) -> list[Any] | None:
    """The artifact's history as ExperimentRuns (None if the host or artifact has none)."""
    if _history_list(exp) is None or "history" not in art.items:
        return None
    return history_from_payload(art.read_json(HISTORY_FILE), art.restore("history"),
                                graph=exp.model_graph,
                                where=f"{str(art.path)!r} history")


def _label(exp: ExperimentHost) -> str:
    return repr(exp.label)


def save_experiment_checkpoint(exp: ExperimentHost, name: str | Path, *, overwrite: bool = False,
                               meta: dict[str, Any] | None = None, blocking: bool = True,
                               show_progress: bool = False,
                               progress_file: Any = None) -> Path | Future:
    """Write ``exp.get_state()`` as an atomic checkpoint named ``name`` (in the background
    with ``blocking=False``: returns a Future of the path)."""
    check_progress_args(show_progress, blocking, what="save_checkpoint")
    path = _checkpoint_path(exp, name)
    json_files, hist_items = _history_files(exp)
    with io_progress(show_progress, f"checkpoint experiment {_label(exp)}", file=progress_file):
        return write_artifact(path, "experiment_checkpoint",
                              items={"experiment": exp.get_state(), **hist_items},
                              json_files=json_files, meta=meta,
                              extra={"experiment_label": exp.label,
                                     "class": registered_name(exp),
                                     "frozen_paths": _graph_frozen(exp)},
                              overwrite=overwrite, blocking=blocking)


def _set_state_atomically(exp: ExperimentHost, new_state: Any) -> None:
    old = exp.get_state()
    try:
        exp.set_state(new_state)
    except BaseException:
        exp.set_state(old)
        raise


def _graph_frozen(exp: ExperimentHost) -> list[str] | None:
    graph = exp.model_graph
    return None if graph is None else frozen_paths_of(graph)


def _restore_state(exp: ExperimentHost, art: Any) -> None:
    # Everything is read before anything is set: a bad artifact leaves exp unchanged.
    runs = _read_history(exp, art)
    frozen = art.extra.get("frozen_paths")
    graph = exp.model_graph
    old_frozen = _graph_frozen(exp)
    _set_state_atomically(exp, art.restore("experiment", template=exp.get_state()))
    if frozen is not None and graph is not None:
        try:
            set_frozen(graph, frozen)
        except BaseException:
            set_frozen(graph, old_frozen)
            raise
    if runs is not None:
        _history_list(exp)[:] = runs


def restore_experiment_checkpoint(exp: ExperimentHost, name_or_path: str | Path, *,
                                  show_progress: bool = False, progress_file: Any = None) -> None:
    """Restore by checkpoint name (see :func:`available_checkpoints`) or path.

    An experiment checkpoint restores the whole experiment state; a graph checkpoint
    (or saved graph) restores the model graph in place.

    Raises:
        CheckpointError: no such checkpoint (message lists the available names).
        TypeError: the artifact is neither an experiment nor a graph checkpoint.
    """
    available = available_checkpoints(exp)  # waits for checkpoints still being written
    if str(name_or_path) in available:
        path = available[str(name_or_path)]
    else:
        path = Path(name_or_path)
        base = exp._mj_checkpoint_dir
        if not path.exists() and base is not None and (base / path).exists():
            path = base / path
        if not path.exists():
            raise CheckpointError(
                f"no checkpoint named {str(name_or_path)!r} and no such path; available "
                f"checkpoints like it: {closest_names(str(name_or_path), available)}")
    check_progress_args(show_progress, what="restore_checkpoint")
    kind = read_pointer(path).get("kind")
    if kind == "experiment_checkpoint":
        with io_progress(show_progress, f"restore experiment {_label(exp)}", file=progress_file):
            _restore_state(exp, open_artifact(path, kind=kind))
        log_event("restored experiment %s from checkpoint %r (%s)", _label(exp),
                  str(name_or_path), str(path))
    elif kind in ("graph_checkpoint", "graph"):
        graph = exp.model_graph
        if graph is None:
            raise CheckpointError(f"{str(path)!r} is a graph checkpoint but Experiment "
                                  f"{exp.label!r} has no model graph")
        # the graph's restore advances this bar and logs the event
        with io_progress(show_progress, f"restore graph of experiment {_label(exp)}",
                         file=progress_file):
            graph.restore_checkpoint(path)
    else:
        raise TypeError(f"{str(path)!r} holds a {kind!r} artifact, neither an experiment nor a "
                        "model graph checkpoint")


def available_checkpoints(exp: ExperimentHost) -> dict[str, Path]:
    """Disk checkpoints by name.

    Names are paths relative to the checkpoint directory (``"run1"``,
    ``"train/train_epoch3"`` for a phase's checkpoints in its subdirectory), plus the
    keys recorded by disk-mode Checkpointing objects attached to the experiment and its
    phases, when they are elsewhere.
    """
    async_writer.wait_pending(raise_errors=False)  # list finished checkpoints only
    out: dict[str, Path] = {}
    base = exp._mj_checkpoint_dir
    if base is not None and Path(base).is_dir():
        for dirpath, dirs, files in os.walk(base):
            if POINTER_FILE in files:
                p = Path(dirpath)
                try:
                    kind = read_pointer(p).get("kind")
                    resolve_artifact(p)  # listed only when its generation is loadable
                except CheckpointError:
                    kind = None
                if kind in EXPERIMENT_CHECKPOINT_KINDS:
                    out[p.relative_to(base).as_posix()] = p
                dirs.clear()  # an artifact's insides are not checkpoints
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for ck in _checkpointings(exp):
        if ck.mode != "disk":
            continue
        for key in ck.saved_keys:
            p = ck.get_path(key)
            if p is not None and p not in out.values() and _loadable(p):
                out[str(key)] = p
    return dict(sorted(out.items()))


def _loadable(path: Path) -> bool:
    try:
        resolve_artifact(path)
    except CheckpointError:
        return False
    return True


def _copy_without_links(src: Path, dest: Path) -> None:
    """Copy a checkpoint directory; symbolic links are left out (with a warning), never
    followed: an artifact holds only its own files."""
    def skip_links(directory: str, names: list[str]) -> list[str]:
        links = [n for n in names if os.path.islink(os.path.join(directory, n))]
        for n in links:
            warnings.warn(f"Experiment.save: {os.path.join(directory, n)!r} is a symbolic "
                          "link; it is not copied into the artifact", stacklevel=6)
        return links

    shutil.copytree(src, dest, ignore=skip_links)


def _checkpointings(exp: ExperimentHost) -> list[Any]:
    found = []
    if exp.checkpointing is not None:
        found.append(exp.checkpointing)
    stack = [exp.execution_plan] if exp.execution_plan is not None else []
    while stack:
        node = stack.pop()
        ck = node.checkpointing if isinstance(node, CheckpointOwner) else None
        if ck is not None and ck not in found:
            found.append(ck)
        if isinstance(node, PhaseContainer):
            stack.extend(node.phases or [])
    return found


def _experiment_featuresets(exp: ExperimentHost) -> list[Any]:
    ctx = (exp.ctx if isinstance(exp, HasContext) else None) or ExperimentContext.get_active()
    return sorted(ctx.available_featuresets.values(), key=lambda fs: fs.label)


def save_experiment(exp: ExperimentHost, path: str | Path, *, overwrite: bool = False,
                    show_progress: bool = False, progress_file: Any = None) -> Path:
    """Atomically write config, state, FeatureSets, history and checkpoints of ``exp``."""
    check_progress_args(show_progress, what="save")
    json_files = {CONFIG_FILE: config_envelope(exp)}
    items: dict[str, Any] = {"experiment": exp.get_state()}
    hist_json, hist_items = _history_files(exp)
    json_files.update(hist_json)
    items.update(hist_items)
    tables = []
    fs_ids = []
    for fs in _experiment_featuresets(exp):
        prefix = f"featuresets/{fs.node_id}/"
        j, it, table = featureset_payload(fs, prefix)
        json_files.update(j)
        items.update(it)
        tables.append((prefix, table))
        fs_ids.append(fs.node_id)
    ckpt_dir = exp._mj_checkpoint_dir
    has_ckpts = ckpt_dir is not None and Path(ckpt_dir).is_dir() and any(Path(ckpt_dir).iterdir())

    def writer(gen: Path) -> None:
        for prefix, table in tables:
            write_table(table, gen, prefix)
        if has_ckpts:
            _copy_without_links(Path(ckpt_dir), gen / "checkpoints")

    with io_progress(show_progress, f"save experiment {_label(exp)}", file=progress_file):
        return write_artifact(path, "experiment", items=items, json_files=json_files,
                              writer=writer, extra={"featuresets": fs_ids,
                                                    "checkpoints": bool(has_ckpts),
                                                    "label": exp.label},
                              overwrite=overwrite)


def load_experiment(cls: type, path: str | Path, *, checkpoint_dir: str | Path | None = None,
                    allow_packaged_code: bool = False, overwrite: bool = False,
                    show_progress: bool = False, progress_file: Any = None) -> Any:
    """Rebuild an Experiment saved with :func:`save_experiment`.

    FeatureSets are loaded into the active ExperimentContext first (so the graph's
    references resolve), then the Experiment is built from its config and its state
    restored; saved checkpoints are copied into ``checkpoint_dir`` when given.
    """
    check_progress_args(show_progress, what="load")
    with io_progress(show_progress, f"load experiment {str(path)!r}", file=progress_file):
        art = open_artifact(path, kind="experiment")
        exp = _experiment_from_artifact(art, cls, overwrite=overwrite,
                                        allow_packaged_code=allow_packaged_code)
    if art.extra.get("checkpoints"):
        if checkpoint_dir is None:
            warnings.warn(f"{str(path)!r} contains checkpoints; pass checkpoint_dir= to restore "
                          "them (they were not extracted)", stacklevel=3)
        else:
            dest = Path(checkpoint_dir)
            shutil.copytree(art.file("checkpoints"), dest, dirs_exist_ok=True, symlinks=True)
            set_checkpoint_dir(exp, dest)
    hist = _history_list(exp)
    log_event("loaded experiment %s from %r (%d FeatureSets, %s runs in its history%s)",
              _label(exp), str(path), len(art.extra.get("featuresets", [])),
              "no" if not hist else len(hist),
              f"; checkpoints copied to {str(checkpoint_dir)!r}"
              if art.extra.get("checkpoints") and checkpoint_dir is not None else "")
    return exp


def _experiment_from_artifact(art: Any, cls: type, *, overwrite: bool,
                              allow_packaged_code: bool) -> Any:
    """FeatureSets first (the graph's references resolve to them), then the Experiment
    from its config, then its state; all or nothing."""
    id_map = {}
    # all or nothing: a load that fails part-way leaves no FeatureSet or node registered
    with ExperimentContext.get_active().all_or_nothing():
        for node_id in art.extra.get("featuresets", []):
            fs = read_featureset_files(art, None, overwrite=overwrite,
                                       allow_packaged_code=allow_packaged_code,
                                       prefix=f"featuresets/{node_id}/")
            if fs.node_id != node_id:
                id_map[node_id] = fs.node_id  # reloaded under a new id: references follow it
        exp = object_from_artifact(art, cls, overwrite=overwrite,
                                   allow_packaged_code=allow_packaged_code, id_map=id_map)
        _restore_state(exp, art)
    return exp
