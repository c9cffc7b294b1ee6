"""pandas DataFrame -> per-sample columns (optionally one sample per group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["dataframe_to_columns"]


def dataframe_to_columns(label: str, df: Any, cols: Sequence[str], *,
                         group_by: Sequence[str] | None, sort_by: Sequence[str] | None,
                         array_cols: Sequence[str]) -> dict[str, Any]:
    """Turn DataFrame columns into ``{column: per-sample values}`` for ``from_dict``.

    With ``group_by``, rows are sorted by ``group_by + sort_by`` once (a stable sort) and
    cut at group boundaries; every group must have the same number of rows, so each
    array column reshapes to ``(n_groups, group_len)`` without a per-group loop.
    Non-array columns (tags) keep one value per group when constant within groups.

    Raises:
        KeyError: a column is not in the DataFrame.
        ValueError: groups of different sizes.
    """
    missing = [c for c in [*cols, *(group_by or []), *(sort_by or [])] if c not in df.columns]
    if missing:
        raise KeyError(f"FeatureSet {label!r}: DataFrame has no columns {missing}; it has "
                       f"{list(df.columns)}")
    if not group_by:
        return {c: df[c].to_numpy() for c in cols}
    order = list(group_by) + [s for s in (sort_by or []) if s not in group_by]
    df = df.sort_values(order, kind="stable")
    codes = df.groupby(list(group_by), sort=False, dropna=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    if sizes.size and (sizes != sizes[0]).any():
        bad = int(np.flatnonzero(sizes != sizes[0])[0])
        first_key = df.iloc[starts[0]][list(group_by)].tolist()
        bad_key = df.iloc[starts[bad]][list(group_by)].tolist()
        raise ValueError(
            f"FeatureSet {label!r}: group {bad_key} has {sizes[bad]} rows but group "
            f"{first_key} has {sizes[0]}; grouped samples need equal lengths (array columns "
            "are fixed-size)")
    n, m = len(starts), int(sizes[0]) if sizes.size else 0
    out: dict[str, Any] = {}
    for c in cols:
        vals = df[c].to_numpy()
        if vals.dtype == object:
            vals = vals.astype(str)
        grid = vals.reshape(n, m) if m else vals.reshape(n, 0)
        if c not in array_cols and m and (grid == grid[:, :1]).all():
            out[c] = grid[:, 0]
        else:
            out[c] = grid
    return out
