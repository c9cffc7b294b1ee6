"""Column naming and Arrow <-> numpy conversion for FeatureSets.

A FeatureSet column is named ``domain.key.rep`` (``features.voltage.raw``). Per-sample
arrays are stored as (nested) fixed-size list columns, so a column of ``n`` samples of
shape ``(1, 16)`` converts to a numpy array ``(n, 1, 16)`` by reading the flat child
buffer and reshaping: no per-row Python loop and, for primitive types without nulls,
no copy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "DOMAINS",
    "REPS",
    "REP_RAW",
    "REP_TRANSFORMED",
    "SAMPLE_UUIDS",
    "column_name",
    "parse_column",
    "to_arrow_array",
    "column_to_numpy",
    "sample_shape_of_type",
]

DOMAIN_FEATURES, DOMAIN_TARGETS, DOMAIN_TAGS = "features", "targets", "tags"
DOMAINS: tuple[str, ...] = (DOMAIN_FEATURES, DOMAIN_TARGETS, DOMAIN_TAGS)
REP_RAW, REP_TRANSFORMED = "raw", "transformed"
REPS: tuple[str, ...] = (REP_RAW, REP_TRANSFORMED)
SAMPLE_UUIDS = "sample_uuids"

_KEY_RE = re.compile(r"^[^.\s][^.]*$")


def check_key(key: Any, *, what: str = "key") -> str:
    """Validate a column key (no dots: dots separate domain, key and rep)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"{what} {key!r} is not a valid column key: expected a non-empty string without "
            "dots or leading whitespace (dots separate domain.key.rep)")
    return key


def check_domain(domain: Any) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {list(DOMAINS)}")
    return domain


def check_rep(rep: Any) -> str:
    if rep not in REPS:
        raise ValueError(f"unknown representation {rep!r}; expected one of {list(REPS)}")
    return rep


def column_name(domain: str, key: str, rep: str = REP_RAW) -> str:
    """The full column name ``domain.key.rep``.

    Example:
        >>> column_name("features", "voltage")
        'features.voltage.raw'
    """
    return f"{check_domain(domain)}.{check_key(key)}.{check_rep(rep)}"


def parse_column(name: str) -> tuple[str, str, str]:
    """Split ``domain.key.rep`` into its three parts.

    Raises:
        ValueError: ``name`` does not follow the convention.

    Example:
        >>> parse_column("targets.soh.transformed")
        ('targets', 'soh', 'transformed')
    """
    parts = name.split(".")
    if len(parts) != 3 or parts[0] not in DOMAINS or parts[2] not in REPS or not parts[1]:
        raise ValueError(
            f"column {name!r} does not follow 'domain.key.rep' with domain in {list(DOMAINS)} "
            f"and rep in {list(REPS)}")
    return parts[0], parts[1], parts[2]


# ---------------------------------------------------------------------------- arrow <-> numpy
def sample_shape_of_type(typ: pa.DataType) -> tuple[int, ...]:
    """Per-sample shape encoded by (nested) fixed-size list types; ``()`` for scalars."""
    shape: list[int] = []
    while pa.types.is_fixed_size_list(typ):
        shape.append(typ.list_size)
        typ = typ.value_type
    return tuple(shape)


def _leaf_type(typ: pa.DataType) -> pa.DataType:
    while pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        typ = typ.value_type
    return typ


def _numpy_to_arrow(arr: np.ndarray) -> pa.Array:
    """(n, *shape) numeric array -> nested FixedSizeListArray without row loops."""
    n, shape = arr.shape[0], arr.shape[1:]
    flat_np = np.ascontiguousarray(arr).reshape(-1)
    if np.shares_memory(flat_np, arr) and arr.flags.writeable:
        # the table must not change when the caller later edits their array; read-only
        # input is shared as is
        flat_np = flat_np.copy()
    if flat_np.dtype.kind in "iuf" and flat_np.dtype.byteorder in "=|":
        # wrap the numpy buffer directly: no per-value scan
        flat = pa.Array.from_buffers(pa.from_numpy_dtype(flat_np.dtype), flat_np.size,
                                     [None, pa.py_buffer(flat_np)])
    else:
        flat = pa.array(flat_np)
    for size in reversed(shape):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    if len(flat) != n:  # zero-sized trailing dims
        raise ValueError(f"cannot store samples of shape {shape}")
    return flat


def _list_to_fixed(values: pa.Array, name: str) -> pa.Array:
    """Variable-length list column (e.g. read from Parquet) -> nested fixed-size lists.

    Every level's row lengths come from its offsets buffer and the values from its flat
    child, so equal-length samples convert without a per-row Python loop.

    Raises:
        ValueError: null entries, or samples of different lengths (ragged).
    """
    sizes: list[int] = []
    per_sample = 1  # entries of the current level that belong to one sample
    arr = values
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        if arr.null_count:
            raise ValueError(f"column {name!r} has {arr.null_count} null list entries; fill "
                             "them first")
        lengths = np.diff(_primitive_to_numpy(arr.offsets))  # offsets honour slicing
        if lengths.size and (lengths != lengths[0]).any():
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            level = "" if not sizes else f" at depth {len(sizes)}"
            raise ValueError(
                f"column {name!r} is ragged{level}: sample 0 has a list of length "
                f"{int(lengths[0])} but sample {bad // per_sample} has one of length "
                f"{int(lengths[bad])}; every sample of a column must have the same shape")
        if not lengths.size or not lengths[0]:
            raise ValueError(f"column {name!r} is a list column with no values (empty or "
                             "zero-length samples), so its per-sample shape is unknown")
        size = int(lengths[0])
        sizes.append(size)
        per_sample *= size
        arr = arr.flatten()
    out = to_arrow_array(arr, name=name)
    for size in reversed(sizes):
        out = pa.FixedSizeListArray.from_arrays(out, size)
    return out


def to_arrow_array(values: Any, *, name: str) -> pa.Array:
    """Convert one column of sample values to an Arrow array.

    Numeric values (a numpy array, or a list of scalars / equally shaped lists) become a
    primitive or nested fixed-size list array; strings become a string array.

    Args:
        values: ``n`` samples: numpy array, list, pyarrow array.
        name: the column name (for error messages).

    Returns:
        A ``pa.Array`` of length ``n``.

    Raises:
        ValueError: samples of different shapes (ragged), or an unsupported value type.

    Example:
        >>> to_arrow_array([[1.0, 2.0], [3.0, 4.0]], name="x").type
        FixedSizeListType(fixed_size_list<item: double>[2])
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            return _list_to_fixed(values, name)
        return values
    if not isinstance(values, np.ndarray) and hasattr(values, "__array__"):
        values = np.asarray(values)  # jax arrays, pandas Series, ... without a Python loop
    if isinstance(values, np.ndarray) and values.dtype != object:
        return _ndarray_to_arrow(values, name)
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        try:
            values = list(values)
        except TypeError:
            raise ValueError(
                f"column {name!r}: expected a sequence of per-sample values, got "
                f"{type(values).__name__}") from None
    seq = list(values)
    if not seq:
        return pa.array([], type=pa.float64())
    try:  # the common case: one C-level conversion, no per-row Python work
        arr = np.asarray(seq)
    except ValueError:
        arr = None
    if arr is not None and arr.dtype != object:
        return to_arrow_array(arr, name=name)
    return _objects_to_arrow(seq, name)


def _ndarray_to_arrow(values: np.ndarray, name: str) -> pa.Array:
    """A numeric or string (non-object) numpy column -> Arrow."""
    if values.ndim == 0:
        raise ValueError(f"column {name!r}: expected one value per sample, got a scalar")
    if values.dtype.kind == "c":
        raise TypeError(f"column {name!r}: complex values ({values.dtype}) cannot be stored; "
                        "give the real and imaginary parts as two columns")
    if values.dtype.kind in "US":
        if values.ndim != 1:
            raise ValueError(f"column {name!r}: string columns hold one string per sample, "
                             f"got shape {values.shape}")
        return pa.array(values.astype(str), type=pa.string())
    return _numpy_to_arrow(values)


def _objects_to_arrow(seq: list[Any], name: str) -> pa.Array:
    """Samples numpy could not stack: strings, or the error naming mixed types / ragged shapes."""
    if all(isinstance(v, str) for v in seq):
        return pa.array(seq, type=pa.string())
    if any(isinstance(v, str) for v in seq):
        raise ValueError(f"column {name!r} mixes strings and non-strings")
    first = np.shape(seq[0])
    bad = next((i for i, v in enumerate(seq) if np.shape(v) != first), None)
    if bad is not None:
        raise ValueError(
            f"column {name!r} is ragged: sample 0 has shape {first} but sample {bad} has shape "
            f"{np.shape(seq[bad])}; every sample of a column must have the same shape")
    raise ValueError(
        f"column {name!r}: cannot convert values of type {type(seq[0]).__name__} "
        "to a numeric or string column")


def column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow column -> numpy ``(n, *sample_shape)`` (strings -> object array).

    Fixed-size lists are unwrapped through their flat child buffer (``flatten`` honours
    slicing offsets), so there is no per-row loop.

    Example:
        >>> import pyarrow as pa
        >>> a = to_arrow_array(np.arange(6.0).reshape(3, 2), name="x")
        >>> column_to_numpy(pa.chunked_array([a])).shape
        (3, 2)
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(col)
    shape = sample_shape_of_type(col.type)
    leaf = col
    for _ in shape:
        leaf = leaf.flatten()
    if pa.types.is_string(leaf.type) or pa.types.is_large_string(leaf.type):
        out = np.asarray(leaf.to_pylist(), dtype=object)
    elif pa.types.is_list(leaf.type) or pa.types.is_large_list(leaf.type):
        raise ValueError("variable-length list columns are not supported; use fixed-size lists")
    else:
        if leaf.null_count:
            raise ValueError(f"column has {leaf.null_count} null values; fill them first")
        out = _primitive_to_numpy(leaf)
    return out.reshape((n, *shape))


def _primitive_to_numpy(leaf: pa.Array) -> np.ndarray:
    """Numeric Arrow array -> numpy view of its value buffer (zero-copy).

    Reading the buffer directly also keeps pyarrow's ``to_numpy`` from importing pandas
    (seconds on a loaded machine) the first time a column is read.
    """
    typ = leaf.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        dtype = np.dtype(typ.to_pandas_dtype())
        if not len(leaf):  # some producers leave an empty array without a value buffer
            return np.zeros(0, dtype=dtype)
        return np.frombuffer(leaf.buffers()[1], dtype=dtype, count=len(leaf),
                             offset=leaf.offset * dtype.itemsize)
    if pa.types.is_boolean(typ) and len(leaf):  # bit-packed: unpack (a copy)
        bits = np.unpackbits(np.frombuffer(leaf.buffers()[1], dtype=np.uint8), bitorder="little")
        return bits[leaf.offset:leaf.offset + len(leaf)].astype(bool)
    return leaf.to_numpy(zero_copy_only=False)


def leaf_dtype(typ: pa.DataType) -> np.dtype | None:
    """numpy dtype of a column's scalar values (None for strings)."""
    leaf = _leaf_type(typ)
    if pa.types.is_string(leaf) or pa.types.is_large_string(leaf):
        return None
    return np.dtype(leaf.to_pandas_dtype())
