"""Types of the data accessors' ``fmt=`` names and of what each returns.

The accessors (``get_features``, ``get_targets``, ``get_tags``, ``get_domain``,
``get_data``) are overloaded on these literals, so a type checker knows that
``fs.get_features()`` is a ``numpy.ndarray``, ``fs.get_features(fmt="pandas")`` a
``pandas.DataFrame`` and ``fs.get_features(fmt="dict")`` a ``dict[str, numpy.ndarray]``.
jax, pandas and torch are imported for type checking only (the data layer does not
import them at run time unless such a format is asked for).

Example:
    >>> from typing import get_args
    >>> get_args(PandasFormat)
    ('pandas', 'pd', 'df')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union

import numpy as np

if TYPE_CHECKING:
    import jax
    import pandas as pd
    import torch

    from modjax.data.formats import DataFormat

__all__ = ["NumpyFormat", "JaxFormat", "DictFormat", "DictJaxFormat", "DictListFormat",
           "DictTorchFormat", "PandasFormat", "ListFormat", "TorchFormat", "FormatName",
           "KeySelection", "AccessorData"]

#: stacked ``(n, n_keys, *s)`` NumPy array (the default)
NumpyFormat: TypeAlias = Literal["numpy", "np"]
#: the stacked array on the device
JaxFormat: TypeAlias = Literal["jax", "jnp"]
#: ``{key: (n, *s) numpy array}``
DictFormat: TypeAlias = Literal["dict", "dict_numpy"]
DictJaxFormat: TypeAlias = Literal["dict_jax"]
DictListFormat: TypeAlias = Literal["dict_list"]
DictTorchFormat: TypeAlias = Literal["dict_torch"]
PandasFormat: TypeAlias = Literal["pandas", "pd", "df"]
#: the stacked array as nested Python lists
ListFormat: TypeAlias = Literal["list"]
TorchFormat: TypeAlias = Literal["torch", "torch.tensor"]
#: any format: a name above or a :class:`~modjax.data.formats.DataFormat`
FormatName: TypeAlias = Union[str, "DataFormat"]  # noqa: UP007 - a forward reference
#: one key, several keys, or all (None)
KeySelection: TypeAlias = Union[str, Sequence[str], None]  # noqa: UP007

#: what an accessor returns for a format only known at run time
AccessorData: TypeAlias = Union[  # noqa: UP007
    np.ndarray, "jax.Array", dict[str, np.ndarray], dict[str, "jax.Array"],
    dict[str, list[Any]], dict[str, "torch.Tensor"], "pd.DataFrame", list[Any], "torch.Tensor"]
