"""FeatureSetView: a no-copy row and column projection of a FeatureSet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from modjax.data.access import DataAccessMixin
from modjax.data.compat import resolve_column_selectors
from modjax.data.schema import SAMPLE_UUIDS
from modjax.io.registry import register

if TYPE_CHECKING:
    from modjax.data.featureset import FeatureSet

__all__ = ["FeatureSetView"]


def as_index_array(rows: Any, n: int, *, where: str) -> np.ndarray:
    """Validate row positions into a read-only int64 array (bool masks and slices allowed).

    Zero-copy where it is safe: an already read-only int64 array (a split's indices, a
    slice of them) is used as is, and an int64 array that owns its memory is *adopted*:
    it is made read-only in place instead of copied, so a later edit by the caller raises
    instead of silently moving the view's rows. Anything else is copied.
    """
    if isinstance(rows, slice):
        rows = np.arange(n, dtype=np.int64)[rows]
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{where}: boolean row mask has shape {arr.shape}, expected ({n},)")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError(f"{where}: rows must be a 1-D integer array, got dtype {arr.dtype} "
                        f"shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = int(arr[(arr < 0) | (arr >= n)][0])
        raise IndexError(f"{where}: row {bad} is out of range for {n} rows")
    if arr.dtype != np.int64 or (arr.flags.writeable and arr.base is not None):
        arr = np.array(arr, dtype=np.int64, copy=True)
    arr.flags.writeable = False
    return arr


def select_columns(host: Any, columns: Any, features: Any, targets: Any, tags: Any,
                   rep: str | None) -> list[str]:
    """Columns kept by ``select``: plain full names as given, selectors expanded."""
    if features is None and targets is None and tags is None and rep is None and \
            columns is not None and not isinstance(columns, str) and \
            not any("*" in str(c) or "?" in str(c) for c in columns):
        return list(columns)
    cols = resolve_column_selectors(host, columns=columns, features=features, targets=targets,
                                    tags=tags, rep=rep)
    return [c for c in cols if c != SAMPLE_UUIDS]


@register("FeatureSetView")
class FeatureSetView(DataAccessMixin):
    """Immutable row and column projection of a :class:`FeatureSet`.

    A view holds only the source, an int64 index array and (optionally) a column
    filter: making one copies no feature data. Splits are views. A view of a view
    composes indices, so ``view.indices`` always index the source FeatureSet.

    Args:
        source: the FeatureSet (or a view, whose indices are composed).
        indices: row positions in ``source``; a boolean mask is accepted.
        columns: column names to expose (``domain.key.rep``); None exposes all, including
            columns (e.g. transformed reps) added to the source later.
        label: optional name (a split's name).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("v", {"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}, "x", "y")
        >>> v = fs.to_view().take([2, 0])
        >>> v.get_features()[:, 0].tolist(), v.indices.tolist()
        ([3.0, 1.0], [2, 0])
    """

    def __init__(self, source: FeatureSet | FeatureSetView, indices: Any,
                 columns: Sequence[str] | None = None, label: str | None = None) -> None:
        if isinstance(source, FeatureSetView):
            if isinstance(indices, slice):
                indices = source.indices[indices]  # a read-only view: no copy
            else:
                rows = as_index_array(indices, source.n_samples, where=f"view {source.label!r}")
                indices = source.indices[rows]
            if columns is None and source._allowed is not None:
                columns = sorted(source._allowed)
            source = source.source
        self._fs = source
        self._rows = as_index_array(indices, source.n_samples,
                                    where=f"FeatureSet {source.label!r}")
        if columns is not None:
            columns = list(columns)
            unknown = [c for c in columns if c not in source.columns and c != SAMPLE_UUIDS]
            if unknown:
                raise KeyError(f"FeatureSet {source.label!r} has no columns {unknown}")
            self._allowed: frozenset[str] | None = frozenset(columns)
        else:
            self._allowed = None
        self.label = label

    # ------------------------------------------------------------------ basics
    @property
    def source(self) -> FeatureSet:
        """The FeatureSet this view projects."""
        return self._fs

    @property
    def indices(self) -> np.ndarray:
        """Read-only int64 row indices into the source."""
        return self._rows  # type: ignore[return-value]

    @property
    def valid_indices(self) -> np.ndarray:
        """Indices >= 0 (all of them: views never hold padding)."""
        return self._rows[self._rows >= 0]  # type: ignore[index]

    def _where(self) -> str:
        name = f" {self.label!r}" if self.label else ""
        return f"view{name} of FeatureSet {self._fs.label!r}"

    @classmethod
    def from_featureset(cls, fs: FeatureSet | FeatureSetView, *, rows: Any = None,
                        columns: Sequence[str] | None = None,
                        label: str | None = None) -> FeatureSetView:
        """A view of ``fs`` (all rows when ``rows`` is None).

        Args:
            fs: FeatureSet or view (indices compose).
            rows: positions within ``fs``.
            columns: column filter (None: all).
            label: optional name.

        Returns:
            The view.
        """
        if rows is None:
            rows = np.arange(fs.n_samples, dtype=np.int64)
        return cls(fs, rows, columns=columns, label=label)

    def take(self, rows: Any, *, label: str | None = None) -> FeatureSetView:
        """Sub-view by positions within this view (indices compose).

        Args:
            rows: positions within this view (a slice shares this view's index buffer).
            label: optional name.

        Returns:
            The sub-view; its ``indices`` index the source FeatureSet.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("vt", {"x": np.arange(5.0), "y": np.zeros(5)}, "x", "y")
            >>> fs.take([4, 3, 2]).take([0, 2]).indices.tolist()
            [4, 2]
        """
        return FeatureSetView(self, rows, label=label)

    def select(self, columns: str | Sequence[str] | None = None, *,
               features: str | Sequence[str] | None = None,
               targets: str | Sequence[str] | None = None,
               tags: str | Sequence[str] | None = None, rep: str | None = None,
               label: str | None = None) -> FeatureSetView:
        """Same rows, only some columns.

        Args:
            columns: full ``domain.key.rep`` names (globs allowed).
            features, targets, tags: key selectors per domain (``"voltage"``,
                ``"voltage.*"``, ``"*.raw"``).
            rep: rep for selectors that omit it (None: every rep).
            label: optional name (default: this view's).

        Returns:
            The view.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("vs", {"a": [1.0], "b": [2.0], "y": [0.0]},
            ...                           ["a", "b"], "y")
            >>> fs.to_view().select(["features.a.raw"]).columns
            ['features.a.raw']
            >>> fs.to_view().select(features="b", targets="*").get_all_keys()
            ['features.b.raw', 'targets.y.raw', 'sample_uuids']
        """
        return FeatureSetView(self._fs, self._rows,
                              columns=select_columns(self, columns, features, targets, tags, rep),
                              label=label or self.label)

    def expand_columns(self, label: str | None = None) -> FeatureSetView:
        """Same rows, every column of the source.

        Args:
            label: optional name (default ``"<label>_expanded"``).

        Returns:
            The view without a column filter.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ve", {"a": [1.0], "y": [0.0]}, "a", "y")
            >>> narrow = fs.select(["features.a.raw"], label="n")
            >>> wide = narrow.expand_columns()
            >>> wide.label, wide.columns
            ('n_expanded', ['features.a.raw', 'targets.y.raw'])
        """
        return FeatureSetView(self._fs, self._rows, columns=None,
                              label=label or (f"{self.label}_expanded" if self.label else None))

    # ------------------------------------------------------------------ overlap
    def _same_source(self, other: FeatureSetView) -> bool:
        return other.source is self._fs

    def is_disjoint_with(self, other: FeatureSetView) -> bool:
        """True when no sample is in both views (uuids when the sources differ).

        Args:
            other: another view.

        Returns:
            Whether the views share no sample.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("vd", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> fs.take([0, 1]).is_disjoint_with(fs.take([2, 3]))
            True
        """
        if self._same_source(other):
            return np.intersect1d(self._rows, other.indices).size == 0
        return not set(self.sample_uuids.tolist()) & set(other.sample_uuids.tolist())

    def get_overlap_with(self, other: FeatureSetView) -> list[str]:
        """Sample uuids present in both views (sorted).

        Args:
            other: another view (same or other source: compared by uuid).

        Returns:
            The shared uuids, sorted.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("vo", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> fs.take([0, 1]).get_overlap_with(fs.take([1, 2])) == [fs.sample_uuids[1]]
            True
        """
        if self._same_source(other):
            common = np.intersect1d(self._rows, other.indices)
            return sorted(self._fs._numpy_column(SAMPLE_UUIDS)[common].tolist())
        return sorted(set(self.sample_uuids.tolist()) & set(other.sample_uuids.tolist()))

    def _check_same_source(self, other: Any, op: str) -> np.ndarray:
        other_rows = getattr(other, "indices", None)
        if other_rows is None or getattr(other, "source", None) is not self._fs:
            raise ValueError(f"{op}: {self._where()} and {other!r} must be views of the same "
                             "FeatureSet")
        return np.asarray(other_rows)

    def take_intersection(self, other: Any, *, order: str = "self",
                          label: str | None = None) -> FeatureSetView:
        """Rows of this view that are also in ``other`` (same source), in this view's order
        (``order="other"``: in ``other``'s order). This view's columns are kept.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ti", {"x": np.arange(5.0), "y": np.zeros(5)}, "x", "y")
            >>> fs.take([4, 1, 2]).take_intersection(fs.take([2, 4])).indices.tolist()
            [4, 2]
        """
        other_rows = self._check_same_source(other, "take_intersection")
        if order not in ("self", "other"):
            raise ValueError(f"take_intersection: order must be 'self' or 'other', got {order!r}")
        if order == "self":
            rows = self._rows[np.isin(self._rows, other_rows)]
        else:
            rows = other_rows[np.isin(other_rows, self._rows)]
        return FeatureSetView(self._fs, rows, columns=self._column_list(), label=label)

    def take_difference(self, other: Any, *, label: str | None = None) -> FeatureSetView:
        """Rows of this view that are not in ``other`` (same source), in this view's order.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("td", {"x": np.arange(5.0), "y": np.zeros(5)}, "x", "y")
            >>> fs.take([4, 1, 2]).take_difference(fs.take([2])).indices.tolist()
            [4, 1]
        """
        other_rows = self._check_same_source(other, "take_difference")
        rows = self._rows[~np.isin(self._rows, other_rows)]
        return FeatureSetView(self._fs, rows, columns=self._column_list(), label=label)

    def take_union(self, other: Any, *, label: str | None = None) -> FeatureSetView:
        """Rows of this view followed by the rows of ``other`` not already here.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tn", {"x": np.arange(5.0), "y": np.zeros(5)}, "x", "y")
            >>> fs.take([3, 1]).take_union(fs.take([1, 0])).indices.tolist()
            [3, 1, 0]
        """
        other_rows = self._check_same_source(other, "take_union")
        rows = np.concatenate([self._rows, other_rows[~np.isin(other_rows, self._rows)]])
        return FeatureSetView(self._fs, rows, columns=self._column_list(), label=label)

    def _column_list(self) -> list[str] | None:
        return None if self._allowed is None else sorted(self._allowed)

    def to_featureset(self, label: str, *, register: bool = True) -> FeatureSet:
        """An independent FeatureSet of these rows and columns (raw and transformed
        columns are copied as they are; no splits or scaler records).

        Args:
            label: label of the new FeatureSet.
            register: register it in the active context.

        Returns:
            The FeatureSet.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tf", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> sub = fs.take([3, 1]).to_featureset("sub")
            >>> sub.n_samples, sub.get_features()[:, 0].tolist()
            (2, [3.0, 1.0])
        """
        from modjax.data.featureset import FeatureSet
        cols = [c for c in self._fs._table.column_names
                if c == SAMPLE_UUIDS or self._allowed is None or c in self._allowed]
        table = self._fs._table.select(cols).take(pa.array(self._rows))
        return FeatureSet(label, table, register=register)

    def split_random(self, ratios: Mapping[str, float | int], *, group_by: Any = None,
                     stratify_by: Any = None, seed: int = 13, return_views: bool = True,
                     register: bool = True) -> dict[str, FeatureSetView] | None:
        """Split this view's rows (a nested split); the new splits are registered on the
        source FeatureSet, as in ModularML.

        Args:
            ratios, group_by, stratify_by, seed: as :meth:`FeatureSet.split_random`.
            return_views: return ``{name: view}`` (else None).
            register: register the splits on the source (this view must then be one of
                its splits, so the split can be replayed by name).

        Returns:
            The new views, or None.

        Raises:
            ValueError: ``register=True`` on a view that is not a registered split.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ns", {"x": np.arange(10.0), "y": np.zeros(10)},
            ...                           "x", "y")
            >>> _ = fs.split_random({"source": 0.5, "test": 0.5}, seed=0)
            >>> parts = fs.get_split("source").split_random({"train": 0.8, "val": 0.2})
            >>> fs.available_splits, parts["train"].n_samples
            (['source', 'test', 'train', 'val'], 4)
        """
        if register:
            return self._fs.split_random(ratios, group_by=group_by, stratify_by=stratify_by,
                                         seed=seed, return_views=return_views,
                                         source_split=self._split_name())
        from modjax.data.access import as_key_list
        from modjax.data.splitters import random_split
        parts = random_split(self._fs, ratios, group_by=as_key_list(group_by),
                             stratify_by=as_key_list(stratify_by), seed=seed, rows=self._rows)
        views = {k: FeatureSetView(self._fs, v, label=k) for k, v in parts.items()}
        return views if return_views else None

    def split_by_condition(self, conditions: Mapping[str, Mapping[str, Any]], *,
                           return_views: bool = True,
                           register: bool = True) -> dict[str, FeatureSetView] | None:
        """Condition split of this view's rows (see :meth:`split_random` for nesting).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("nc", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> v = fs.take([0, 3]).split_by_condition({"hi": {"x": lambda x: x > 1}},
            ...                                        register=False)
            >>> v["hi"].indices.tolist()
            [3]
        """
        if register:
            return self._fs.split_by_condition(conditions, return_views=return_views,
                                               source_split=self._split_name())
        from modjax.data.splitters import condition_split
        parts = condition_split(self._fs, conditions, rows=self._rows)
        views = {k: FeatureSetView(self._fs, v, label=k) for k, v in parts.items()}
        return views if return_views else None

    def _split_name(self) -> str:
        mine = self._fs._splits.get(self.label) if self.label else None
        if mine is None or not np.array_equal(mine.indices, self._rows):
            raise ValueError(f"nested split of {self._where()}: register=True needs this view "
                             f"to be a registered split of FeatureSet {self._fs.label!r} "
                             f"(splits: {self._fs.available_splits}); add it with add_split "
                             "or pass register=False")
        return self.label

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """JSON config: source label/id, column filter, label (indices are state)."""
        return {"source_label": self._fs.label, "source_id": self._fs.node_id,
                "columns": None if self._allowed is None else sorted(self._allowed),
                "label": self.label}

    def get_state(self) -> dict[str, Any]:
        """``{"indices": int64 array}``."""
        return {"indices": np.array(self._rows)}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, state: dict[str, Any] | None = None,
                    source: FeatureSet | None = None) -> FeatureSetView:
        """Rebuild a view; the source is looked up in the active context unless given."""
        if source is None:
            from modjax.context import ExperimentContext
            ctx = ExperimentContext.get_active()
            sid = config.get("source_id")
            source = ctx.get_node(node_id=sid) if sid and ctx.has_node(node_id=sid) else \
                ctx.get_node(label=config["source_label"], enforce_type="FeatureSet")
        rows = state["indices"] if state is not None else np.arange(source.n_samples)
        return cls(source, rows, columns=config.get("columns"), label=config.get("label"))

    def __repr__(self) -> str:
        return (f"FeatureSetView(source={self._fs.label!r}, n_samples={self.n_samples}, "
                f"label={self.label!r})")
