"""SplitMixin: named splits of a FeatureSet (views) and the splitters that make them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.data.access import as_key_list
from modjax.data.view import FeatureSetView

__all__ = ["SplitMixin"]


class SplitMixin:
    """Split bookkeeping for :class:`~modjax.data.FeatureSet` (host defines ``_splits``,
    ``_splitter_records``, ``label`` and the accessors)."""

    _splits: dict[str, FeatureSetView]
    _splitter_records: list[Any]

    # ------------------------------------------------------------------ splits
    @property
    def splits(self) -> dict[str, FeatureSetView]:
        """``{split name: view}``."""
        return dict(self._splits)

    @property
    def available_splits(self) -> list[str]:
        """Split names, in creation order."""
        return list(self._splits)

    @property
    def n_splits(self) -> int:
        return len(self._splits)

    def get_split(self, split_name: str) -> FeatureSetView:
        """The view of a split.

        Args:
            split_name: name of the split.

        Returns:
            Its :class:`FeatureSetView` (it sees columns added to the FeatureSet later,
            e.g. transformed reps).

        Raises:
            KeyError: no such split (names the split and the available ones).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gs", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> _ = fs.split_random({"train": 3, "test": 1}, seed=0)
            >>> fs.get_split("train").n_samples, fs.n_splits
            (3, 2)
        """
        if split_name not in self._splits:
            raise KeyError(f"FeatureSet {self.label!r} has no split {split_name!r}; available "
                           f"splits: {self.available_splits}")
        return self._splits[split_name]

    def add_split(self, split: FeatureSetView, name: str | None = None) -> None:
        """Register a view of this FeatureSet as a named split.

        Args:
            split: a view of this FeatureSet (its rows are kept, its column filter is not).
            name: split name (default: the view's label).

        Raises:
            ValueError: the view has no name, belongs to another FeatureSet, or the name
                exists already.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("as", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> fs.add_split(fs.take([0, 2], label="even"))
            >>> fs.available_splits, fs.get_split("even").indices.tolist()
            (['even'], [0, 2])
        """
        name = name or split.label
        if not isinstance(split, FeatureSetView) or split.source is not self:
            raise ValueError(f"add_split on FeatureSet {self.label!r}: the view must be a "
                             "FeatureSetView of this FeatureSet")
        if not name:
            raise ValueError(f"add_split on FeatureSet {self.label!r}: give the split a name")
        if name in self._splits:
            raise ValueError(f"FeatureSet {self.label!r} already has a split {name!r}")
        self._splits[name] = FeatureSetView(self, split.indices, label=name)

    def remove_split(self, name: str) -> FeatureSetView:
        """Drop a split (its SplitterRecord stays, so the log still shows how it was made;
        ``copy(restore_splits=True)`` leaves it out again).

        Args:
            name: the split.

        Returns:
            The removed view.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("rs", {"x": np.arange(4.0), "y": np.zeros(4)}, "x", "y")
            >>> _ = fs.split_random({"a": 2, "b": 2}, seed=0)
            >>> fs.remove_split("a").n_samples, fs.available_splits
            (2, ['b'])
        """
        view = self.get_split(name)
        del self._splits[name]
        return view

    def clear_splits(self) -> None:
        """Drop every split and splitter record."""
        self._splits.clear()
        self._splitter_records.clear()

    @property
    def splitter_records(self) -> list[Any]:
        """SplitterRecords, oldest first."""
        return list(self._splitter_records)

    @property
    def scaler_records(self) -> list[Any]:
        """ScalerRecords, oldest first."""
        return list(self._scaler_records)

    # ------------------------------------------------------------------ splitting
    def _add_splits(self, parts: Mapping[str, np.ndarray], record: Any) -> dict[str, FeatureSetView]:
        views = {name: FeatureSetView(self, rows, label=name) for name, rows in parts.items()}
        self._splits.update(views)
        self._splitter_records.append(record)
        return views

    def split_random(self, ratios: Mapping[str, float | int], *,
                     group_by: str | Sequence[str] | None = None,
                     stratify_by: str | Sequence[str] | None = None, seed: int = 13,
                     source_split: str | None = None, return_views: bool = True,
                     register: bool = True) -> dict[str, FeatureSetView] | None:
        """Random split into named views (no data copied).

        Args:
            ratios: ``{name: fraction}`` summing to 1, or ``{name: count}`` summing to the
                number of samples (groups with ``group_by``).
            group_by: column key(s) (tags usually); a group never straddles splits.
            stratify_by: column key(s); each stratum is split with the same ratios.
            seed: RNG seed (the record keeps it, so copies re-split identically).
            source_split: split an existing split instead of all rows.
            return_views: return the new views (ModularML's default is not to).
            register: register the views as splits (False: only return them).

        Returns:
            ``{name: view}`` of the new splits, or None when ``return_views`` is False.

        Raises:
            ValueError: ratios do not sum to 1 (or counts to n), or a split name exists.
            KeyError: unknown group/stratify column or source split.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("sr", {"x": np.arange(10.0), "y": np.zeros(10)},
            ...                           "x", "y")
            >>> parts = fs.split_random({"train": 0.8, "test": 0.2}, seed=0)
            >>> {k: v.n_samples for k, v in parts.items()}, fs.available_splits
            ({'train': 8, 'test': 2}, ['train', 'test'])
        """
        from modjax.data.splitters import SplitterRecord, random_split
        gb, sb = as_key_list(group_by), as_key_list(stratify_by)
        rows = self.get_split(source_split).indices if source_split is not None else None
        parts = random_split(self, ratios, group_by=gb, stratify_by=sb, seed=seed, rows=rows)
        # numpy integer counts must stay counts when the record is replayed or saved
        params = {"ratios": {k: (int(v) if isinstance(v, int | np.integer)
                                 and not isinstance(v, bool) else float(v))
                             for k, v in ratios.items()},
                  "group_by": gb, "stratify_by": sb, "seed": int(seed),
                  "source_split": source_split}
        return self._finish_split(parts, SplitterRecord("random", params, list(parts)),
                                  return_views, register)

    def split_by_condition(self, conditions: Mapping[str, Mapping[str, Any]], *,
                           source_split: str | None = None, return_views: bool = True,
                           register: bool = True) -> dict[str, FeatureSetView] | None:
        """Splits by predicates on columns.

        Args:
            conditions: ``{split name: {column: value | [values] | callable}}``; a row
                joins a split when it meets all of that split's conditions. Columns are
                ``[domain.]key[.rep]``.
            source_split: restrict to an existing split.
            return_views, register: as :meth:`split_random`.

        Returns:
            ``{name: view}`` (None when ``return_views`` is False).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("sc", {"x": np.arange(6.0), "cell": list("aabbcc")},
            ...                           "x", None, "cell")
            >>> v = fs.split_by_condition({"ab": {"cell": ["a", "b"]},
            ...                            "big": {"x": lambda x: x > 3.5}})
            >>> v["ab"].indices.tolist(), v["big"].indices.tolist()
            ([0, 1, 2, 3], [4, 5])
        """
        from modjax.data.splitters import SplitterRecord, condition_split, describe_conditions
        rows = self.get_split(source_split).indices if source_split is not None else None
        parts = condition_split(self, conditions, rows=rows)
        params = {"conditions": describe_conditions(conditions), "source_split": source_split}
        record = SplitterRecord("condition", params, list(parts),
                                conditions={k: dict(v) for k, v in conditions.items()})
        return self._finish_split(parts, record, return_views, register)

    def _finish_split(self, parts: Mapping[str, np.ndarray], record: Any, return_views: bool,
                      register: bool) -> dict[str, FeatureSetView] | None:
        if register:
            views = self._add_splits(parts, record)
        else:
            views = {name: FeatureSetView(self, rows, label=name) for name, rows in parts.items()}
        return views if return_views else None

    def __getitem__(self, split_name: str) -> FeatureSetView:
        """``fs["train"]`` is ``fs.get_split("train")``."""
        if not isinstance(split_name, str):
            raise TypeError(f"FeatureSet {self.label!r}[...] takes a split name, got "
                            f"{type(split_name).__name__} (use take(rows) for row positions)")
        return self.get_split(split_name)

    def _replay_split(self, record: Any) -> None:
        p = record.params
        if record.kind == "random":
            self.split_random(p["ratios"], group_by=p["group_by"], stratify_by=p["stratify_by"],
                              seed=p["seed"], source_split=p["source_split"])
        else:
            self.split_by_condition(record.conditions, source_split=p["source_split"])
