"""Host side of a DeviceStore: a view's rows gathered into device-dtype arrays.

Each domain of a chunk (or of a whole store) is written straight into one preallocated,
64-byte-aligned array, block by block, so building it allocates the chunk once: no
per-column arrays, no stacked copy, and JAX's CPU backend adopts the aligned buffer on
``device_put`` instead of copying it.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax.data.schema import column_name

__all__ = ["GATHER_BLOCK_ROWS", "HOST_ALIGNMENT", "ChunkRelease", "aligned_empty",
           "aligned_buffer", "gather_domain"]


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


def aligned_buffer(a: np.ndarray) -> np.ndarray | None:
    """The byte buffer behind an array made by :func:`aligned_empty` (None for others).

    Example:
        >>> aligned_buffer(aligned_empty((2, 2), np.float32)).dtype, aligned_buffer(np.zeros(2))
        (dtype('uint8'), None)
    """
    base = a.base
    if isinstance(base, np.ndarray) and base.base is None and base.ndim == 1 \
            and base.dtype == np.uint8 and a.dtype != np.uint8:
        return base
    return None


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


class ChunkRelease:
    """Frees the previous streamed chunk's host buffer before the next one is gathered.

    A host buffer that JAX's CPU backend adopted (zero copy) is released only when
    Python's cyclic garbage collector runs, not when the last array using it is dropped;
    left to chance, several chunks' buffers pile up. So before each chunk a young
    collection runs if the previous buffer is still alive, a full one if that did not
    free it, and none again for this epoch if even that did not (a caller still holds
    the chunk: collecting again would only cost time).
    """

    def __init__(self) -> None:
        self._ref: Any = None
        self._full = True

    def track(self, host_array: np.ndarray) -> None:
        # the byte buffer is what the backend keeps; a slice of a resident column is
        # not ours to free
        buf = aligned_buffer(host_array)
        self._ref = None if buf is None else weakref.ref(buf)

    def wait(self) -> None:
        if self._ref is None or self._ref() is None:
            return
        gc.collect(1)
        if self._ref() is not None and self._full:
            gc.collect()
            self._full = self._ref() is None
        self._ref = None
