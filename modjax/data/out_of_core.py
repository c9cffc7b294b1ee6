"""FeatureSets that stay on disk: memory-mapped Arrow IPC files, read chunk by chunk.

:func:`from_arrow_ipc` maps a file in modjax's column layout with ``pa.memory_map``
(zero copy: the table's buffers are the file's pages, counted by the OS as file-backed
memory it may drop, not as the process's anonymous memory). A file in any other layout,
and every Parquet file or dataset (:func:`from_parquet`), is first rewritten batch by
batch into such a file (``cache_path``), so memory stays bounded by one batch.

Columns of an out-of-core FeatureSet are :class:`ChunkedColumn`\\ s: indexing one reads
only the selected rows, chunk by chunk, and never combines a whole column. Views,
splits, samplers and the DeviceStore's byte-budget streaming therefore touch only the
rows they use; ``fit_transform`` fits and applies scalers chunk by chunk
(:mod:`modjax.data.chunked_scaling`) and :func:`fit_scaler_chunked` fits one scaler
object on one column.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from modjax.data.access import as_key_list
from modjax.data.featureset import FeatureSet
from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    SAMPLE_UUIDS,
    column_name,
    column_to_numpy,
    to_arrow_array,
)
from modjax.data.uuids import new_uuid_array

__all__ = ["ChunkedColumn", "OutOfCoreFeatureSet", "from_arrow_ipc", "from_parquet",
           "write_arrow_ipc", "fit_scaler_chunked"]


class ChunkedColumn:
    """A read-only, numpy-indexable column over an Arrow ``ChunkedArray``.

    ``col[rows]`` (ints, slices, int or bool arrays) returns a NumPy array holding only
    those rows; each chunk is viewed in place (zero copy for fixed-width data) and only
    the selected rows are copied out.

    Example:
        >>> c = ChunkedColumn(pa.chunked_array([[0.0, 1.0], [2.0, 3.0, 4.0]]))
        >>> c.shape, c[[4, 0, 2]].tolist(), c[1:4].tolist()
        ((5,), [4.0, 0.0, 2.0], [1.0, 2.0, 3.0])
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._col = column
        lengths = [len(c) for c in column.chunks]
        self._offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        head = column_to_numpy(column.slice(0, min(1, len(column))).combine_chunks()) \
            if len(column) else column_to_numpy(pa.chunked_array([], type=column.type))
        self.dtype = head.dtype
        self.shape = (len(column), *head.shape[1:])
        self.ndim = len(self.shape)
        self.flags = np.zeros(0).flags  # read as "not writeable" by callers that check
        self.flags.writeable = False

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_chunks(self) -> int:
        return self._col.num_chunks

    def _chunk(self, i: int) -> np.ndarray:
        return column_to_numpy(self._col.chunk(i))

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for a column of {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((idx.size, *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self._offsets, idx, side="right") - 1
        # positions grouped by chunk with one sort: the temporaries are O(rows), not
        # O(rows x chunks) as a mask per chunk would be
        order = np.argsort(which, kind="stable")
        chunks, starts = np.unique(which[order], return_index=True)
        for c, lo, hi in zip(chunks, starts, [*starts[1:], idx.size]):
            pos = order[lo:hi]
            out[pos] = self._chunk(int(c))[idx[pos] - self._offsets[c]]
        return out

    def __getitem__(self, key: Any) -> Any:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:
                part = self._col.slice(start, max(0, stop - start))
                out = (np.concatenate([column_to_numpy(c) for c in part.chunks])
                       if part.num_chunks else np.empty((0, *self.shape[1:]), self.dtype))
            else:
                out = self._rows(np.arange(start, stop, step))
        elif isinstance(key, int | np.integer):
            out = self._rows(np.asarray([key]))[0]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            out = self._rows(idx.astype(np.int64).ravel()).reshape(
                (*idx.shape, *self.shape[1:]))
        return out[(slice(None), *rest)] if rest else out

    def iter_chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The column as NumPy pieces of at most ``rows`` rows (default: Arrow's chunks)."""
        for c in range(self.num_chunks):
            arr = self._chunk(c)
            step = rows or max(len(arr), 1)
            for s in range(0, len(arr), step):
                yield arr[s:s + step]

    def astype(self, dtype: Any) -> np.ndarray:
        """The whole column as a NumPy array of ``dtype`` (an explicit whole read, as
        ``np.asarray(col)``; e.g. looking samples up by uuid needs every uuid)."""
        return self[:].astype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        # explicit whole-column reads (np.asarray(col)) still work: they are the caller's
        # choice; modjax's own readers index rows instead
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"ChunkedColumn(shape={self.shape}, dtype={self.dtype}, chunks={self.num_chunks})"


class OutOfCoreFeatureSet(FeatureSet):
    """A FeatureSet whose columns are read row by row from a memory-mapped table.

    Everything a FeatureSet does works; reads of a view or split return only its rows.
    ``fit_transform`` and undoing transforms work chunk by chunk and map the
    ``transformed`` columns from a file written beside the data
    (:mod:`modjax.data.chunked_scaling`). Build one with :func:`from_arrow_ipc` or
    :func:`from_parquet`.
    """

    #: where transformed columns are written (None: the temporary directory)
    _spill_dir: Path | None = None

    def _numpy_column(self, name: str) -> Any:
        arr = self._np_cache.get(name)
        if arr is None:
            if self._table.schema.get_field_index(name) < 0:
                raise KeyError(f"FeatureSet {self.label!r} has no column {name!r}")
            arr = ChunkedColumn(self._table.column(name))
            self._np_cache[name] = arr
        return arr


def _layout(feature_keys: Any, target_keys: Any, tag_keys: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for dom, keys in ((DOMAIN_FEATURES, feature_keys), (DOMAIN_TARGETS, target_keys),
                      (DOMAIN_TAGS, tag_keys)):
        for k in as_key_list(keys) or []:
            if k in names:
                raise ValueError(f"key {k!r} is listed in two domains; a key belongs to one")
            names[k] = column_name(dom, k)
    if not as_key_list(feature_keys):
        raise ValueError("give at least one feature key")
    return names


def write_arrow_ipc(batches: Iterable[pa.RecordBatch], path: str | Path, *,
                    feature_keys: str | Sequence[str], target_keys: Any = None,
                    tag_keys: Any = None) -> Path:
    """Write record batches (plain columns) as an Arrow IPC file in modjax's layout, one
    batch at a time (memory: one batch), adding ``sample_uuids``.

    Args:
        batches: record batches with the named columns (e.g. ``ParquetFile.iter_batches``).
        path: the file to write.
        feature_keys, target_keys, tag_keys: which plain columns go to which domain.

    Returns:
        ``path``.

    Raises:
        KeyError: a key is not a column of the batches (the columns are named).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.arrow"
        >>> b = pa.record_batch({"x": [1.0, 2.0], "y": [0.0, 1.0]})
        >>> _ = write_arrow_ipc([b], p, feature_keys="x", target_keys="y")
        >>> from_arrow_ipc("w", p, register=False).get_features().ravel().tolist()
        [1.0, 2.0]
    """
    names = _layout(feature_keys, target_keys, tag_keys)
    path = Path(path)
    writer = None
    try:
        for batch in batches:
            missing = [k for k in names if k not in batch.schema.names]
            if missing:
                raise KeyError(f"write_arrow_ipc: columns {missing} are not in the data; it has "
                               f"{batch.schema.names}")
            arrays = [to_arrow_array(batch.column(k), name=n) for k, n in names.items()]
            uuids = (batch.column(SAMPLE_UUIDS) if SAMPLE_UUIDS in batch.schema.names
                     else new_uuid_array(batch.num_rows))
            out = pa.record_batch(arrays + [uuids], names=[*names.values(), SAMPLE_UUIDS])
            if writer is None:
                writer = ipc.new_file(str(path), out.schema)
            writer.write_batch(out)
            del out, arrays, batch
            pa.default_memory_pool().release_unused()  # keep the pool at one batch
        if writer is None:
            raise ValueError(f"write_arrow_ipc: no record batches to write to {str(path)!r}")
    finally:
        if writer is not None:
            writer.close()
    return path


def _is_modjax_layout(schema: pa.Schema) -> bool:
    from modjax.data.schema import parse_column
    if SAMPLE_UUIDS not in schema.names:
        return False
    try:
        for n in schema.names:
            if n != SAMPLE_UUIDS:
                parse_column(n)
    except ValueError:
        return False
    return True


def from_arrow_ipc(label: str, path: str | Path, *, feature_keys: Any = None,
                   target_keys: Any = None, tag_keys: Any = None, memory_map: bool = True,
                   cache_path: str | Path | None = None, register: bool = True
                   ) -> OutOfCoreFeatureSet:
    """An out-of-core FeatureSet over an Arrow IPC file.

    A file in modjax's layout (``domain.key.rep`` columns and ``sample_uuids``) is used
    as it is; a file of plain columns is rewritten batch by batch to ``cache_path``
    (default: ``<path>.modjax.arrow``) naming the keys.

    Args:
        label: FeatureSet label.
        path: the ``.arrow`` (IPC file format) path.
        feature_keys, target_keys, tag_keys: plain columns per domain (plain files only).
        memory_map: map the file (True) instead of reading it into memory.
        cache_path: where a plain file's modjax-layout copy goes.
        register: register in the active ExperimentContext.

    Returns:
        The FeatureSet.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "plain.arrow"
        >>> t = pa.table({"x": np.arange(6.0), "y": np.zeros(6)})
        >>> with ipc.new_file(str(p), t.schema) as w:
        ...     for b in t.to_batches(max_chunksize=2):
        ...         w.write_batch(b)
        >>> fs = from_arrow_ipc("ipc", p, feature_keys="x", target_keys="y", register=False)
        >>> fs.take([5, 0]).get_features().ravel().tolist()
        [5.0, 0.0]
    """
    path = Path(path)
    source = pa.memory_map(str(path)) if memory_map else pa.OSFile(str(path))
    reader = ipc.open_file(source)
    if not _is_modjax_layout(reader.schema):
        if feature_keys is None:
            raise ValueError(f"from_arrow_ipc: {str(path)!r} has plain columns "
                             f"{reader.schema.names}; name feature_keys (and targets/tags)")
        target = Path(cache_path) if cache_path is not None else path.with_name(
            path.name + ".modjax.arrow")
        write_arrow_ipc((reader.get_batch(i) for i in range(reader.num_record_batches)),
                        target, feature_keys=feature_keys, target_keys=target_keys,
                        tag_keys=tag_keys)
        return from_arrow_ipc(label, target, memory_map=memory_map, register=register)
    table = reader.read_all()
    fs = OutOfCoreFeatureSet(label, table, register=register)
    fs._spill_dir = path.parent  # transformed columns are written beside the data
    return fs


def from_parquet(label: str, path_or_dataset: Any, *, feature_keys: str | Sequence[str],
                 target_keys: Any = None, tag_keys: Any = None,
                 cache_path: str | Path | None = None, batch_rows: int = 16384,
                 register: bool = True) -> OutOfCoreFeatureSet:
    """An out-of-core FeatureSet over a Parquet file, directory or ``pyarrow.dataset``.

    The data is decoded batch by batch (``batch_rows`` rows at a time) into a
    memory-mapped Arrow IPC file at ``cache_path`` (default ``<path>.modjax.arrow``; a
    dataset object needs one), which the FeatureSet then reads row by row. Local
    Parquet files are memory-mapped while they are read, so the memory the conversion
    holds is about ten times one batch whatever the file's size.

    Args:
        label: FeatureSet label.
        path_or_dataset: a path (file or directory) or a ``pyarrow.dataset.Dataset``.
        feature_keys, target_keys, tag_keys: plain columns per domain.
        cache_path: where the memory-mapped copy goes.
        batch_rows: rows decoded at a time (bounds memory: about 22 MiB at the
            default for 17 float32 columns).
        register: register in the active ExperimentContext.

    Returns:
        The FeatureSet.

    Example:
        >>> import tempfile, pyarrow.parquet as pq
        >>> p = Path(tempfile.mkdtemp()) / "d.parquet"
        >>> pq.write_table(pa.table({"x": np.arange(5.0), "y": np.ones(5)}), p, row_group_size=2)
        >>> fs = from_parquet("pq", p, feature_keys="x", target_keys="y", register=False)
        >>> fs.n_samples, fs.take([4]).get_features().ravel().tolist()
        (5, [4.0])
    """
    import pyarrow.dataset as ds
    if isinstance(path_or_dataset, ds.Dataset):
        dataset = path_or_dataset
        if cache_path is None:
            raise ValueError("from_parquet: give cache_path for a dataset object")
    else:
        dataset = ds.dataset(str(path_or_dataset), format="parquet")
    if cache_path is None:
        cache_path = Path(str(path_or_dataset).rstrip("/") + ".modjax.arrow")
    columns = [*(as_key_list(feature_keys) or []), *(as_key_list(target_keys) or []),
               *(as_key_list(tag_keys) or [])]
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise KeyError(f"from_parquet: columns {missing} are not in the data; it has "
                       f"{dataset.schema.names}")
    batches = _parquet_batches(dataset, columns, batch_rows)
    write_arrow_ipc(batches, cache_path, feature_keys=feature_keys, target_keys=target_keys,
                    tag_keys=tag_keys)
    pa.default_memory_pool().release_unused()
    return from_arrow_ipc(label, cache_path, register=register)


def _parquet_batches(dataset: Any, columns: list[str], batch_rows: int
                     ) -> Iterator[pa.RecordBatch]:
    # File by file, without pre-buffering, read-ahead or threads. A local file is
    # memory-mapped: its pages are then file-backed and reclaimable, where a buffered
    # read copies every page into anonymous memory that the allocator keeps.
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    for fragment in dataset.get_fragments():
        local = isinstance(fragment.filesystem, pafs.LocalFileSystem)
        source = pa.memory_map(fragment.path) if local else \
            fragment.filesystem.open_input_file(fragment.path)
        with source, pq.ParquetFile(source, pre_buffer=False) as f:
            for batch in f.iter_batches(batch_size=batch_rows, columns=columns,
                                        use_threads=False):
                yield batch
                del batch
                pa.default_memory_pool().release_unused()


def fit_scaler_chunked(scaler: Any, view: Any, domain: str, key: str, *,
                       chunk_rows: int = 65536, rep: str | None = "raw") -> Any:
    """Fit a built-in scaler's statistics reading ``chunk_rows`` rows at a time.

    Standard (Chan's pairwise mean/variance merge), MinMax and MaxAbs scalers are
    supported; others need all rows at once and raise.

    Args:
        scaler: ``StandardScaler``, ``MinMaxScaler`` or ``MaxAbsScaler`` (fitted in place).
        view: a FeatureSet, view or split.
        domain, key: the column.
        chunk_rows: rows per read.
        rep: representation read (default raw).

    Returns:
        The fitted scaler (equal to ``scaler.fit`` on all rows up to float rounding).

    Example:
        >>> from modjax.data.scalers import StandardScaler
        >>> fs = FeatureSet.from_dict("fc", {"x": np.arange(10.0), "y": np.zeros(10)}, "x", "y",
        ...                           register=False)
        >>> s = fit_scaler_chunked(StandardScaler(), fs, "features", "x", chunk_rows=3)
        >>> float(s.mean_[0]), round(float(s.scale_[0]), 6)
        (4.5, 2.872281)
    """
    from modjax.data import scalers as sc
    from modjax.data.chunked_scaling import MomentAccumulator, _set_moments
    if type(scaler) not in (sc.StandardScaler, sc.MinMaxScaler, sc.MaxAbsScaler):
        raise TypeError(f"fit_scaler_chunked: {type(scaler).__name__} needs all rows at once; "
                        "FeatureSet.fit_transform fits it, gathering only the fitted rows "
                        "of the keys it scales")
    acc = MomentAccumulator()
    n_rows = view.n_samples
    for s in range(0, n_rows, chunk_rows):
        acc.add(_chunk_2d(view, domain, key, rep, s, min(n_rows, s + chunk_rows)))
    if acc.mean is None:
        raise ValueError(f"fit_scaler_chunked: {domain}.{key} has no rows")
    _set_moments(scaler, acc)
    return scaler


def _chunk_2d(view: Any, domain: str, key: str, rep: str | None, start: int,
              stop: int) -> np.ndarray:
    part = view.take(np.arange(start, stop))
    x = part.get_domain(domain, key, rep=rep, fmt="dict")[key]
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)

