"""What a save, load or restore shows while it runs and says when it is done.

A persistence call with ``show_progress=True`` draws one tqdm bar for the whole event,
whose steps are the parts of the artifact: the pytree items and files written, then
each file digested into the manifest (on save); each file verified against its digest,
then each pytree item read (on load/restore). The bar is kept in a context variable, so
the layers below (:func:`~modjax.io.checkpoints.write_artifact`, ``open_artifact``,
``Artifact.restore``) advance it without passing it around, and a restore that calls
another one (an Experiment restoring its graph's checkpoint) keeps drawing the same bar.

Every finished event logs one line at INFO on the ``modjax.io`` logger (quiet by
default: the ``modjax`` logger is at WARNING)::

    import logging
    logging.basicConfig()
    logging.getLogger("modjax").setLevel(logging.INFO)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modjax.logger import get_logger

__all__ = ["io_progress", "add_steps", "advance", "log_event", "check_progress_args",
           "human_bytes"]

_log = get_logger("io")
_BAR: contextvars.ContextVar[Any] = contextvars.ContextVar("modjax_io_bar", default=None)


def check_progress_args(show_progress: Any, blocking: bool = True, *, what: str) -> None:
    """``show_progress`` must be a bool, and a background write has no bar to draw.

    Raises:
        TypeError: ``show_progress`` is not a bool.
        ValueError: ``show_progress=True`` with ``blocking=False``.

    Example:
        >>> check_progress_args(False, False, what="save_checkpoint")
    """
    if not isinstance(show_progress, bool):
        raise TypeError(f"{what}: show_progress must be True or False, got {show_progress!r}")
    if show_progress and not blocking:
        raise ValueError(f"{what}: show_progress=True needs blocking=True (a write on the "
                         "background thread draws no bar); pass one or the other")


@contextlib.contextmanager
def io_progress(show: bool, desc: str, *, file: Any = None) -> Iterator[Any]:
    """One bar for the persistence event inside the block (none unless ``show``).

    A block nested in another event's block draws on the outer bar. When the block ends
    the bar's total is set to the steps done (a restore may skip an item it does not
    need, e.g. an optimizer state the graph has no optimizer for) and the bar closes.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with io_progress(True, "demo", file=out) as bar:
        ...     add_steps(2); advance(1, "a"); advance(1, "b")
        >>> bar.n, bar.total
        (2, 2)
    """
    outer = _BAR.get()
    if not show or outer is not None:
        yield outer
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=desc, unit="part", leave=False, file=file, dynamic_ncols=True)
    token = _BAR.set(bar)
    try:
        yield bar
    finally:
        _BAR.reset(token)
        bar.total = bar.n
        bar.refresh()
        bar.close()


def add_steps(n: int) -> None:
    """Announce ``n`` more steps on the active bar (no-op without one)."""
    bar = _BAR.get()
    if bar is not None and n:
        bar.total = (bar.total or 0) + int(n)
        bar.refresh()


def advance(n: int = 1, what: str | None = None) -> None:
    """Mark ``n`` steps done on the active bar, naming the part just finished."""
    bar = _BAR.get()
    if bar is None:
        return
    if what is not None:
        bar.set_postfix_str(what, refresh=False)
    bar.update(int(n))


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    Example:
        >>> human_bytes(512), human_bytes(3 * 2**20)
        ('512 B', '3.0 MiB')
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def log_event(message: str, *args: Any) -> None:
    """One INFO line on the ``modjax.io`` logger (formatted lazily)."""
    _log.info(message, *args)


def where(path: str | Path) -> str:
    """A path as shown in the log lines and bars."""
    return repr(str(path))
