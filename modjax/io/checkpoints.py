"""Checkpoint and artifact files: Orbax pytrees + a JSON manifest, written atomically.

An artifact generation directory (see :mod:`modjax.io.atomic`) holds::

    manifest.json        checkpoint_version, kind, created, meta, structural_hash,
                         items (one pytree spec each), files (relative path -> bytes)
    arrays/              one Orbax checkpoint holding every pytree item ("variables",
                         "opt_state", ...), each readable alone
    *.json, *.parquet    whatever the writer adds (configs, FeatureSet tables)

The manifest is written last and lists every file with its size and sha256 digest;
opening an artifact checks both (and that no file is a symbolic link or named outside
the generation), so a truncated, partially copied or edited checkpoint is reported by
file name instead of loading wrong values.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from modjax.errors import CheckpointError, ConfigError
from modjax.io import async_writer, multiprocess
from modjax.io.atomic import MANIFEST_FILE, atomic_artifact, read_pointer, resolve_artifact
from modjax.io.progress import add_steps, advance, human_bytes, log_event
from modjax.io.pytree_store import TreeSpec, restore_tree, save_trees

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "Artifact",
    "write_artifact",
    "open_artifact",
    "save_pytree",
    "load_pytree",
    "checkpoint_version",
    "checkpoint_kind",
    "file_digest",
    "DIGEST_ALGORITHM",
]

#: Version of the manifest layout written by this modjax.
CHECKPOINT_FORMAT_VERSION = 1
#: Digest recorded per file in the manifest (``"digests"``) and checked on open.
DIGEST_ALGORITHM = "sha256"
_CHUNK = 1 << 22


def file_digest(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in 4 MiB chunks).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = f.write_bytes(b"abc")
        >>> file_digest(f)[:16]
        'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _file_records(gen: Path) -> tuple[dict[str, int], dict[str, str]]:
    sizes, digests = {}, {}
    paths = [Path(dirpath) / f for dirpath, _dirs, fnames in os.walk(gen) for f in fnames]
    add_steps(len(paths))
    for p in paths:
        if p.is_symlink():
            raise CheckpointError(f"refusing to record symbolic link {str(p)!r} in an "
                                  "artifact (it would point outside it)")
        rel = p.relative_to(gen).as_posix()
        sizes[rel] = p.stat().st_size
        digests[rel] = file_digest(p)
        advance(1, f"digest {rel}")
    return sizes, digests


def _check_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON-serialisable (no arrays or objects): {e}") from e
    return value


def write_artifact(path: str | Path, kind: str, *, items: Mapping[str, Any] | None = None,
                   json_files: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                   extra: Mapping[str, Any] | None = None, hash_item: str | None = None,
                   structural_hash: str | None = None,
                   writer: Callable[[Path], None] | None = None,
                   overwrite: bool = False, blocking: bool = True) -> Path | Future:
    """Write an artifact atomically.

    Args:
        path: the artifact directory.
        kind: artifact kind (``"graph_checkpoint"``, ``"graph"``, ``"featureset"``, ...).
        items: named pytrees written with Orbax.
        json_files: ``{file name: JSON data}`` written beside the arrays.
        meta: user metadata (JSON-serialisable) stored in the manifest.
        extra: more JSON data for the manifest (e.g. frozen paths).
        hash_item: item whose structural hash is the artifact's ``structural_hash``.
        structural_hash: explicit hash (``migrate_checkpoint`` writes a zeroed one).
        writer: called with the generation directory to add other files (Parquet).
        overwrite: replace an existing artifact at ``path``.
        blocking: with False, the items are frozen now (NumPy leaves copied, JAX arrays
            shared) and the write runs on the background checkpoint thread (see
            :mod:`modjax.io.async_writer`).

    Returns:
        ``path`` as a Path, or with ``blocking=False`` a Future resolving to it.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "ckpt"
        >>> _ = write_artifact(p, "demo", items={"tree": {"w": np.arange(3.0)}}, meta={"step": 3})
        >>> a = open_artifact(p)
        >>> a.meta, a.restore("tree")["w"].tolist()
        ({'step': 3}, [0.0, 1.0, 2.0])
    """
    path = Path(path)
    items = dict(items or {})
    meta = _check_json(dict(meta or {}), f"meta of {str(path)!r}")
    extra = _check_json(dict(extra or {}), f"manifest data of {str(path)!r}")
    json_files = dict(json_files or {})
    for name, data in json_files.items():
        _check_json(data, f"{name} of {str(path)!r}")
    if multiprocess.active() and not blocking:
        # Orbax's multi-process save is collective: it runs now in every process, and a
        # caller that asked for a background write gets a finished Future
        return multiprocess.finished(
            write_artifact, path, kind, items=items, json_files=json_files, meta=meta,
            extra=extra, hash_item=hash_item, structural_hash=structural_hash, writer=writer,
            overwrite=overwrite)
    if multiprocess.active():  # processes other than 0 only write shards
        items = multiprocess.storable_items(items)
        if multiprocess.is_follower():
            return multiprocess.follow_artifact_write(path, items)
    if not blocking:
        if path.exists() and not overwrite:
            # Fail now, in the caller, rather than later on the background thread.
            raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
        return async_writer.submit_for(
            path, write_artifact, path, kind, items=async_writer.snapshot_tree(items),
            json_files=json_files, meta=meta, extra=extra, hash_item=hash_item,
            structural_hash=structural_hash, writer=writer, overwrite=overwrite)
    # Writes to one path happen in the order they were asked for: an earlier background
    # write of this path finishes first (its failure is its own caller's to see).
    async_writer.wait_path(path)
    with multiprocess.ArtifactLead() as lead, atomic_artifact(path, kind, overwrite=overwrite) as gen:
        lead.share(gen)
        add_steps(len(items) + len(json_files) + (writer is not None))
        specs = save_trees(gen / "arrays", items)
        advance(len(items), "arrays")
        for name, data in json_files.items():
            (gen / name).parent.mkdir(parents=True, exist_ok=True)
            (gen / name).write_text(json.dumps(data, indent=1, sort_keys=True))
            advance(1, name)
        if writer is not None:
            writer(gen)
            advance(1, "tables")
        files, digests = _file_records(gen)
        if structural_hash is None and hash_item is not None:
            structural_hash = specs[hash_item]["hash"]
        manifest = {
            "checkpoint_version": CHECKPOINT_FORMAT_VERSION,
            "kind": kind,
            "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "meta": meta,
            "structural_hash": structural_hash,
            "items": specs,
            "files": files,
            "digest_algorithm": DIGEST_ALGORITHM,
            "digests": digests,
            "extra": extra,
        }
        (gen / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    log_event("saved %s %r: %d pytree items, %d files, %s", kind, str(path), len(items),
              len(files), human_bytes(sum(files.values())))
    return path


class Artifact:
    """A complete artifact opened for reading (manifest checked, file sizes verified).

    Attributes:
        path: the artifact directory.
        directory: its current generation directory.
        manifest: the parsed manifest.
    """

    def __init__(self, path: Path, directory: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.directory = directory
        self.manifest = manifest

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def extra(self) -> dict[str, Any]:
        return self.manifest.get("extra", {})

    @property
    def structural_hash(self) -> str | None:
        return self.manifest.get("structural_hash")

    @property
    def items(self) -> dict[str, TreeSpec]:
        return self.manifest.get("items", {})

    def spec(self, item: str) -> TreeSpec:
        if item not in self.items:
            raise CheckpointError(
                f"checkpoint {str(self.path)!r} has no {item!r} entry; it holds {sorted(self.items)}")
        return self.items[item]

    def restore(self, item: str, target: Any = None, *, template: Any = None) -> Any:
        """Restore pytree ``item`` (onto ``target``'s structure and shardings if given,
        reusing ``template``'s custom node types otherwise)."""
        tree = restore_tree(self.directory / "arrays", self.spec(item), target, item=item,
                            template=template, where=f"checkpoint {str(self.path)!r} item {item!r}")
        advance(1, item)
        return tree

    def read_json(self, name: str) -> Any:
        f = self.directory / name
        try:
            return json.loads(f.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"artifact {str(self.path)!r} is missing {name!r}") from None
        except ValueError as e:
            raise CheckpointError(f"{str(f)!r} is not valid JSON: {e}") from e

    def file(self, name: str) -> Path:
        return self.directory / name


def open_artifact(path: str | Path, *, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open a complete artifact for reading.

    Raises:
        CheckpointError: missing, not an artifact, of another kind, a future version,
            or truncated (a file is missing or has a different size than recorded).
    """
    path = Path(path)
    # Read-your-writes: a checkpoint submitted with blocking=False is complete first.
    async_writer.wait_pending(raise_errors=False)
    gen = resolve_artifact(path, kind=kind)
    try:
        manifest = json.loads((gen / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the manifest of {str(path)!r}: {e}") from e
    version = manifest.get("checkpoint_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {version!r}; this modjax reads up to "
            f"{CHECKPOINT_FORMAT_VERSION}: upgrade modjax to load it")
    # steps of a load: every file verified, then (at most) every pytree item read
    add_steps(sum(len(v) for v in (manifest.get("files"), manifest.get("items"))
                  if isinstance(v, dict)))
    _verify_files(path, gen, manifest)
    return Artifact(path, gen, manifest)


def _manifest_name(path: Path, rel: Any) -> str:
    parts = Path(rel).parts if isinstance(rel, str) else ()
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: the manifest names file {rel!r:.200}, which is not a "
            "relative path inside the artifact")
    return rel


def _verify_files(path: Path, gen: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists inside ``gen`` with its recorded size and digest; no
    symbolic links anywhere in the generation."""
    files = manifest.get("files", {})
    digests = manifest.get("digests")
    algo = manifest.get("digest_algorithm", DIGEST_ALGORITHM)
    if not isinstance(files, dict) or (digests is not None and (
            not isinstance(digests, dict) or algo != DIGEST_ALGORITHM)):
        raise CheckpointError(f"checkpoint {str(path)!r}: the manifest's file list is malformed")
    for dirpath, dirs, fnames in os.walk(gen):
        for f in (*dirs, *fnames):
            rel = (Path(dirpath) / f).relative_to(gen).as_posix()
            if (Path(dirpath) / f).is_symlink():
                raise CheckpointError(
                    f"checkpoint {str(path)!r} contains a symbolic link {rel!r}; artifacts "
                    "never link outside themselves")
            if digests is not None and f in fnames and rel != MANIFEST_FILE and rel not in files:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} contains file {rel!r}, which its manifest does "
                    "not list (added after the save)")
    for rel, size in files.items():
        f = gen / _manifest_name(path, rel)
        if not f.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is truncated: file {rel!r} is missing")
        actual = f.stat().st_size
        if actual != size:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is truncated or corrupt: file {rel!r} has {actual} "
                f"bytes, the manifest recorded {size}")
        if digests is not None and file_digest(f) != digests.get(rel):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupt: file {rel!r} does not match its "
                f"{DIGEST_ALGORITHM} digest in the manifest (edited or damaged on disk)")
        advance(1, f"verify {rel}")


def save_pytree(path: str | Path, tree: Any, *, meta: Mapping[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Checkpoint one pytree (variables, optimizer state, anything with array leaves).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t"
        >>> _ = save_pytree(p, {"a": np.ones(2), "b": [1, None]})
        >>> load_pytree(p)["b"]
        [1, None]
    """
    return write_artifact(path, "pytree", items={"tree": tree}, meta=meta, hash_item="tree",
                          overwrite=overwrite)


def load_pytree(path: str | Path, target: Any = None) -> Any:
    """Read a tree written by :func:`save_pytree` (see :func:`restore_tree` for ``target``)."""
    return open_artifact(path, kind="pytree").restore("tree", target)


def checkpoint_version(path: str | Path) -> int:
    """The manifest format version of a checkpoint (to decide whether to migrate).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = save_pytree(pathlib.Path(tempfile.mkdtemp()) / "t", {"w": np.ones(1)})
        >>> checkpoint_version(p)
        1
    """
    return int(open_artifact(path).manifest["checkpoint_version"])


def checkpoint_kind(path: str | Path) -> str:
    """The kind recorded in an artifact's pointer (``"graph_checkpoint"``, ...)."""
    return str(read_pointer(path)["kind"])
