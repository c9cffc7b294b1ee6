"""Background checkpoint writes: snapshot now, write (atomically) on one worker thread.

``snapshot_tree`` freezes a pytree at the call: JAX arrays are immutable (modjax never
donates buffers), so they are kept by reference at no cost; mutable NumPy arrays are
copied. Training then goes on while the Orbax write (which does the device-to-host
transfer), fsyncs and the pointer swap of :func:`modjax.io.checkpoints.write_artifact`
run on a single background thread. Writes run in submission order;
:func:`wait_pending` blocks until they have finished and re-raises the first failure.
A buffer donated by user code before its write finished makes that write fail (raised
at the wait), never a corrupt checkpoint. Writes are also tracked per path
(:func:`submit_for`): a blocking save of a path first waits for the background writes
of that path (:func:`wait_path`), so saves of one path land in the order they were made.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

__all__ = ["snapshot_tree", "submit", "submit_for", "wait_path", "wait_pending"]

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: list[Future] = []
_by_path: dict[str, list[Future]] = {}
_worker = threading.local()


def snapshot_tree(tree: Any) -> Any:
    """The tree as of now: NumPy leaves copied, immutable JAX arrays shared.

    Example:
        >>> import numpy as np
        >>> a = np.zeros(2)
        >>> snap = snapshot_tree({"a": a})
        >>> a[0] = 1.0
        >>> snap["a"].tolist()
        [0.0, 0.0]
    """
    def copy(x: Any) -> Any:
        return x.copy() if isinstance(x, np.ndarray) else x

    return jax.tree.map(copy, tree)


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modjax-checkpoint")
    return _executor


def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Run ``fn(*args, **kwargs)`` on the checkpoint thread (after earlier submissions)."""
    with _lock:
        fut = _get_executor().submit(_on_worker, fn, *args, **kwargs)
        _pending.append(fut)
    return fut


def _key(path: Any) -> str:
    return os.path.abspath(os.fspath(path))


def _on_worker(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _worker.active = True
    return fn(*args, **kwargs)


def submit_for(path: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """:func:`submit` a write of ``path`` (tracked so that :func:`wait_path` finds it)."""
    with _lock:
        fut = _get_executor().submit(_on_worker, fn, *args, **kwargs)
        _pending.append(fut)
        _by_path.setdefault(_key(path), []).append(fut)
    return fut


def wait_path(path: Any) -> None:
    """Block until every background write of ``path`` submitted so far has finished.

    Failures are not raised here (they belong to whoever waits on that write's future).
    On the checkpoint thread itself this returns at once: its writes run in order.

    Example:
        >>> wait_path("/nonexistent/checkpoint")
    """
    if getattr(_worker, "active", False):
        return
    with _lock:
        todo = list(_by_path.get(_key(path), ()))
    for f in todo:
        f.exception()
    with _lock:
        left = [f for f in _by_path.get(_key(path), ()) if not f.done()]
        if left:
            _by_path[_key(path)] = left
        else:
            _by_path.pop(_key(path), None)


def wait_pending(futures: list[Future] | None = None, *, raise_errors: bool = True) -> None:
    """Block until the given (default: all) background writes finished.

    Args:
        futures: the writes to wait for (default: every pending one).
        raise_errors: re-raise the first failure (readers pass False: they only need
            finished writes, and a failed one never published anything).

    Raises:
        The first exception a finished write raised.
    """
    with _lock:
        todo = list(_pending if futures is None else futures)
    first: BaseException | None = None
    for f in todo:
        exc = f.exception()
        if exc is not None and first is None:
            first = exc
    with _lock:
        _pending[:] = [f for f in _pending if not f.done()]
    if first is not None and raise_errors:
        raise first


@atexit.register
def _drain() -> None:
    # An interpreter exit must not cut a write short (it would only leave garbage, never
    # a corrupt artifact, but the checkpoint the user asked for would be missing).
    with _lock:
        todo = list(_pending)
    for f in todo:
        f.exception()
