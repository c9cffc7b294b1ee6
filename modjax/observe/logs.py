"""Text outputs of the epoch history: CSV export, a human-readable log, durations.

``Observer.export_trends`` / ``write_log`` call these with the trends they resolved;
they are public so a history loaded from disk (``Observer.set_state``) or any
``Trend`` list can be written the same way.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from modjax.observe.trends import Trend

__all__ = ["format_duration", "export_trends", "export_timing_trends", "write_log",
           "write_text_atomic"]


def format_duration(seconds: float) -> str:
    """Format a duration for training logs.

    ``<1s`` -> ``"42ms"``, ``<1m`` -> ``"1.2s"``, ``<1h`` -> ``"2m05s"``,
    otherwise ``"1h02m05s"``. Negative durations print as ``"0ms"``; NaN as ``"?"``.

    Example:
        >>> [format_duration(s) for s in (0.042, 1.23, 125, 3725)]
        ['42ms', '1.2s', '2m05s', '1h02m05s']
    """
    s = float(seconds)
    if math.isnan(s):
        return "?"
    s = max(s, 0.0)
    if s < 1.0:
        return f"{int(round(s * 1000)) if s * 1000 < 999.5 else 999}ms"
    if s < 60.0:
        return f"{s:.1f}s" if s < 59.95 else "59.9s"
    total = int(round(s))
    h, rem = divmod(total, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    return f"{m}m{sec:02d}s"


def write_text_atomic(path: str | PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file and ``os.replace`` (never half-written).

    Raises:
        FileNotFoundError: the parent directory does not exist (names it).
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(p)!r}: directory {str(parent)!r} does not exist")
    tmp = parent / f".{p.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _check(trends: Sequence[Trend], what: str) -> list[Trend]:
    trends = list(trends)
    if not trends:
        raise ValueError(f"{what}: no trends to write")
    for i, t in enumerate(trends):
        if not isinstance(t, Trend):
            raise TypeError(f"{what}: item {i} is {type(t).__name__}, expected Trend")
    names = [t.tag or f"series_{i}" for i, t in enumerate(trends)]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{what}: duplicate tags {dup}")
    return trends


def _fmt(v: float) -> str:
    return repr(float(v))  # shortest string that round-trips exactly


def export_trends(path: str | PathLike, trends: Sequence[Trend]) -> Path:
    """Write trends to CSV: header ``epoch,<tag>,...``, one row per epoch.

    Rows are aligned on each trend's epoch numbers; a tag not flushed at an epoch
    leaves its cell empty. Values are written at full precision.

    Args:
        path: output ``.csv``.
        trends: the series (their ``tag`` names the columns).

    Returns:
        The written path.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> _ = export_trends(os.path.join(d, "m.csv"), [Trend([0.5, 0.25], tag="loss")])
        >>> print(open(os.path.join(d, "m.csv")).read().strip())
        epoch,loss
        1,0.5
        2,0.25
    """
    trends = _check(trends, f"export_trends({str(path)!r})")
    names = [t.tag or f"series_{i}" for i, t in enumerate(trends)]
    rows: dict[int, dict[str, str]] = {}
    for name, t in zip(names, trends):
        for ep, v in zip(t.epochs().tolist(), t.values().tolist()):
            rows.setdefault(ep, {})[name] = _fmt(v)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *names])
    for ep in sorted(rows):
        w.writerow([ep, *(rows[ep].get(n, "") for n in names)])
    return write_text_atomic(path, buf.getvalue())


def export_timing_trends(path: str | PathLike, trends: Sequence[Trend]) -> Path:
    """Write timing trends (seconds) to CSV; same format as :func:`export_trends`."""
    return export_trends(path, trends)


def _fmt_metric(name: str, v: float) -> str:
    if math.isnan(v):
        return f"{name}=nan"
    if v == 0.0:
        return f"{name}=0.0000"
    if abs(v) >= 1e5 or abs(v) < 1e-4:
        return f"{name}={v:.4e}"
    return f"{name}={v:.6f}" if abs(v) < 1e-2 else f"{name}={v:.4f}"


def write_log(
    path: str | PathLike,
    trends: Sequence[Trend],
    total_epochs: int = 0,
    *,
    epoch_durations: Sequence[float] | None = None,
    title: str | None = None,
    now: _dt.datetime | None = None,
) -> Path:
    """Write a human-readable training log, one line per epoch.

    Line format: ``epoch 3  loss=0.4321  acc=0.7856  [1.1s  ETA 1m47s]``. The ETA at
    epoch ``k`` is the mean epoch duration up to ``k`` times ``total_epochs - k``.

    Args:
        path: output file.
        trends: the series to print.
        total_epochs: expected number of epochs; 0 leaves out the ETA.
        epoch_durations: seconds of each epoch (``Observer.epoch_durations()``); when
            omitted the bracketed timing is left out.
        title: written in the header line (the graph's label).
        now: header timestamp (UTC now by default).

    Returns:
        The written path.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "training.log")
        >>> _ = write_log(p, [Trend([0.5, 0.25], tag="loss")], 4, epoch_durations=[2.0, 1.0])
        >>> print(open(p).read().splitlines()[3])
        epoch 2  loss=0.2500  [1.0s  ETA 3.0s]
    """
    trends = _check(trends, f"write_log({str(path)!r})")
    if total_epochs < 0:
        raise ValueError(f"write_log({str(path)!r}): total_epochs must be >= 0, got {total_epochs}")
    names = [t.tag or f"series_{i}" for i, t in enumerate(trends)]
    per_tag = [dict(zip(t.epochs().tolist(), t.values().tolist())) for t in trends]
    durs = list(epoch_durations) if epoch_durations is not None else None
    # every flushed epoch gets a line (with its timing) even if none of these tags moved
    epochs = sorted({ep for d in per_tag for ep in d} | set(range(1, len(durs or ()) + 1)))
    stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = f"# modjax training log{' (' + title + ')' if title else ''} - {stamp}"
    lines = [head, f"# columns: {', '.join(names)}"
             + (f"; {total_epochs} epochs planned" if total_epochs else "")]
    width = len(str(max(epochs[-1] if epochs else 1, total_epochs)))
    for ep in epochs:
        parts = [f"epoch {ep:>{width}}"]
        parts += [_fmt_metric(n, d[ep]) for n, d in zip(names, per_tag) if ep in d]
        if durs is not None and 1 <= ep <= len(durs):
            timing = format_duration(durs[ep - 1])
            if total_epochs:
                mean = sum(durs[:ep]) / ep
                timing += f"  ETA {format_duration(mean * max(total_epochs - ep, 0))}"
            parts.append(f"[{timing}]")
        lines.append("  ".join(parts))
    return write_text_atomic(path, "\n".join(lines) + "\n")
