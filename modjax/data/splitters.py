"""Splitters: random (optionally by group / stratified) and by condition.

Each returns ``{split name: sorted int64 row indices}`` and never touches feature data;
the FeatureSet turns them into views and logs a :class:`SplitterRecord` so
``copy(restore_splits=True)`` can re-apply them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modjax.data.checks import check_seed
from modjax.data.schema import DOMAINS
from modjax.io.registry import register

if TYPE_CHECKING:
    from modjax.data.featureset import FeatureSet

__all__ = ["SplitterRecord", "random_split", "condition_split", "resolve_column_values"]


@register("SplitterRecord")
@dataclass
class SplitterRecord:
    """What a splitter did: its kind, JSON parameters and the splits it made.

    ``conditions`` keeps condition callables in memory (not in the config) so a copy in
    the same process can re-apply them.
    """

    kind: str
    params: dict[str, Any]
    split_names: list[str]
    conditions: Any = field(default=None, repr=False, compare=False)

    @property
    def replayable(self) -> bool:
        return self.kind == "random" or (self.kind == "condition" and
                                         self.conditions is not None)

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params, "split_names": list(self.split_names)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SplitterRecord:
        params = dict(config["params"])
        conds = params.get("conditions")
        # value/list conditions survive JSON and stay replayable; callables do not
        if conds is not None and "<callable" in repr(conds):
            conds = None
        return cls(config["kind"], params, list(config["split_names"]), conditions=conds)


def resolve_column_values(fs: Any, column: str, *, where: str) -> np.ndarray:
    """Values ``(n, *s)`` of ``[domain.]key[.rep]`` (tags, targets, features searched)."""
    parts = column.split(".")
    if len(parts) > 1 and parts[0] in DOMAINS:
        domains, key = [parts[0]], parts[1]
    else:
        domains, key = ["tags", "targets", "features"], parts[0]
    rep = parts[2] if len(parts) == 3 else None
    for dom in domains:
        if key in fs.keys_of(dom):
            return fs.get_domain(dom, key, rep=rep, fmt="dict")[key]
    avail = [f"{d}.{k}" for d in DOMAINS for k in fs.keys_of(d)]
    raise KeyError(f"{where}: FeatureSet {fs.source.label!r} has no column {column!r}; "
                   f"available: {avail}")


def _unit_codes(fs: Any, keys: Sequence[str] | None, *, where: str) -> np.ndarray:
    """One integer code per row for the combination of ``keys`` (rows when None)."""
    if not keys:
        return np.arange(fs.n_samples)
    cols = []
    for k in keys:
        v = resolve_column_values(fs, k, where=where)
        v = v.reshape(len(v), -1)
        if v.shape[1] != 1:
            raise ValueError(f"{where}: column {k!r} holds arrays; group/stratify keys need "
                             "one value per sample")
        cols.append(np.unique(v[:, 0], return_inverse=True)[1])
    return np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _allocate(total: int, ratios: Mapping[str, float | int], *, where: str) -> dict[str, int]:
    """Counts per split: integers as given, fractions by largest remainder."""
    vals = list(ratios.values())
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals):
        return {k: int(v) for k, v in ratios.items()}
    # normalise: fractions within the 1e-6 tolerance must not allocate more than total
    norm = sum(float(v) for v in vals) or 1.0
    raw = {k: float(v) / norm * total for k, v in ratios.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    short = total - sum(counts.values())
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:short]:
        counts[k] += 1
    return counts


def check_ratios(fs: FeatureSet, ratios: Mapping[str, float | int], n_units: int,
                 what: str) -> None:
    """Validate split names and ratios (fractions summing to 1 or counts summing to n)."""
    where = f"split_random on FeatureSet {fs.label!r}"
    if not isinstance(ratios, Mapping) or not ratios:
        raise ValueError(f"{where}: ratios must be a non-empty {{split name: ratio}} dict")
    for name in ratios:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: split name {name!r} must be a non-empty string")
        if name in fs.available_splits:
            raise ValueError(f"{where}: split {name!r} already exists; available splits: "
                             f"{fs.available_splits} (remove it or choose another name)")
    vals = list(ratios.values())
    ints = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals)
    if ints:
        if any(v < 0 for v in vals) or sum(vals) != n_units:
            raise ValueError(f"{where}: split counts {dict(ratios)} sum to {sum(vals)}, expected "
                             f"the {n_units} {what}")
        return
    if any(not isinstance(v, float | int | np.floating) or isinstance(v, bool)
           or not np.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{where}: ratios {dict(ratios)} must be finite non-negative numbers")
    if abs(sum(float(v) for v in vals) - 1.0) > 1e-6:
        raise ValueError(f"{where}: split ratios {dict(ratios)} sum to "
                         f"{sum(float(v) for v in vals):.6g}, expected 1 (or give integer counts)")


def random_split(fs: FeatureSet, ratios: Mapping[str, float | int], *,
                 group_by: Sequence[str] | None = None, stratify_by: Sequence[str] | None = None,
                 seed: int = 13, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Random split of ``rows`` (default all) into named parts.

    Args:
        fs: the FeatureSet.
        ratios: ``{name: fraction}`` summing to 1, or ``{name: count}`` summing to the
            number of units (samples, or groups with ``group_by``).
        group_by: column keys; each group lands wholly in one split.
        stratify_by: column keys; every stratum is split with the same ratios.
        seed: RNG seed.
        rows: restrict to these rows (splitting a split).

    Returns:
        ``{name: sorted int64 row indices}``.
    """
    where = f"split_random on FeatureSet {fs.label!r}"
    seed = check_seed(seed, where)
    if rows is None and not group_by and not stratify_by:
        return _plain_random_split(fs, ratios, seed)
    view = fs.to_view() if rows is None else fs.take(rows)
    base = view.indices
    groups = _unit_codes(view, group_by, where=where)
    n_units = int(groups.max()) + 1 if groups.size else 0
    check_ratios(fs, ratios, n_units, "groups" if group_by else "samples")
    strata_rows = _unit_codes(view, stratify_by, where=where) if stratify_by else \
        np.zeros(view.n_samples, dtype=np.int64)
    # stratum of a unit = stratum of its first row
    first_row = np.full(n_units, -1, dtype=np.int64)
    first_row[groups[::-1]] = np.arange(view.n_samples)[::-1]
    unit_stratum = strata_rows[first_row] if n_units else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    unit_split = np.empty(n_units, dtype=np.int64)
    names = list(ratios)
    ints = all(isinstance(v, int | np.integer) for v in ratios.values())
    for s in np.unique(unit_stratum):
        units = np.flatnonzero(unit_stratum == s)
        units = units[rng.permutation(len(units))]
        if ints and stratify_by:
            frac = {k: v / n_units for k, v in ratios.items()}
            counts = _allocate(len(units), frac, where=where)
        else:
            counts = _allocate(len(units), ratios, where=where)
        start = 0
        for i, name in enumerate(names):
            unit_split[units[start:start + counts[name]]] = i
            start += counts[name]
    row_split = unit_split[groups]
    return {name: np.sort(base[row_split == i]) for i, name in enumerate(names)}


def _plain_random_split(fs: FeatureSet, ratios: Mapping[str, float | int],
                        seed: int) -> dict[str, np.ndarray]:
    """Ungrouped split of all rows: one permutation buffer, each split a sorted slice of it.

    The splits share that single int64 buffer, so splitting costs exactly ``8 * n``
    bytes (same result as the general path: the same permutation, cut the same way).
    """
    n = fs.n_samples
    check_ratios(fs, ratios, n, "samples")
    counts = _allocate(n, ratios, where="")
    perm = np.random.default_rng(seed).permutation(n)
    bounds, start = {}, 0
    for name in ratios:
        bounds[name] = (start, start + counts[name])
        perm[start:start + counts[name]].sort()
        start += counts[name]
    perm.flags.writeable = False  # slices taken now are read-only, so views adopt them
    return {name: perm[a:b] for name, (a, b) in bounds.items()}


def _predicate_mask(values: np.ndarray, cond: Any, column: str, where: str) -> np.ndarray:
    n = len(values)
    flat = values.reshape(n, -1)[:, 0] if values.ndim > 1 and values[0].size == 1 else values
    if callable(cond):
        out = np.asarray(cond(flat))
        if out.shape != (n,) or out.dtype != bool:
            # not vectorised: evaluate per sample
            out = np.fromiter((bool(cond(v)) for v in flat), dtype=bool, count=n)
        return out
    if isinstance(cond, list | tuple | set | frozenset | np.ndarray):
        return np.isin(flat, np.asarray(list(cond), dtype=flat.dtype if flat.dtype != object
                                        else object))
    return flat == cond


def condition_split(fs: FeatureSet, conditions: Mapping[str, Mapping[str, Any]], *,
                    rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Splits by predicates: ``{name: {column: value | [values] | callable}}``.

    A row joins split ``name`` when it satisfies every condition of that split (a value
    means equality, a list membership, a callable is applied to the column's values).
    """
    where = f"split_by_condition on FeatureSet {fs.label!r}"
    if not isinstance(conditions, Mapping) or not conditions:
        raise ValueError(f"{where}: conditions must be a non-empty {{split name: {{column: "
                         "condition}}} dict")
    view = fs.to_view() if rows is None else fs.take(rows)
    out = {}
    for name, conds in conditions.items():
        if name in fs.available_splits:
            raise ValueError(f"{where}: split {name!r} already exists; available splits: "
                             f"{fs.available_splits}")
        mask = np.ones(view.n_samples, dtype=bool)
        for column, cond in conds.items():
            values = resolve_column_values(view, column, where=where)
            mask &= _predicate_mask(values, cond, column, where)
        out[name] = np.sort(view.indices[mask])
    return out


def describe_conditions(conditions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """JSON description of condition splits (callables by name)."""
    def one(c: Any) -> Any:
        if callable(c):
            return f"<callable {getattr(c, '__qualname__', type(c).__name__)}>"
        if isinstance(c, np.ndarray):
            return c.tolist()
        if isinstance(c, set | frozenset | tuple):
            return sorted(c, key=str)
        return c.item() if isinstance(c, np.generic) else c
    return {name: {col: one(c) for col, c in conds.items()} for name, conds in conditions.items()}

