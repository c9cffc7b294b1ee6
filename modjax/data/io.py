"""FeatureSet save/load: the Arrow table as Parquet, the rest as JSON + Orbax.

``FeatureSet.save``/``load`` (:mod:`modjax.data.persistence`) call these; the artifact
itself is written by the store (:mod:`modjax.io.checkpoints`).

Layout of a FeatureSet generation directory::

    config.json     FeatureSet config (label, node id, column types, splitter/scaler records)
    table.parquet   the whole table, ``sample_uuids`` included (Arrow schema kept, so
                    fixed-size list columns come back as such)
    arrays/splits   split row indices (int64), Orbax
    arrays/scalers  fitted scaler states, Orbax
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from modjax.context import ExperimentContext
from modjax.errors import CheckpointError, ConfigError
from modjax.io.checkpoints import Artifact, open_artifact, write_artifact
from modjax.io.objects import CONFIG_FILE, config_envelope, read_envelope, registration_scope
from modjax.io.progress import check_progress_args, io_progress, log_event
from modjax.io.registry import get_registered

__all__ = ["save_featureset", "load_featureset", "featureset_payload", "write_table",
           "read_featureset_files", "TABLE_FILE"]

TABLE_FILE = "table.parquet"


def featureset_payload(fs: Any, prefix: str = "") -> tuple[dict, dict, Any]:
    """``(json_files, items, table)`` of a FeatureSet, names prefixed by ``prefix``.

    Used by FeatureSet artifacts and by Experiment artifacts (one prefix per FeatureSet);
    the caller writes ``table`` to ``prefix + TABLE_FILE`` with :func:`write_table`.
    """
    state = fs.get_state()
    items = {prefix + "splits": dict(state.get("splits", {})),
             prefix + "scalers": list(state.get("scalers", []))}
    return {prefix + CONFIG_FILE: config_envelope(fs)}, items, state["table"]


def write_table(table: Any, directory: Path, prefix: str = "") -> None:
    """Write an Arrow table as ``prefix + table.parquet`` under ``directory``."""
    target = directory / (prefix + TABLE_FILE)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)


def read_featureset_files(art: Artifact, cls: type | None, *, overwrite: bool,
                          allow_packaged_code: bool, prefix: str = "") -> Any:
    """Rebuild a FeatureSet written by :func:`write_featureset_files`."""
    cfg = read_envelope(art, prefix + CONFIG_FILE)
    fs_cls = get_registered(cfg.get("class", ""), module=cfg.get("module"),
                            allow_packaged_code=allow_packaged_code)
    if cls is not None and not issubclass(fs_cls, cls):
        raise ConfigError(f"{str(art.path)!r} holds a {fs_cls.__name__}, not a {cls.__name__}")
    try:
        table = pq.read_table(art.file(prefix + TABLE_FILE))
    except OSError as e:
        raise CheckpointError(
            f"{str(art.path)!r}: cannot read {prefix + TABLE_FILE!r}: {e}") from e
    config = cfg["config"]
    splits = art.restore(prefix + "splits")
    # Checkpointed dicts come back key-sorted; the config keeps the split order.
    order = [k for k in config.get("splits", []) if k in splits]
    splits = {k: splits[k] for k in order + sorted(set(splits) - set(order))}
    state = {"table": table, "splits": splits, "scalers": art.restore(prefix + "scalers")}
    ctx = ExperimentContext.get_active()
    # Seed 001: without overwrite a reloaded node whose id is taken gets a fresh id.
    keep_id = overwrite or not ctx.has_node(node_id=config.get("node_id"))
    with registration_scope(overwrite):
        return fs_cls.from_config(config, state=state, keep_id=keep_id,
                                  allow_packaged_code=allow_packaged_code)


def save_featureset(fs: Any, path: str | Path, *, overwrite: bool = False,
                    show_progress: bool = False, progress_file: Any = None) -> Path:
    """Atomically write a FeatureSet artifact (kind ``"featureset"``).

    Example:
        >>> import tempfile, pathlib
        >>> from modjax.data.featureset import FeatureSet
        >>> fs = FeatureSet.from_dict("cells", {"v": [1.0, 2.0], "y": [0.5, 0.7]},
        ...                           feature_keys="v", target_keys="y", register=False)
        >>> p = fs.save(pathlib.Path(tempfile.mkdtemp()) / "cells")
        >>> FeatureSet.load(p).get_targets()[:, 0].tolist()
        [0.5, 0.7]
    """
    check_progress_args(show_progress, what="save")
    json_files, items, table = featureset_payload(fs)
    with io_progress(show_progress, f"save FeatureSet {fs.label!r}", file=progress_file):
        return write_artifact(path, "featureset", items=items, json_files=json_files,
                              writer=lambda gen: write_table(table, gen),
                              extra={"label": fs.label, "n_samples": int(table.num_rows)},
                              overwrite=overwrite)


def load_featureset(cls: type, path: str | Path, *, overwrite: bool = False,
                    allow_packaged_code: bool = False, show_progress: bool = False,
                    progress_file: Any = None) -> Any:
    """Read a FeatureSet artifact written by :func:`save_featureset`."""
    check_progress_args(show_progress, what="load")
    with io_progress(show_progress, f"load FeatureSet {str(path)!r}", file=progress_file):
        art = open_artifact(path, kind="featureset")
        with ExperimentContext.get_active().all_or_nothing():
            fs = read_featureset_files(art, cls, overwrite=overwrite,
                                       allow_packaged_code=allow_packaged_code)
    log_event("loaded FeatureSet %r from %r (%d samples, splits %s)", fs.label, str(path),
              fs.n_samples, list(fs.available_splits))
    return fs
