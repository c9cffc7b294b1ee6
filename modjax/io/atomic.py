"""Atomic artifact directories: a save is either complete or invisible.

Every modjax artifact (checkpoint, saved graph, FeatureSet, Experiment) is a directory::

    path/
      MODJAX.json        pointer: {"format": "modjax", "kind", "format_version", "current"}
      gen-<time>-<hex>/  one complete generation: manifest.json, arrays/ (Orbax), ...

A save writes a new generation directory, fsyncs every file in it, then atomically
replaces ``MODJAX.json`` (``os.replace`` of a fsynced temp file) to point at it, and
only then deletes older generations. A first save builds the whole directory as a
hidden sibling and renames it into place. Killing the process at any moment therefore
leaves either the previous artifact or the new one, never a half-written one that
:func:`resolve_artifact` would accept: loaders only follow the pointer.

Writers are serialised by an exclusive ``fcntl.flock`` on the directory holding the
artifact, across threads and processes alike: a second writer of a path waits for the
first instead of deleting the generation the first one just published. The pointer
may only name a generation directory inside the artifact, never a path elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modjax.errors import CheckpointError

__all__ = [
    "POINTER_FILE",
    "MANIFEST_FILE",
    "ARTIFACT_FORMAT_VERSION",
    "atomic_artifact",
    "resolve_artifact",
    "read_pointer",
    "is_artifact",
    "fsync_tree",
    "artifact_lock",
    "remove_artifact",
    "confined_path",
    "LOCK_TIMEOUT",
]

POINTER_FILE = "MODJAX.json"
MANIFEST_FILE = "manifest.json"
#: Version of the on-disk layout; a larger one on load is an error.
ARTIFACT_FORMAT_VERSION = 1
#: Seconds a writer waits for another writer of the same path before giving up.
LOCK_TIMEOUT = 600.0
_GEN_NAME = re.compile(r"gen-\d{20}-[0-9a-f]{8}")


def confined_path(base: str | Path, name: str | Path, *, what: str) -> Path:
    """``base / name`` for a relative ``name`` that stays inside ``base``.

    Args:
        base: the directory names are relative to.
        name: a relative name (sub-directories allowed).
        what: names the caller in the error.

    Returns:
        The joined path.

    Raises:
        CheckpointError: ``name`` is absolute, empty, has a ``..`` part, or leads out of
            ``base`` through a symlink.

    Example:
        >>> confined_path("/ck", "run1/epoch3", what="checkpoint").as_posix()
        '/ck/run1/epoch3'
        >>> confined_path("/ck", "../x", what="checkpoint")
        Traceback (most recent call last):
        ...
        modjax.errors.CheckpointError: checkpoint name '../x' must be a relative name inside '/ck' (no absolute path, no '..')
    """
    text = str(name)
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or text.startswith("~") \
            or not parts:
        raise CheckpointError(f"{what} name {text!r} must be a relative name inside "
                              f"{str(base)!r} (no absolute path, no '..')")
    out = Path(base) / text
    real_base = os.path.realpath(base)
    real = os.path.realpath(out)
    if os.path.commonpath([real_base, real]) != real_base:
        raise CheckpointError(f"{what} name {text!r} leads out of {str(base)!r} (to "
                              f"{real!r}) through a symbolic link")
    return out


@contextlib.contextmanager
def artifact_lock(path: str | Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive writer lock of artifact ``path`` (waits for another writer).

    The lock is an ``fcntl.flock`` on the directory that holds ``path`` (so it exists
    before a first save and leaves no file behind); it is released when the block exits
    or the process dies, so a killed writer never blocks others. Writers of artifacts in
    one directory take turns, whichever thread or process they run in.

    Raises:
        CheckpointError: another writer held the lock for longer than ``timeout``
            seconds (default :data:`LOCK_TIMEOUT`); the message names the path.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a"
        >>> with artifact_lock(p):
        ...     pass
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = LOCK_TIMEOUT if timeout is None else timeout
    fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                raise CheckpointError(
                    f"another writer has held the lock of {str(path.parent)!r} for over "
                    f"{limit:g} s while saving {str(path)!r}; two writers must not save to "
                    "one path at once")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def remove_artifact(path: str | Path) -> bool:
    """Delete an artifact so that it is never seen half-deleted.

    The directory is first renamed to a hidden sibling (atomic: ``path`` disappears at
    once, so :func:`is_artifact` and checkpoint listings stop seeing it), then deleted.
    A kill between the two leaves only a hidden ``.<name>.deleting-*`` directory.

    Returns:
        Whether an artifact was removed (a path that is not one is left alone).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "a"
        >>> with atomic_artifact(d, "demo") as gen:
        ...     _ = (gen / "manifest.json").write_text("{}")
        >>> remove_artifact(d), d.exists()
        (True, False)
    """
    path = Path(path)
    with artifact_lock(path):
        if not is_artifact(path):
            return False
        trash = path.parent / f".{path.name}.deleting-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        _fsync_path(path.parent)
        shutil.rmtree(trash, ignore_errors=True)
    return True


def _fsync_path(p: Path) -> None:
    # Directories are fsynced too so that renames/creations inside them are durable.
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if p.is_dir() else 0)
    try:
        fd = os.open(p, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data files are synced
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (bottom-up)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for f in files:
            _fsync_path(Path(dirpath) / f)
        _fsync_path(Path(dirpath))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def read_pointer(path: str | Path) -> dict[str, Any]:
    """The parsed ``MODJAX.json`` of an artifact directory.

    Raises:
        CheckpointError: ``path`` does not exist, is not a modjax artifact, the pointer
            is unreadable, or it was written by a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no modjax artifact at {str(path)!r}: the path does not exist")
    ptr = path / POINTER_FILE
    if not path.is_dir() or ptr.is_symlink() or not ptr.is_file():
        raise CheckpointError(
            f"{str(path)!r} is not a modjax artifact (expected a directory holding {POINTER_FILE}); "
            "it may be an unfinished save or another program's file")
    try:
        data = json.loads(ptr.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {str(ptr)!r}: {e}") from e
    if not isinstance(data, dict) or data.get("format") != "modjax" or "current" not in data:
        raise CheckpointError(f"{str(ptr)!r} is not a modjax pointer file")
    version = data.get("format_version")
    if not isinstance(version, int) or version > ARTIFACT_FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} was written with artifact format version {version!r}; this modjax "
            f"reads versions up to {ARTIFACT_FORMAT_VERSION}: upgrade modjax to load it")
    return data


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` is a complete modjax artifact directory."""
    try:
        read_pointer(path)
    except CheckpointError:
        return False
    return True


def resolve_artifact(path: str | Path, *, kind: str | tuple[str, ...] | None = None) -> Path:
    """The directory of the current, complete generation of an artifact.

    Args:
        path: the artifact directory given to ``save``.
        kind: expected artifact kind(s) (e.g. ``"graph_checkpoint"``); None accepts any.

    Returns:
        The generation directory holding ``manifest.json`` and the data.

    Raises:
        CheckpointError: missing, incomplete or of the wrong kind.
    """
    path = Path(path)
    ptr = read_pointer(path)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if ptr.get("kind") not in kinds:
            raise CheckpointError(
                f"{str(path)!r} holds a {ptr.get('kind')!r} artifact, expected "
                f"{' or '.join(repr(k) for k in kinds)}")
    current = ptr["current"]
    if not isinstance(current, str) or not _GEN_NAME.fullmatch(current):
        # a pointer naming "../other/gen-..." or an absolute path is never followed
        raise CheckpointError(
            f"{str(path / POINTER_FILE)!r} names generation {current!r}, which is not a "
            "generation directory of this artifact (expected 'gen-<time>-<hex>')")
    gen = path / current
    if gen.is_symlink() or not gen.is_dir():
        raise CheckpointError(
            f"artifact {str(path)!r} is incomplete: generation {current!r} is missing or is "
            "not a plain directory")
    if (gen / MANIFEST_FILE).is_symlink() or not (gen / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"artifact {str(path)!r} is incomplete: {str(gen / MANIFEST_FILE)!r} is missing")
    return gen


def _new_generation_name() -> str:
    return f"gen-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_artifact(path: str | Path, kind: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Write an artifact atomically: yield an empty generation directory to fill.

    On normal exit the generation is fsynced and published; on an exception (or a kill)
    nothing is published and the previous artifact at ``path`` is untouched.

    Args:
        path: the artifact directory.
        kind: artifact kind recorded in the pointer (checked by :func:`resolve_artifact`).
        overwrite: replace an existing artifact; without it an existing path is an error.

    Yields:
        The generation directory to write ``manifest.json`` and data into.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        CheckpointError: ``path`` exists but is not a modjax artifact (never deleted).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "a"
        >>> with atomic_artifact(d, "demo") as gen:
        ...     _ = (gen / "manifest.json").write_text("{}")
        >>> resolve_artifact(d, kind="demo").name.startswith("gen-")
        True
    """
    path = Path(path)
    with artifact_lock(path):
        yield from _write_locked(path, kind, overwrite=overwrite)


def _write_locked(path: Path, kind: str, *, overwrite: bool) -> Iterator[Path]:
    exists = path.exists()
    if exists:
        if not overwrite:
            raise FileExistsError(
                f"{str(path)!r} already exists; pass overwrite=True to replace it")
        empty_dir = path.is_dir() and not any(path.iterdir())
        if not empty_dir and not (path / POINTER_FILE).is_file():
            raise CheckpointError(
                f"refusing to overwrite {str(path)!r}: it exists and is not a modjax artifact "
                f"(no {POINTER_FILE}); remove it yourself or choose another path")
        if empty_dir:
            path.rmdir()
            exists = False
    gen_name = _new_generation_name()
    pointer = {"format": "modjax", "format_version": ARTIFACT_FORMAT_VERSION, "kind": kind,
               "current": gen_name}
    if not exists:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        gen = staging / gen_name
        gen.mkdir(parents=True)
        try:
            yield gen
            _write_json_atomic(staging / POINTER_FILE, pointer)
            fsync_tree(staging)
            os.rename(staging, path)
            _fsync_path(path.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return
    gen = path / gen_name
    gen.mkdir()
    try:
        yield gen
        fsync_tree(gen)
        _write_json_atomic(path / POINTER_FILE, pointer)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    # Published: older generations (and leftovers of killed saves) are garbage now.
    # Safe under the writer lock: no other writer has a generation in progress here.
    for child in path.iterdir():
        if child.name != gen_name and child.name != POINTER_FILE:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            elif child.name.startswith(f".{POINTER_FILE}.tmp-"):
                child.unlink(missing_ok=True)
