"""Host side of a DeviceStore: a view's rows gathered into device-dtype arrays.

Each domain of a chunk (or of a whole store) is written straight into one preallocated,
64-byte-aligned array, block by block, so building it allocates the chunk once: no
per-column arrays, no stacked copy, and JAX's CPU backend adopts the aligned buffer on
``device_put`` instead of copying it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax.data.schema import column_name

__all__ = ["GATHER_BLOCK_ROWS", "HOST_ALIGNMENT", "aligned_empty", "gather_domain"]


def _target_dtype(src: np.dtype, dtype: np.dtype) -> np.dtype:
    if src.kind == "f":
        return np.dtype(dtype)
    if src.kind in "iu":
        return np.dtype(np.int32)
    if src.kind == "b":
        return src
    raise TypeError(f"cannot put dtype {src} on the device")


#: byte alignment at which the CPU backend adopts a host buffer instead of copying it
HOST_ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data starts on a :data:`HOST_ALIGNMENT` boundary.

    NumPy aligns large arrays to 16 bytes only; JAX's CPU backend copies such a buffer on
    ``device_put`` but adopts an aligned one (zero copy), so a chunk gathered into this
    array exists once, not as a host copy plus a device copy.

    Args:
        shape: the array's shape.
        dtype: its dtype.

    Returns:
        The array (a view into a slightly larger byte buffer).

    Example:
        >>> a = aligned_empty((3, 2), np.float32)
        >>> a.shape, a.ctypes.data % HOST_ALIGNMENT
        ((3, 2), 0)
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + HOST_ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % HOST_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


#: rows copied per step when a chunk is gathered: bounds the temporaries of a gather
#: (index block + one column's rows) whatever the chunk or column count
GATHER_BLOCK_ROWS = 8192


def gather_domain(view: Any, domain: str, keys: Sequence[str], rep: str | None,
                  dtype: Any, *, stacked: bool = True) -> np.ndarray:
    """The rows of ``view`` for ``keys``, written straight into one device-dtype array.

    Each column's rows are copied block by block into its slot of a preallocated
    ``(n, n_keys, *s)`` array (``(n, *s)`` for one key with ``stacked=False``), so building
    a chunk allocates the chunk once, not one array per column plus a stacked copy.
    Values equal ``np.stack`` of the columns cast to the device dtype, bit for bit.

    Args:
        view: FeatureSetView whose rows (``view.indices``) are read.
        domain: ``"features"``, ``"targets"`` or ``"tags"``.
        keys: resolved keys of that domain (of one per-sample shape).
        rep: representation (None: transformed when present).
        dtype: floating dtype on the device (ints become int32, bools stay).
        stacked: False to return one key's ``(n, *s)`` column.

    Returns:
        The host array, ready for ``jax.device_put``.

    Raises:
        TypeError: a column's dtype cannot go on the device (strings).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("gd", {"a": [0., 1., 2.], "b": [3, 4, 5], "y": [0.] * 3},
        ...                           ["a", "b"], "y")
        >>> out = gather_domain(fs.take([2, 0]), "features", ["a", "b"], None, np.float32)
        >>> out.dtype, out.tolist()
        (dtype('float32'), [[2.0, 5.0], [0.0, 3.0]])
    """
    n = view.n_samples
    if not keys:
        return np.zeros((n, 0), dtype=dtype)
    src = view.source
    cols = [src._numpy_column(column_name(domain, k, view.resolve_rep(domain, k, rep)))
            for k in keys]
    # np.stack would promote to the columns' common dtype before the device cast; keep
    # that order of casts so values are the in-memory path's exactly
    common = np.result_type(*[c.dtype for c in cols])
    out_dtype = _target_dtype(common, np.dtype(dtype))
    sl = view._contiguous()
    if not stacked or len(cols) == 1:
        if sl is not None and isinstance(cols[0], np.ndarray) and cols[0].dtype == out_dtype:
            # a zero-copy slice of an in-memory column: nothing to gather
            col = cols[0][sl]
            return col if not stacked else col[:, None]
    rows = view.indices
    out = aligned_empty((n, *(() if not stacked else (len(cols),)), *cols[0].shape[1:]),
                        out_dtype)
    base = None if sl is None else (sl.start or 0)
    for j, col in enumerate(cols):
        slot = out if not stacked else out[:, j]
        for lo in range(0, n, GATHER_BLOCK_ROWS):
            hi = min(n, lo + GATHER_BLOCK_ROWS)
            part = col[rows[lo:hi]] if base is None else col[base + lo:base + hi]
            slot[lo:hi] = part if part.dtype == common else part.astype(common)
    return out
