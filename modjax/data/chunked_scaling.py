"""Scalers on out-of-core FeatureSets, chunk by chunk.

An out-of-core FeatureSet's columns are never read whole. ``fs.fit_transform`` then

* fits the scaler over ``SCALE_CHUNK_ROWS`` rows at a time: the built-in Standard,
  MinMax and MaxAbs scalers merge per-chunk statistics (count, mean and sum of squared
  deviations with the pairwise update of Chan, Golub and LeVeque, minimum, maximum);
  scalers that learn nothing read no statistics; scikit-learn objects with
  ``partial_fit`` are fed chunk by chunk. Any other scaler (quantiles, power
  transforms) needs all fitted values at once: only the fitted rows of the selected
  keys are gathered for it;
* transforms every row chunk by chunk and writes the ``transformed`` columns batch by
  batch to an Arrow IPC file beside the data, which the FeatureSet then maps (the file
  is unlinked once mapped where the OS allows it, so nothing is left behind).

Undoing a transform replays the remaining records the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from modjax.data.schema import REP_RAW, REP_TRANSFORMED, column_name, to_arrow_array

__all__ = ["MomentAccumulator", "SCALE_CHUNK_ROWS", "fit_streaming", "is_out_of_core"]

#: rows read, fitted or transformed at a time on an out-of-core FeatureSet
SCALE_CHUNK_ROWS = 65536


def is_out_of_core(fs: Any) -> bool:
    """Whether ``fs`` reads its columns chunk by chunk (never whole)."""
    from modjax.data.out_of_core import OutOfCoreFeatureSet
    return isinstance(fs, OutOfCoreFeatureSet)


class MomentAccumulator:
    """Column-wise count, mean, variance, minimum and maximum over 2-D chunks.

    Chunks are merged with Chan, Golub and LeVeque's pairwise update (the mean and the
    sum of squared deviations of each chunk are computed around the chunk's own mean,
    then combined), which keeps the variance accurate where a running sum of squares
    would cancel. Values are shifted by the first row before anything is summed, so a
    column far from zero relative to its spread (mean 1e6, std 1e-2) merges chunk
    means that differ in their leading digits instead of in their last ones.

    Example:
        >>> acc = MomentAccumulator()
        >>> for part in np.array_split(np.arange(10.0)[:, None], 3):
        ...     acc.add(part)
        >>> acc.n, float(acc.mean[0]), round(float(acc.var[0]), 12), float(acc.hi[0])
        (10, 4.5, 8.25, 9.0)
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        """Merge a ``(rows, columns)`` chunk."""
        k = len(x)
        if k == 0:
            return
        lo, hi = x.min(axis=0), x.max(axis=0)
        if self.shift is None:
            self.shift = x[0].copy()
        x = x - self.shift
        cm = x.mean(axis=0)
        cm2 = ((x - cm) ** 2).sum(axis=0)
        if self._mean is None:
            self.n, self._mean, self.m2, self.lo, self.hi = k, cm, cm2, lo, hi
            return
        tot = self.n + k
        delta = cm - self._mean
        self._mean = self._mean + delta * (k / tot)
        self.m2 = self.m2 + cm2 + delta ** 2 * (self.n * k / tot)
        self.n = tot
        self.lo, self.hi = np.minimum(self.lo, lo), np.maximum(self.hi, hi)

    @property
    def mean(self) -> np.ndarray | None:
        """Column means (None before any row)."""
        return None if self._mean is None else self.shift + self._mean

    @property
    def var(self) -> np.ndarray:
        """Population variance (``ddof=0``, as ``np.var``)."""
        if self._mean is None:
            raise ValueError("MomentAccumulator: no rows were added")
        return self.m2 / self.n


def _builtin_kind(obj: Any) -> str | None:
    """How a built-in scaler is fitted from chunks: by moments, statelessly, or not."""
    from modjax.data import scalers as sc
    if type(obj) in (sc.StandardScaler, sc.MinMaxScaler, sc.MaxAbsScaler):
        return "moments"
    if isinstance(obj, sc._Builtin) and type(obj)._fit is sc._Builtin._fit:
        return "stateless"
    return None


def _set_moments(obj: Any, acc: MomentAccumulator) -> None:
    from modjax.data import scalers as sc
    if type(obj) is sc.StandardScaler:
        kw = obj._kwargs
        obj.mean_ = acc.mean if kw["with_mean"] else np.zeros(len(acc.mean))
        obj.scale_ = sc._nonzero(np.sqrt(acc.var)) if kw["with_std"] else \
            np.ones(len(acc.mean))
    elif type(obj) is sc.MinMaxScaler:
        obj.data_min_, obj.data_max_ = acc.lo, acc.hi
    else:
        obj.max_abs_ = sc._nonzero(np.maximum(np.abs(acc.lo), np.abs(acc.hi)))
    obj.is_fit = True


def fit_streaming(scaler: Any, chunks: Iterator[np.ndarray]) -> str:
    """Fit ``scaler`` (a :class:`~modjax.data.scaling.Scaler`) on 2-D float64 chunks.

    Args:
        scaler: the Scaler wrapper (its object is fitted in place).
        chunks: the fitted rows as ``(rows, columns)`` pieces.

    Returns:
        How it was fitted: ``"moments"``, ``"stateless"``, ``"partial_fit"`` or
        ``"gathered"`` (all chunks joined: the scaler needs every value at once).

    Raises:
        ValueError: no rows.

    Example:
        >>> from modjax.data.scaling import Scaler
        >>> s = Scaler("MinMaxScaler")
        >>> fit_streaming(s, iter([np.array([[1.0], [5.0]]), np.array([[3.0]])]))
        'moments'
        >>> s.transform(np.array([[3.0]])).tolist()
        [[0.5]]
    """
    obj = scaler.scaler
    kind = _builtin_kind(obj)
    if kind == "moments":
        acc = MomentAccumulator()
        for x in chunks:
            acc.add(x)
        if acc.mean is None:
            raise ValueError("fit_streaming: no rows to fit")
        _set_moments(obj, acc)
        return kind
    if kind == "stateless" or callable(getattr(obj, "partial_fit", None)):
        first = None
        for x in chunks:
            if kind == "stateless":
                first = x if first is None else first
            else:
                obj.partial_fit(x)
                first = x
        if first is None:
            raise ValueError("fit_streaming: no rows to fit")
        if kind == "stateless":
            obj.fit(first[:1])  # learns nothing; only marks the scaler fitted
        return kind or "partial_fit"
    parts = list(chunks)
    if not parts:
        raise ValueError("fit_streaming: no rows to fit")
    scaler.fit(np.concatenate(parts))
    return "gathered"


# ---------------------------------------------------------------------------- reading
def _row_blocks(n: int, rows: np.ndarray | None) -> Iterator[np.ndarray]:
    """Positions of ``SCALE_CHUNK_ROWS`` rows at a time (of ``rows``, or of 0..n-1)."""
    total = n if rows is None else len(rows)
    for s in range(0, total, SCALE_CHUNK_ROWS):
        e = min(total, s + SCALE_CHUNK_ROWS)
        yield np.arange(s, e) if rows is None else np.asarray(rows[s:e])


class _FiniteCheck:
    """Counts non-finite rows per key across chunks, so the error names the column and
    the total count exactly as the in-memory check does."""

    def __init__(self, n_keys: int) -> None:
        self.bad_rows = np.zeros(n_keys, dtype=np.int64)

    def add(self, data: np.ndarray) -> None:
        finite = np.isfinite(data.astype(np.float64)).reshape(data.shape[0], len(self.bad_rows),
                                                              -1)
        self.bad_rows += (~finite).any(axis=2).sum(axis=0)

    def raise_if_bad(self, keys: Sequence[str], domain: str, split: str | None,
                     where: str) -> None:
        if not self.bad_rows.any():
            return
        i = int(np.argmax(self.bad_rows > 0))
        raise ValueError(
            f"{where}: column {domain}.{list(keys)[i]} has {int(self.bad_rows[i])} non-finite "
            f"(NaN or inf) value(s) in the rows the scaler is fitted on "
            f"({'all rows' if split is None else f'split {split!r}'}); a scaler fitted on "
            "them would make every value NaN or collapse the range. Clean or drop those "
            "rows first")


# ---------------------------------------------------------------------------- writing
def spill_columns(fs: Any, compute: Callable[[np.ndarray], dict[str, np.ndarray]]
                  ) -> dict[str, pa.ChunkedArray]:
    """Columns computed block by block, written to an Arrow IPC file and mapped back.

    Args:
        fs: the out-of-core FeatureSet (its ``_spill_dir`` names where the file goes).
        compute: ``compute(rows) -> {column name: values of those rows}``.

    Returns:
        ``{column name: memory-mapped column}``.
    """
    spill_dir = getattr(fs, "_spill_dir", None) or tempfile.gettempdir()
    fd, name = tempfile.mkstemp(dir=str(spill_dir), prefix=".modjax-", suffix=".arrow")
    os.close(fd)
    path = Path(name)
    writer = None
    try:
        for rows in _row_blocks(fs.n_samples, None):
            cols = compute(rows)
            batch = pa.record_batch([to_arrow_array(v, name=k) for k, v in cols.items()],
                                    names=list(cols))
            if writer is None:
                writer = ipc.new_file(str(path), batch.schema)
            writer.write_batch(batch)
            del batch, cols
    finally:
        if writer is not None:
            writer.close()
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    try:
        path.unlink()  # the mapping keeps the pages; the name is not needed any more
    except OSError:  # pragma: no cover - an OS that cannot unlink an open file
        pass
    return {n: table.column(n) for n in table.schema.names}


def install_columns(table: pa.Table, columns: dict[str, pa.ChunkedArray]) -> pa.Table:
    """``table`` with ``columns`` added or replaced (no copies)."""
    for name, col in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, col) if i >= 0 else table.append_column(name, col)
    return table


# ---------------------------------------------------------------------------- FeatureSet ops
def fit_transform_chunked(fs: Any, fitted: Any, *, domain: str, keys: list[str],
                          fit_to_split: str | None, merged: tuple[int, ...], where: str) -> Any:
    """:func:`modjax.data.scaling.fit_transform` on an out-of-core FeatureSet.

    Args:
        fs: the FeatureSet.
        fitted: the private Scaler to fit.
        domain, keys: the columns (resolved).
        fit_to_split: the split to fit on (None: all rows).
        merged: the merged axes (normalised).
        where: the error-message prefix.

    Returns:
        The new ScalerRecord (the FeatureSet's table holds the mapped columns).
    """
    from modjax.data.scaling import ScalerRecord, _apply, _out_dtype, flatten
    rows = fs.get_split(fit_to_split).indices if fit_to_split is not None else None
    if rows is not None and len(rows) == 0:
        raise ValueError(f"{where}: split {fit_to_split!r} is empty; nothing to fit")
    check = _FiniteCheck(len(keys))

    def fit_chunks() -> Iterator[np.ndarray]:
        for part in _row_blocks(fs.n_samples, rows):
            data = fs.take(part).get_domain(domain, keys)  # current rep: transforms chain
            check.add(data)
            yield flatten(data.astype(np.float64), merged)
        check.raise_if_bad(keys, domain, fit_to_split, where)

    # the finite check runs inside the generator, so it has seen every row before the
    # fitted statistics are used (a non-finite chunk's statistics are discarded unread)
    with np.errstate(invalid="ignore", over="ignore"):
        fit_streaming(fitted, fit_chunks())
    rec = ScalerRecord(domain, tuple(keys), fitted, fit_to_split, merged or None)
    per_sample = _PerSampleState(fitted)

    def transformed(part: np.ndarray) -> dict[str, np.ndarray]:
        data = fs.take(part).get_domain(domain, keys)
        out = _apply(rec, data.astype(np.float64)).astype(_out_dtype(data))
        per_sample.collect()
        return {column_name(domain, k, REP_TRANSFORMED): out[:, i] for i, k in enumerate(keys)}

    columns = spill_columns(fs, transformed)
    per_sample.finish()
    fs._swap_table(install_columns(fs.table, columns))
    fs._scaler_records.append(rec)
    return rec


class _PerSampleState:
    """A per-sample scaler keeps the statistics of the rows it last transformed (to
    invert them): after a chunked transform that is every row, as in memory."""

    def __init__(self, scaler: Any) -> None:
        from modjax.data.scalers import _PerSample
        self.obj = scaler.scaler if isinstance(scaler.scaler, _PerSample) else None
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def collect(self) -> None:
        if self.obj is not None:
            self.parts.append((self.obj.last_offset_, self.obj.last_scale_))

    def finish(self) -> None:
        if self.obj is not None and self.parts:
            self.obj.last_offset_ = np.concatenate([p[0] for p in self.parts])
            self.obj.last_scale_ = np.concatenate([p[1] for p in self.parts])


def rebuild_domain_chunked(fs: Any, domain: str, records: Sequence[Any], base: pa.Table
                           ) -> pa.Table:
    """``base`` with the ``transformed`` columns of ``domain`` replayed from raw, chunk by
    chunk (the out-of-core twin of the in-memory replay in ``modjax.data.scaling``)."""
    from modjax.data.scaling import _apply, _out_dtype
    recs = [r for r in records if r.domain == domain]
    touched = list(dict.fromkeys(k for r in recs for k in r.keys))  # the in-memory order

    def replay(part: np.ndarray) -> dict[str, np.ndarray]:
        view = fs.take(part)
        values: dict[str, np.ndarray] = {}
        for rec in recs:
            cur = np.stack([values[k] if k in values else
                            view.get_domain(domain, k, rep=REP_RAW)[:, 0] for k in rec.keys],
                           axis=1)
            out = _apply(rec, cur.astype(np.float64)).astype(_out_dtype(cur))
            for i, k in enumerate(rec.keys):
                values[k] = out[:, i]
        return {column_name(domain, k, REP_TRANSFORMED): values[k] for k in touched}

    table = base
    for k in fs.keys_of(domain):
        i = table.schema.get_field_index(column_name(domain, k, REP_TRANSFORMED))
        if k not in touched and i >= 0:
            table = table.remove_column(i)
    return install_columns(table, spill_columns(fs, replay)) if touched else table
