"""FeatureSet: labelled samples in one immutable Arrow table.

Columns are ``domain.key.rep`` plus ``sample_uuids``. The table object is never
mutated: a transform builds a new table and swaps it in atomically, so a failed
operation leaves the FeatureSet as it was. Splits are :class:`FeatureSetView`s (index
arrays only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from modjax.context import ExperimentNode
from modjax.data.access import DataAccessMixin, as_key_list
from modjax.data.persistence import FeatureSetPersistence
from modjax.data.scale_mixin import ScaleMixin
from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    REP_RAW,
    REP_TRANSFORMED,
    SAMPLE_UUIDS,
    check_key,
    column_name,
    column_to_numpy,
    parse_column,
    sample_shape_of_type,
    to_arrow_array,
)
from modjax.data.selection_mixin import SelectionMixin
from modjax.data.split_mixin import SplitMixin
from modjax.data.uuids import new_uuid_array
from modjax.data.view import FeatureSetView, as_index_array
from modjax.errors import closest_names
from modjax.io.registry import register
from modjax.notebook import FeatureSetNotebookRepr

__all__ = ["FeatureSet"]


def validate_table(table: pa.Table, label: str) -> pa.Table:
    """Check column names/domains of a FeatureSet table; add ``sample_uuids`` if missing."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"FeatureSet {label!r}: expected a pyarrow.Table, got "
                        f"{type(table).__name__}")
    domain_of: dict[str, str] = {}
    raw_keys: set[tuple[str, str]] = set()
    for name in table.column_names:
        if name == SAMPLE_UUIDS:
            continue
        try:
            dom, key, rep = parse_column(name)
        except ValueError as e:
            raise ValueError(f"FeatureSet {label!r}: {e}") from None
        if domain_of.setdefault(key, dom) != dom:
            raise ValueError(
                f"FeatureSet {label!r}: key {key!r} appears in both {domain_of[key]!r} and "
                f"{dom!r}; a key belongs to one domain")
        if rep == REP_RAW:
            raw_keys.add((dom, key))
    for name in table.column_names:
        if name != SAMPLE_UUIDS:
            dom, key, _ = parse_column(name)
            if (dom, key) not in raw_keys:
                raise ValueError(f"FeatureSet {label!r}: column {name!r} has no raw column "
                                 f"{column_name(dom, key)!r}")
    if len(set(table.column_names)) != len(table.column_names):
        raise ValueError(f"FeatureSet {label!r}: duplicate column names")
    table = _fix_list_columns(table, label)
    if SAMPLE_UUIDS not in table.column_names:
        table = table.append_column(SAMPLE_UUIDS, new_uuid_array(table.num_rows))
    return table


def _fix_list_columns(table: pa.Table, label: str) -> pa.Table:
    """Plain (variable-length) list columns whose samples all have one length become
    fixed-size lists; ragged ones are an error naming the column."""
    from modjax.data.schema import _list_to_fixed
    for i, name in enumerate(table.column_names):
        typ = table.schema.field(name).type
        if name == SAMPLE_UUIDS or not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
            continue
        try:
            fixed = _list_to_fixed(table.column(name).combine_chunks(), name)
        except ValueError as e:
            raise ValueError(f"FeatureSet {label!r}: {e}") from None
        table = table.set_column(i, name, fixed)
    return table


class _OutOfCoreConstructor:
    """``FeatureSet.from_parquet`` / ``from_arrow_ipc``: the constructors of
    :mod:`modjax.data.out_of_core`, which (with ``pyarrow.ipc``) loads when one is named."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        from modjax.data import out_of_core

        return getattr(out_of_core, self.name)


@register("FeatureSet")
class FeatureSet(DataAccessMixin, SplitMixin, ScaleMixin, SelectionMixin, FeatureSetNotebookRepr,
                 ExperimentNode, FeatureSetPersistence):
    """Samples with features, targets and tags in one Arrow table.

    Build one with :meth:`from_dict`, :meth:`from_pandas` or :meth:`from_pyarrow_table`;
    the constructor takes an already-formatted table (used by loading).

    Args:
        label: unique name in the ExperimentContext.
        table: Arrow table with ``domain.key.rep`` columns (``sample_uuids`` is added when
            missing).
        splits: ``{name: int64 row indices}`` to restore.
        splitter_records: SplitterRecords to restore (not re-run).
        scaler_records: fitted ScalerRecords to restore (not re-run; their transformed
            columns are already in ``table``).
        node_id: fixed id (loading); a new one when None.
        register: register in the active ExperimentContext.

    Example:
        >>> fs = FeatureSet.from_dict(
        ...     "CycleData",
        ...     {"voltage": [[3.1, 3.2, 3.3], [3.2, 3.3, 3.4]], "soh": [0.95, 0.93],
        ...      "cell_id": ["A1", "A2"]},
        ...     feature_keys="voltage", target_keys="soh", tag_keys="cell_id")
        >>> fs.get_features().shape, fs.get_targets().shape, fs.get_tags()[:, 0].tolist()
        ((2, 1, 3), (2, 1), ['A1', 'A2'])
    """

    def __init__(self, label: str, table: pa.Table, *,
                 splits: Mapping[str, Any] | None = None,
                 splitter_records: Sequence[Any] | None = None,
                 scaler_records: Sequence[Any] | None = None,
                 node_id: str | None = None, register: bool = True) -> None:
        table = validate_table(table, label)
        self._fs = self
        self._rows = None
        self._allowed = None
        self._table = table
        self._np_cache: dict[str, np.ndarray] = {}
        self._splits: dict[str, FeatureSetView] = {}
        self._splitter_records: list[Any] = list(splitter_records or [])
        self._scaler_records: list[Any] = list(scaler_records or [])
        self._label = label  # needed by view error messages before registration
        for name, rows in (splits or {}).items():
            self._splits[name] = FeatureSetView(self, rows, label=name)
        super().__init__(label, node_id=node_id, register=register)

    # ------------------------------------------------------------------ constructors
    from_parquet = _OutOfCoreConstructor("from_parquet")
    from_arrow_ipc = _OutOfCoreConstructor("from_arrow_ipc")

    @classmethod
    def from_dict(cls, label: str, data: Mapping[str, Any], feature_keys: str | Sequence[str],
                  target_keys: str | Sequence[str] | None,
                  tag_keys: str | Sequence[str] | None = None, *,
                  register: bool = True, uuid_seed: int | None = None) -> FeatureSet:
        """Build a FeatureSet from ``{column: per-sample values}``.

        Args:
            label: name of the FeatureSet.
            data: mapping of column name to ``n`` sample values (lists, numpy arrays
                ``(n, *shape)``, pyarrow arrays). A ``"sample_uuids"`` entry is kept.
            feature_keys: key(s) used as features.
            target_keys: key(s) used as targets (None or [] for none).
            tag_keys: key(s) used as tags (ids, conditions, strings allowed).
            register: register in the active ExperimentContext.
            uuid_seed: make the generated ``sample_uuids`` deterministic (the same seed
                and row count give the same uuids); None draws them from the OS.
                Ignored when ``data`` has a ``"sample_uuids"`` entry.

        Returns:
            The FeatureSet (every column stored ``raw``).

        Raises:
            KeyError: a listed key is not in ``data``.
            ValueError: unequal column lengths, ragged samples, or a key in two domains.

        Example:
            >>> fs = FeatureSet.from_dict("d", {"x": np.zeros((4, 1, 16)), "y": [0, 1, 2, 3]},
            ...                           "x", "y")
            >>> fs.n_samples, fs.feature_shapes
            (4, {'x': (1, 16)})
        """
        doms = {DOMAIN_FEATURES: as_key_list(feature_keys) or [],
                DOMAIN_TARGETS: as_key_list(target_keys) or [],
                DOMAIN_TAGS: as_key_list(tag_keys) or []}
        seen: dict[str, str] = {}
        for dom, keys in doms.items():
            for k in keys:
                check_key(k, what=f"{dom} key")
                if k in seen:
                    raise ValueError(f"FeatureSet {label!r}: key {k!r} is listed as both "
                                     f"{seen[k]} and {dom}; a key belongs to one domain")
                seen[k] = dom
                if k not in data:
                    raise KeyError(f"FeatureSet {label!r}: {dom} key {k!r} is not in data; "
                                   f"data has {closest_names(k, data)}")
        if not doms[DOMAIN_FEATURES]:
            raise ValueError(f"FeatureSet {label!r}: give at least one feature key")
        lengths = {k: len(data[k]) for k in seen}
        if SAMPLE_UUIDS in data:
            lengths[SAMPLE_UUIDS] = len(data[SAMPLE_UUIDS])
        if len(set(lengths.values())) > 1:
            raise ValueError(f"FeatureSet {label!r}: columns have unequal lengths {lengths}; "
                             "every column needs one value per sample")
        arrays, names = [], []
        for dom, keys in doms.items():
            for k in keys:
                name = column_name(dom, k)
                arrays.append(to_arrow_array(data[k], name=name))
                names.append(name)
        if SAMPLE_UUIDS in data:
            arrays.append(pa.array([str(u) for u in data[SAMPLE_UUIDS]], type=pa.string()))
            names.append(SAMPLE_UUIDS)
        elif uuid_seed is not None:
            arrays.append(new_uuid_array(len(arrays[0]), seed=uuid_seed))
            names.append(SAMPLE_UUIDS)
        return cls(label, pa.Table.from_arrays(arrays, names=names), register=register)

    @classmethod
    def from_pyarrow_table(cls, label: str, table: pa.Table, schema: Any = None, *,
                           feature_keys: str | Sequence[str] | None = None,
                           target_keys: str | Sequence[str] | None = None,
                           tag_keys: str | Sequence[str] | None = None,
                           register: bool = True) -> FeatureSet:
        """Build a FeatureSet from an Arrow table.

        A table whose columns already follow ``domain.key.rep`` is used as is (no copy).
        Otherwise give ``feature_keys``/``target_keys``/``tag_keys`` naming its plain
        columns. ``schema`` (a ``pa.Schema``) casts the table first.

        Example:
            >>> t = pa.table({"x": [1.0, 2.0], "y": [0.0, 1.0]})
            >>> FeatureSet.from_pyarrow_table("t", t, feature_keys="x", target_keys="y").columns
            ['features.x.raw', 'targets.y.raw']
        """
        if schema is not None:
            table = table.cast(schema)
        if feature_keys is None and target_keys is None and tag_keys is None:
            return cls(label, table, register=register)
        data = {name: table.column(name) for name in table.column_names}
        return cls.from_dict(label, data, feature_keys, target_keys, tag_keys,
                             register=register)

    @classmethod
    def from_pandas(cls, label: str, df: Any, feature_cols: str | Sequence[str],
                    target_cols: str | Sequence[str] | None,
                    group_by: str | Sequence[str] | None = None,
                    tag_cols: str | Sequence[str] | None = None,
                    sort_by: str | Sequence[str] | None = None, *,
                    register: bool = True) -> FeatureSet:
        """Build a FeatureSet from a pandas DataFrame.

        Without ``group_by`` each row is a sample. With ``group_by`` each group is one
        sample: feature columns become arrays of the group's rows (sorted by ``sort_by``),
        which must have the same length in every group; a target or tag column becomes
        one value per sample when it is constant within every group, else an array.

        Args:
            label: name of the FeatureSet.
            df: the DataFrame.
            feature_cols, target_cols, tag_cols: column names per domain.
            group_by: column(s) whose unique combinations define samples.
            sort_by: column(s) ordering rows within a group.

        Returns:
            The FeatureSet.

        Example:
            >>> import pandas as pd
            >>> df = pd.DataFrame({"cell": ["a", "a", "b", "b"], "t": [1, 0, 0, 1],
            ...                    "v": [3.2, 3.1, 3.0, 3.3], "soh": [.9, .9, .8, .8]})
            >>> fs = FeatureSet.from_pandas("p", df, "v", "soh", group_by="cell",
            ...                             tag_cols="cell", sort_by="t")
            >>> fs.get_features()[:, 0].tolist(), fs.get_targets()[:, 0].tolist()
            ([[3.1, 3.2], [3.0, 3.3]], [0.9, 0.8])
        """
        from modjax.data.frames import dataframe_to_columns
        fc, tc, gc = as_key_list(feature_cols) or [], as_key_list(target_cols) or [], \
            as_key_list(tag_cols) or []
        data = dataframe_to_columns(label, df, fc + tc + gc, group_by=as_key_list(group_by),
                                    sort_by=as_key_list(sort_by), array_cols=fc)
        return cls.from_dict(label, data, fc, tc, gc, register=register)

    from_df = from_pandas

    # ------------------------------------------------------------------ storage
    @property
    def table(self) -> pa.Table:
        """The (immutable) Arrow table."""
        return self._table

    @property
    def source(self) -> FeatureSet:
        """Itself (so FeatureSet and FeatureSetView share ``.source``)."""
        return self

    @property
    def indices(self) -> np.ndarray:
        """All row indices ``arange(n_samples)``."""
        return np.arange(self.n_samples, dtype=np.int64)

    def _numpy_column(self, name: str) -> np.ndarray:
        """Cached numpy view of a column (zero-copy for primitive fixed-size data)."""
        arr = self._np_cache.get(name)
        if arr is None:
            if self._table.schema.get_field_index(name) < 0:
                raise KeyError(f"FeatureSet {self.label!r} has no column {name!r}")
            try:
                arr = column_to_numpy(self._table.column(name))
            except ValueError as e:  # nulls, variable-length lists: say which column
                raise ValueError(f"FeatureSet {self.label!r} column {name!r}: {e}") from None
            arr.flags.writeable = False
            self._np_cache[name] = arr
        return arr

    def _column_shape(self, name: str) -> tuple[int, ...]:
        return sample_shape_of_type(self._table.schema.field(name).type)

    def _swap_table(self, table: pa.Table) -> None:
        """Install a new table (columns added/replaced); drops stale numpy caches."""
        self._table = table
        for name in list(self._np_cache):
            # raw columns and uuids never change in place; transformed ones may
            if table.schema.get_field_index(name) < 0 or name.endswith("." + REP_TRANSFORMED):
                del self._np_cache[name]

    def with_columns(self, columns: Mapping[str, np.ndarray], *,
                     base: pa.Table | None = None) -> pa.Table:
        """A new table: ``base`` (default: the current table) with ``columns`` (full names)
        added or replaced; the FeatureSet itself is unchanged."""
        table = self._table if base is None else base
        for name, values in columns.items():
            arr = to_arrow_array(values, name=name)
            if len(arr) != table.num_rows:
                raise ValueError(f"FeatureSet {self.label!r}: column {name!r} has {len(arr)} "
                                 f"rows, expected {table.num_rows}")
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)
        return table

    # ------------------------------------------------------------------ copy / visualize
    def copy(self, *, label: str | None = None, share_raw_data_buffer: bool = True,
             restore_splits: bool = False, restore_scalers: bool = False,
             register: bool = False) -> FeatureSet:
        """A new FeatureSet with the raw columns (shared buffers by default).

        Args:
            label: new label (default ``"<label>_copy"``).
            share_raw_data_buffer: share Arrow buffers (zero-copy) or deep-copy them.
            restore_splits: re-apply SplitterRecords (explicit splits copied by index).
            restore_scalers: re-fit ScalerRecords in order (needs ``restore_splits`` when
                a scaler was fitted on a split).
            register: register the copy in the active context.

        Returns:
            The copy; the original is not modified.

        Raises:
            ValueError: ``restore_scalers`` without ``restore_splits`` when a scaler was
                fitted on a split.

        Example:
            >>> fs = FeatureSet.from_dict("cp", {"x": np.arange(6.0), "y": np.zeros(6)}, "x", "y")
            >>> _ = fs.split_random({"train": 4, "test": 2}, seed=1)
            >>> twin = fs.copy(label="twin", restore_splits=True)
            >>> twin.available_splits, bool((twin.sample_uuids == fs.sample_uuids).all())
            (['train', 'test'], True)
            >>> twin.get_split("test").indices.tolist() == fs.get_split("test").indices.tolist()
            True
        """
        if restore_scalers and not restore_splits and any(
                r.fit_to_split is not None for r in self._scaler_records):
            raise ValueError(f"copy of FeatureSet {self.label!r}: restore_scalers=True needs "
                             "restore_splits=True because scalers were fitted on splits "
                             f"{sorted({r.fit_to_split for r in self._scaler_records} - {None})}")
        raw = [c for c in self._table.column_names if not c.endswith("." + REP_TRANSFORMED)]
        table = self._table.select(raw)
        if not share_raw_data_buffer:
            table = table.take(pa.array(np.arange(table.num_rows)))
        new = FeatureSet(label or f"{self.label}_copy", table, register=register)
        if restore_splits:
            for rec in self._splitter_records:
                if rec.replayable:
                    new._replay_split(rec)
            for name, view in self._splits.items():
                # explicit splits, and names re-used after a removal, are copied by index:
                # the copy's splits always hold exactly the original's rows
                mine = new._splits.get(name)
                if mine is None or not np.array_equal(mine.indices, view.indices):
                    new._splits[name] = FeatureSetView(new, view.indices, label=name)
            # splits removed since their record ran stay removed; keep the original order
            new._splits = {k: new._splits[k] for k in self._splits}
        if restore_scalers:
            for rec in self._scaler_records:
                new.fit_transform(rec.scaler, domain=rec.domain,
                                  keys=list(rec.keys), fit_to_split=rec.fit_to_split,
                                  merged_axes=rec.merged_axes)
        return new

    def visualize(self, *, show_features: bool = True, show_targets: bool = True,
                  show_tags: bool | str = "root", show_overlaps: bool = True) -> str:
        """Mermaid ``flowchart`` text: the FeatureSet, its splits and their overlaps.

        Args:
            show_features, show_targets: list those columns (with shapes) on the nodes.
            show_tags: ``"root"`` (only on the FeatureSet node), True (every node), False.
            show_overlaps: dotted edges labelled with the overlap count between splits.

        Example:
            >>> fs = FeatureSet.from_dict("viz", {"x": np.arange(4.0), "y": np.zeros(4)},
            ...                           "x", "y")
            >>> _ = fs.split_random({"a": 2, "b": 2})
            >>> print(fs.visualize().splitlines()[0])
            flowchart TD
        """
        from modjax.data.mermaid import featureset_mermaid
        return featureset_mermaid(self, show_features=show_features, show_targets=show_targets,
                                  show_tags=show_tags, show_overlaps=show_overlaps)

    # ------------------------------------------------------------------ config / state
    def get_config(self) -> dict[str, Any]:
        """JSON config: label, id, column names/types and records (data is state)."""
        from modjax.io.registry import serialize
        return {
            "label": self.label,
            "node_id": self.node_id,
            "n_samples": self.n_samples,
            "columns": {name: str(self._table.schema.field(name).type)
                        for name in self._table.column_names},
            "splits": self.available_splits,
            "splitter_records": [serialize(r) for r in self._splitter_records],
            "scaler_records": [serialize(r) for r in self._scaler_records],
        }

    def get_state(self) -> dict[str, Any]:
        """``{"table": pa.Table, "splits": {name: int64}, "scalers": [scaler states]}``."""
        return {
            "table": self._table,
            "splits": {k: np.array(v.indices) for k, v in self._splits.items()},
            "scalers": [r.scaler.get_state() for r in self._scaler_records],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore table, splits and fitted scaler states from :meth:`get_state`."""
        table = validate_table(state["table"], self.label)
        splits = {k: as_index_array(v, table.num_rows, where=f"split {k!r} of FeatureSet "
                                    f"{self.label!r}")
                  for k, v in state.get("splits", {}).items()}
        scaler_states = list(state.get("scalers", []))
        if len(scaler_states) != len(self._scaler_records):
            raise ValueError(f"FeatureSet {self.label!r}: state has {len(scaler_states)} scaler "
                             f"states but {len(self._scaler_records)} ScalerRecords")
        previous = [r.scaler.get_state() for r in self._scaler_records]
        try:
            for r, s in zip(self._scaler_records, scaler_states):
                r.scaler.set_state(s)
        except Exception:
            for r, s in zip(self._scaler_records, previous):
                r.scaler.set_state(s)
            raise
        self._table = table
        self._np_cache.clear()
        self._splits = {k: FeatureSetView(self, v, label=k) for k, v in splits.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, state: Mapping[str, Any] | None = None,
                    register: bool = True, keep_id: bool = True,
                    allow_packaged_code: bool = False) -> FeatureSet:
        """Rebuild from :meth:`get_config` (and :meth:`get_state`; without state the table
        is empty with the configured columns). Scaler classes outside the built-in and
        scikit-learn allow-list are imported only with ``allow_packaged_code=True``."""
        from modjax.io.registry import deserialize
        s_recs = [deserialize(c) for c in config.get("splitter_records", [])]
        c_recs = [deserialize(c, allow_packaged_code=allow_packaged_code)
                  for c in config.get("scaler_records", [])]
        if state is not None:
            table = state["table"]
        else:
            fields = [(n, _type_from_str(t)) for n, t in config["columns"].items()]
            table = pa.table({n: pa.array([], type=t) for n, t in fields})
        fs = cls(config["label"], table, splitter_records=s_recs, scaler_records=c_recs,
                 node_id=config.get("node_id") if keep_id else None, register=register)
        if state is not None:
            fs.set_state(state)
        return fs

    # ------------------------------------------------------------------ repr
    def __repr__(self) -> str:
        def dom(d: str) -> str:
            return ", ".join(f"{k}{self.get_shape(d, k)}" for k in self.keys_of(d)) or "-"
        splits = ", ".join(f"{k}={v.n_samples}" for k, v in self._splits.items()) or "-"
        n_t = sum(1 for c in self.columns if c.endswith(".transformed"))
        return (f"FeatureSet(label={self.label!r}, n_samples={self.n_samples}, "
                f"features=[{dom(DOMAIN_FEATURES)}], targets=[{dom(DOMAIN_TARGETS)}], "
                f"tags=[{dom(DOMAIN_TAGS)}], transformed_columns={n_t}, splits=[{splits}])")


def _type_from_str(s: str) -> pa.DataType:
    """Parse the subset of Arrow type strings a FeatureSet writes."""
    s = s.strip()
    if s.startswith("fixed_size_list<item: "):
        inner, size = s[len("fixed_size_list<item: "):].rsplit(">[", 1)
        return pa.list_(_type_from_str(inner), int(size.rstrip("]")))
    return pa.type_for_alias(s)

