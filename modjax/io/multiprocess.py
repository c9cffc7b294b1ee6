"""Artifact writes from every process of a multi-process JAX job (Orbax's multi-process path).

In a job of several processes, Orbax's save is collective: every process calls it on
the same directory, writes the shards of global arrays its devices hold, and process 0
writes replicated NumPy data and Orbax's metadata. modjax's atomic generation
directory, JSON files and manifest are written by process 0 alone:

1. process 0 opens the new generation (``atomic_artifact``) and broadcasts its path
   (or, if opening failed, an error marker so the others raise instead of waiting);
2. every process writes the arrays there with Orbax;
3. process 0 writes the rest and publishes the generation; a barrier then holds every
   process until the artifact is visible.

In one process every function here is a no-op, so the single-process path is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import jax
import numpy as np

from modjax.errors import CheckpointError

__all__ = ["active", "is_follower", "ArtifactLead", "follow_artifact_write", "storable_items",
           "finished"]

_FAILED = "\x00failed"


def active() -> bool:
    """Whether this program is one of several JAX processes.

    Example:
        >>> active()
        False
    """
    return jax.process_count() > 1


def is_follower() -> bool:
    """A process other than 0 of a multi-process job (it does not publish artifacts).

    Example:
        >>> is_follower()
        False
    """
    return active() and jax.process_index() != 0


def storable_items(items: dict[str, Any]) -> dict[str, Any]:
    """Items as Orbax's multi-process save takes them: arrays living on one local device
    become NumPy (written once, by process 0); global arrays stay as they are (each
    process writes its shards).

    Example:
        >>> storable_items({"t": {"a": np.ones(1)}})["t"]["a"].tolist()
        [1.0]
    """
    if not active():
        return items

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array) and x.is_fully_addressable and \
                not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(x)
        return x
    return jax.tree.map(leaf, items)


class ArtifactLead:
    """Process 0's side: share the generation directory, then wait for everyone at exit.

    Use as ``with ArtifactLead() as lead, atomic_artifact(...) as gen: lead.share(gen)``;
    if opening the generation fails, the followers get an error marker and raise too.

    Example:
        >>> with ArtifactLead() as lead:
        ...     lead.share(Path("/tmp/x"))
    """

    def __init__(self) -> None:
        self._shared = False

    def __enter__(self) -> ArtifactLead:
        return self

    def share(self, gen: Path) -> None:
        from modjax.distributed import broadcast_text
        if active():
            broadcast_text(str(Path(gen).absolute()))
        self._shared = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from modjax.distributed import barrier, broadcast_text
        if not active():
            return
        if not self._shared:
            broadcast_text(_FAILED)
            return
        if exc_type is None:
            barrier("modjax-artifact-published")


def follow_artifact_write(path: Path, items: dict[str, Any]) -> Path:
    """A follower's side of :func:`modjax.io.checkpoints.write_artifact`: write its array
    shards into process 0's new generation and wait until it is published.

    Raises:
        CheckpointError: process 0 could not open the generation (its own error says why).
    """
    from modjax.distributed import barrier, broadcast_text
    from modjax.io.pytree_store import save_trees
    gen = broadcast_text(None)
    if gen == _FAILED:
        raise CheckpointError(f"process 0 could not start writing {str(path)!r}; see its error")
    save_trees(Path(gen) / "arrays", storable_items(items))
    barrier("modjax-artifact-published")
    return Path(path)


def finished(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Run ``write(*args, blocking=True, **kwargs)`` now and return a finished Future of
    its result (or its exception), for callers that asked for a background write.

    Example:
        >>> finished(lambda x, blocking: (x, blocking), 3).result()
        (3, True)
    """
    fut: Future = Future()
    try:
        fut.set_result(write(*args, blocking=True, **kwargs))
    except Exception as e:  # the caller reads it from the Future, as from a background write
        fut.set_exception(e)
    return fut
