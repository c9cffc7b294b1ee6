"""Output formats of the data accessors (``fmt=``), with ModularML's spellings.

modjax's own formats are ``"numpy"`` (stacked ``(n, n_keys, *s)``), ``"jax"`` and
``"dict"``. The ModularML names (``"np"``, ``"dict_numpy"``, ``"pandas"``, ``"torch"``,
``"dict_list"``, ``"list"``, ...) and its ``DataFormat`` enum are accepted as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["DataFormat", "normalize_format", "convert_columns", "STACKED_FORMATS"]


class DataFormat(Enum):
    """Accessor output formats (ModularML's enum names, modjax's ``JAX`` added).

    Example:
        >>> DataFormat("dict_numpy").name, normalize_format("np")
        ('DICT_NUMPY', <DataFormat.NUMPY: 'numpy'>)
    """

    PANDAS = "pandas"
    NUMPY = "numpy"
    JAX = "jax"
    DICT = "dict"
    DICT_NUMPY = "dict_numpy"
    DICT_LIST = "dict_list"
    DICT_JAX = "dict_jax"
    DICT_TORCH = "dict_torch"
    LIST = "list"
    TORCH = "torch.tensor"


_ALIASES = {
    "pandas": DataFormat.PANDAS, "pd": DataFormat.PANDAS, "df": DataFormat.PANDAS,
    "numpy": DataFormat.NUMPY, "np": DataFormat.NUMPY,
    "jax": DataFormat.JAX, "jnp": DataFormat.JAX,
    "dict": DataFormat.DICT, "dict_numpy": DataFormat.DICT_NUMPY,
    "dict_list": DataFormat.DICT_LIST, "dict_jax": DataFormat.DICT_JAX,
    "dict_torch": DataFormat.DICT_TORCH, "list": DataFormat.LIST,
    "torch": DataFormat.TORCH, "torch.tensor": DataFormat.TORCH,
}

STACKED_FORMATS = (DataFormat.NUMPY, DataFormat.JAX, DataFormat.TORCH, DataFormat.LIST)


def normalize_format(fmt: str | DataFormat) -> DataFormat:
    """The :class:`DataFormat` named by ``fmt`` (enum or any accepted spelling).

    Args:
        fmt: a DataFormat or a name such as ``"numpy"``, ``"dict_numpy"``, ``"pandas"``.

    Returns:
        The enum member.

    Raises:
        ValueError: unknown name (the message lists the accepted ones).

    Example:
        >>> normalize_format("pd")
        <DataFormat.PANDAS: 'pandas'>
    """
    if isinstance(fmt, DataFormat):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in _ALIASES:
        return _ALIASES[fmt.lower()]
    raise ValueError(f"unknown fmt {fmt!r}; expected one of {sorted(_ALIASES)}")


def is_format_name(value: Any) -> bool:
    """True when ``value`` names a format (used to accept ModularML's positional fmt)."""
    return isinstance(value, DataFormat) or (isinstance(value, str) and value.lower() in _ALIASES)


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is an optional extra
        raise ImportError("fmt='torch' needs the optional torch extra installed") from e
    return torch


def convert_columns(columns: Mapping[str, np.ndarray], fmt: DataFormat, *,
                    stacked: np.ndarray | None = None) -> Any:
    """Convert per-column arrays (``{name: (n, *s)}``) to a keyed format.

    Args:
        columns: column name -> numpy array, in output order.
        fmt: a keyed format (dict flavours, pandas) or a stacked one when ``stacked``
            (the ``(n, n_keys, *s)`` array) is given.
        stacked: the stacked array for the stacked formats.

    Returns:
        The converted data.

    Example:
        >>> convert_columns({"a": np.array([1, 2])}, DataFormat.DICT_LIST)
        {'a': [1, 2]}
    """
    if fmt in (DataFormat.DICT, DataFormat.DICT_NUMPY):
        return dict(columns)
    if fmt == DataFormat.DICT_LIST:
        return {k: v.tolist() for k, v in columns.items()}
    if fmt == DataFormat.DICT_JAX:
        import jax.numpy as jnp
        return {k: jnp.asarray(v) for k, v in columns.items()}
    if fmt == DataFormat.DICT_TORCH:
        torch = _torch()
        return {k: torch.as_tensor(v) for k, v in columns.items()}
    if fmt == DataFormat.PANDAS:
        import pandas as pd
        return pd.DataFrame({k: (list(v) if v.ndim > 1 else v) for k, v in columns.items()})
    if stacked is None:
        raise ValueError(f"format {fmt.name} needs the stacked array")
    if fmt == DataFormat.TORCH:
        return _torch().as_tensor(stacked)
    if fmt == DataFormat.LIST:
        return stacked.tolist()
    return stacked
