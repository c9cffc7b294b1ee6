"""ModularML-style read accessors shared by FeatureSet and FeatureSetView.

ModularML names columns ``domain.key.rep`` and lets every accessor choose whether the
domain prefix and rep suffix appear in returned keys (``include_domain_prefix``,
``include_rep_suffix``). These methods give its spellings (``get_feature_keys``,
``get_feature_shapes``, ``get_data``, ``to_pandas``, ``summary``, ``filter``...) over
modjax's column store; they read the same arrays as :meth:`get_features`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self, overload

import numpy as np
import pyarrow as pa

from modjax.data.accessor_types import (
    AccessorData,
    DictFormat,
    DictJaxFormat,
    DictListFormat,
    DictTorchFormat,
    FormatName,
    JaxFormat,
    ListFormat,
    NumpyFormat,
    PandasFormat,
    TorchFormat,
)
from modjax.data.formats import DataFormat, convert_columns, normalize_format
from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    DOMAINS,
    REPS,
    SAMPLE_UUIDS,
    leaf_dtype,
    parse_column,
)
from modjax.errors import closest_names

if TYPE_CHECKING:
    import jax
    import pandas as pd
    import torch

    from modjax.data.view import FeatureSetView

__all__ = ["ModularMLAccessMixin", "format_column", "resolve_column_selectors"]


def format_column(column: str, *, include_domain_prefix: bool, include_rep_suffix: bool) -> str:
    """``features.voltage.raw`` with the domain prefix and/or rep suffix dropped.

    Example:
        >>> format_column("features.voltage.raw", include_domain_prefix=False,
        ...               include_rep_suffix=False)
        'voltage'
    """
    if column == SAMPLE_UUIDS:
        return column
    dom, key, rep = parse_column(column)
    name = f"{dom}.{key}" if include_domain_prefix else key
    return f"{name}.{rep}" if include_rep_suffix else name


def _selector_pattern(sel: str, domain: str | None, rep: str | None) -> str:
    """A ``domain.key.rep`` glob for one selector (domain and rep filled in when omitted)."""
    parts = sel.split(".")
    if parts[0] in DOMAINS or (domain is None and parts[0] == "*"):
        dom, parts = parts[0], parts[1:]
    elif domain is None:
        raise ValueError(f"column selector {sel!r} must start with a domain "
                         f"({list(DOMAINS)}) when given as `columns`")
    else:
        dom = domain
    if domain is not None and dom != domain:
        raise ValueError(f"selector {sel!r} names domain {dom!r} but was given for {domain!r}")
    if len(parts) == 1:
        parts = [parts[0], rep or "*"]
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"cannot parse selector {sel!r}; expected 'key', 'key.rep' or "
                         "'domain.key.rep' (wildcards allowed)")
    return f"{dom}.{parts[0]}.{parts[1]}"


def resolve_column_selectors(host: Any, *, columns: Any = None, features: Any = None,
                             targets: Any = None, tags: Any = None,
                             rep: str | None = None) -> list[str]:
    """Full column names picked by ModularML-style selectors, ordered by domain then name.

    Args:
        host: FeatureSet or view (its visible columns are searched).
        columns: full names or ``domain.*`` globs.
        features, targets, tags: bare keys, ``key.rep`` or wildcards per domain.
        rep: rep used where a selector omits it (None: every rep).

    Returns:
        The sorted column names (``sample_uuids`` when asked for in ``columns``).

    Raises:
        KeyError: a selector matches no column (names it and the nearest columns).

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("rcs", {"v": [1.0], "y": [2.0]}, "v", "y")
        >>> resolve_column_selectors(fs, features="v", targets="*")
        ['features.v.raw', 'targets.y.raw']
    """
    avail = host.columns
    picked: set[str] = set()
    want_uuids = False
    for domain, sels in ((None, columns), (DOMAIN_FEATURES, features),
                         (DOMAIN_TARGETS, targets), (DOMAIN_TAGS, tags)):
        for sel in ([sels] if isinstance(sels, str) else list(sels or [])):
            if domain is None and sel == SAMPLE_UUIDS:
                want_uuids = True
                continue
            pat = _selector_pattern(str(sel), domain, rep)
            hits = [c for c in avail if fnmatch.fnmatchcase(c, pat)]
            if not hits:
                raise KeyError(f"{host._where()} has no column matching {sel!r} "
                               f"(pattern {pat!r}); columns like it: "
                               f"{closest_names(pat, avail)}")
            picked.update(hits)
    order = {d: i for i, d in enumerate(DOMAINS)}
    out = sorted(picked, key=lambda c: (order[c.split(".")[0]], c))
    return out + [SAMPLE_UUIDS] if want_uuids else out


def _mask_for(values: np.ndarray, cond: Any, column: str) -> np.ndarray:
    """Rows meeting one filter condition (value, collection of values, or callable)."""
    n = len(values)
    scalar = values.ndim == 1
    if callable(cond):
        if scalar:
            out = np.asarray(cond(values))
            if out.ndim == 0:
                out = np.full(n, bool(out))
        else:
            out = np.fromiter((bool(cond(v)) for v in values), dtype=bool, count=n)
        if out.shape != (n,):
            raise ValueError(f"filter condition on {column!r} returned shape {out.shape}, "
                             f"expected ({n},) booleans")
        return out.astype(bool)
    if not scalar:
        raise TypeError(f"filter on {column!r}: its values are arrays of shape "
                        f"{values.shape[1:]}; use a callable condition")
    if isinstance(cond, list | tuple | set | frozenset | np.ndarray):
        return np.isin(values, np.asarray(list(cond), dtype=object if values.dtype == object
                                          else None))
    return values == cond


class ModularMLAccessMixin:
    """ModularML's accessor names over a host that has ``columns``, ``_where()``,
    ``_take_rows``, ``_fs`` and ``n_samples`` (FeatureSet and FeatureSetView)."""

    # ------------------------------------------------------------------ keys
    def _mml_keys(self, domain: str, include_rep_suffix: bool,
                  include_domain_prefix: bool) -> list[str]:
        cols = [c for c in self.columns if c.startswith(domain + ".")]
        names = {format_column(c, include_domain_prefix=include_domain_prefix,
                               include_rep_suffix=include_rep_suffix) for c in cols}
        return sorted(names)

    def get_feature_keys(self, *, include_rep_suffix: bool = True,
                         include_domain_prefix: bool = True) -> list[str]:
        """Feature column names, sorted (``['features.voltage.raw']`` by default).

        Args:
            include_rep_suffix: keep ``.raw``/``.transformed``.
            include_domain_prefix: keep ``features.``.

        Returns:
            The names.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gfk", {"v": [1.0], "y": [0.0]}, "v", "y")
            >>> fs.get_feature_keys(), fs.get_feature_keys(include_domain_prefix=False)
            (['features.v.raw'], ['v.raw'])
        """
        return self._mml_keys(DOMAIN_FEATURES, include_rep_suffix, include_domain_prefix)

    def get_target_keys(self, *, include_rep_suffix: bool = True,
                        include_domain_prefix: bool = True) -> list[str]:
        """Target column names, sorted (see :meth:`get_feature_keys`)."""
        return self._mml_keys(DOMAIN_TARGETS, include_rep_suffix, include_domain_prefix)

    def get_tag_keys(self, *, include_rep_suffix: bool = True,
                     include_domain_prefix: bool = True) -> list[str]:
        """Tag column names, sorted (see :meth:`get_feature_keys`)."""
        return self._mml_keys(DOMAIN_TAGS, include_rep_suffix, include_domain_prefix)

    def get_all_keys(self, *, include_rep_suffix: bool = True,
                     include_domain_prefix: bool = True) -> list[str]:
        """Every column name: features, targets, tags (each sorted), then ``sample_uuids``
        when the domain prefix is kept.

        Example:
            >>> from modjax import FeatureSet
            >>> FeatureSet.from_dict("gak", {"v": [1.0], "y": [0.0]}, "v", "y").get_all_keys()
            ['features.v.raw', 'targets.y.raw', 'sample_uuids']
        """
        out: list[str] = []
        for d in DOMAINS:
            out.extend(self._mml_keys(d, include_rep_suffix, include_domain_prefix))
        return out + [SAMPLE_UUIDS] if include_domain_prefix else out

    # ------------------------------------------------------------------ shapes / dtypes
    def _domain_columns(self, domain: str) -> list[str]:
        """Columns of ``domain`` in key (table) order, raw before transformed."""
        out = []
        for key in self.keys_of(domain):
            for rep in REPS:
                col = f"{domain}.{key}.{rep}"
                if col in self.columns:
                    out.append(col)
        return out

    def _domain_info(self, domain: str, what: Callable[[str], Any], include_rep_suffix: bool,
                     include_domain_prefix: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for col in self._domain_columns(domain):
            name = format_column(col, include_domain_prefix=include_domain_prefix,
                                 include_rep_suffix=include_rep_suffix)
            if name in out:
                raise ValueError(f"{self._where()}: key {name!r} is ambiguous without the rep "
                                 f"suffix (several reps exist); pass include_rep_suffix=True")
            out[name] = what(col)
        return out

    def _col_dtype(self, col: str) -> str:
        typ = self._fs._table.schema.field(col).type
        dt = leaf_dtype(typ)
        return "string" if dt is None or np.dtype(dt).kind == "O" else str(np.dtype(dt))

    def get_feature_shapes(self, *, include_rep_suffix: bool = True,
                           include_domain_prefix: bool = True) -> dict[str, tuple[int, ...]]:
        """``{column: per-sample shape}`` of the features, ModularML's key spelling.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gfs", {"v": np.ones((2, 3)), "y": [0., 1.]}, "v", "y")
            >>> fs.get_feature_shapes(), fs.get_target_shapes(include_rep_suffix=False)
            ({'features.v.raw': (3,)}, {'targets.y': ()})
        """
        return self._domain_info(DOMAIN_FEATURES, self._fs._column_shape, include_rep_suffix,
                                 include_domain_prefix)

    def get_target_shapes(self, *, include_rep_suffix: bool = True,
                          include_domain_prefix: bool = True) -> dict[str, tuple[int, ...]]:
        """``{column: per-sample shape}`` of the targets."""
        return self._domain_info(DOMAIN_TARGETS, self._fs._column_shape, include_rep_suffix,
                                 include_domain_prefix)

    def get_tag_shapes(self, *, include_rep_suffix: bool = True,
                       include_domain_prefix: bool = True) -> dict[str, tuple[int, ...]]:
        """``{column: per-sample shape}`` of the tags."""
        return self._domain_info(DOMAIN_TAGS, self._fs._column_shape, include_rep_suffix,
                                 include_domain_prefix)

    def get_feature_dtypes(self, *, include_rep_suffix: bool = True,
                           include_domain_prefix: bool = True) -> dict[str, str]:
        """``{column: dtype name}`` of the features (``'string'`` for text).

        Example:
            >>> from modjax import FeatureSet
            >>> FeatureSet.from_dict("gfd", {"v": [1.0], "y": [0]}, "v", "y").get_feature_dtypes()
            {'features.v.raw': 'float64'}
        """
        return self._domain_info(DOMAIN_FEATURES, self._col_dtype, include_rep_suffix,
                                 include_domain_prefix)

    def get_target_dtypes(self, *, include_rep_suffix: bool = True,
                          include_domain_prefix: bool = True) -> dict[str, str]:
        """``{column: dtype name}`` of the targets."""
        return self._domain_info(DOMAIN_TARGETS, self._col_dtype, include_rep_suffix,
                                 include_domain_prefix)

    def get_tag_dtypes(self, *, include_rep_suffix: bool = True,
                       include_domain_prefix: bool = True) -> dict[str, str]:
        """``{column: dtype name}`` of the tags."""
        return self._domain_info(DOMAIN_TAGS, self._col_dtype, include_rep_suffix,
                                 include_domain_prefix)

    # ------------------------------------------------------------------ data
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: DictFormat = ...,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> dict[str, np.ndarray]: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: NumpyFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> np.ndarray: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: JaxFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> jax.Array: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: DictJaxFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> dict[str, jax.Array]: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: DictListFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> dict[str, list[Any]]: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: DictTorchFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> dict[str, torch.Tensor]: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: PandasFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> pd.DataFrame: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: ListFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> list[Any]: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: TorchFormat,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> torch.Tensor: ...
    @overload
    def get_data(self, *, columns: Any = ..., features: Any = ..., targets: Any = ...,
                 tags: Any = ..., rep: str | None = ..., fmt: FormatName,
                 include_domain_prefix: bool = ..., include_rep_suffix: bool = ...) -> AccessorData: ...

    def get_data(self, *, columns: Any = None, features: Any = None, targets: Any = None,
                 tags: Any = None, rep: str | None = None, fmt: FormatName = "dict_numpy",
                 include_domain_prefix: bool = True, include_rep_suffix: bool = True
                 ) -> AccessorData:
        """Columns of several domains in one call (ModularML's unified accessor).

        Args:
            columns: full names (``"features.voltage.raw"``, ``"sample_uuids"``).
            features, targets, tags: key selectors per domain (wildcards allowed).
            rep: rep for selectors without one (None: every rep).
            fmt: ``"dict_numpy"`` (default), ``"pandas"``, ``"dict_list"``, ``"numpy"``
                (stacked on axis 1; shapes must agree) and the other :class:`DataFormat`\\ s.
            include_domain_prefix, include_rep_suffix: spelling of the returned keys.

        Returns:
            The data in ``fmt`` (``dict[str, numpy.ndarray]`` by default; overloaded on
            the ``fmt=`` literal like :meth:`get_features`).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gd2", {"v": [1.0, 2.0], "y": [0., 1.], "c": [7, 8]},
            ...                           "v", "y", "c")
            >>> sorted(fs.get_data(features="v", tags="*"))
            ['features.v.raw', 'tags.c.raw']
        """
        cols = resolve_column_selectors(self, columns=columns, features=features,
                                        targets=targets, tags=tags, rep=rep)
        data = {format_column(c, include_domain_prefix=include_domain_prefix,
                              include_rep_suffix=include_rep_suffix):
                self._take_rows(self._fs._numpy_column(c)) for c in cols}
        if len(data) != len(cols):
            raise ValueError(f"{self._where()}: columns {cols} collide once the prefix/suffix "
                             "is dropped; keep include_domain_prefix/include_rep_suffix")
        f = normalize_format(fmt)
        stacked = None
        if f in (DataFormat.NUMPY, DataFormat.JAX, DataFormat.TORCH, DataFormat.LIST):
            shapes = {k: v.shape[1:] for k, v in data.items()}
            if len(set(shapes.values())) > 1:
                raise ValueError(f"{self._where()}: cannot stack columns of different shapes "
                                 f"{shapes} into fmt={f.value!r}; use a dict format")
            stacked = np.stack(list(data.values()), axis=1) if data else \
                np.zeros((self.n_samples, 0))
            if f == DataFormat.JAX:
                import jax.numpy as jnp
                return jnp.asarray(stacked)
        return convert_columns(data, f, stacked=stacked)

    @overload
    def get_sample_uuids(self, fmt: Literal["numpy", "np"] = ...) -> np.ndarray: ...
    @overload
    def get_sample_uuids(self, fmt: Literal["list"]) -> list[str]: ...
    @overload
    def get_sample_uuids(self, fmt: FormatName) -> np.ndarray | list[str]: ...

    def get_sample_uuids(self, fmt: FormatName = "numpy") -> np.ndarray | list[str]:
        """Sample uuids of these rows (``fmt="numpy"``: an object array of str; ``"list"``).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gsu", {"v": [1.0, 2.0], "y": [0., 1.]}, "v", "y")
            >>> len(fs.get_sample_uuids()), len(fs.get_sample_uuids(fmt="list"))
            (2, 2)
        """
        uu = self._take_rows(self._fs._numpy_column(SAMPLE_UUIDS))
        return uu.tolist() if normalize_format(fmt) == DataFormat.LIST else uu

    def to_arrow(self) -> pa.Table:
        """These rows and columns as an Arrow table (columns ordered as :meth:`get_all_keys`).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("ta", {"v": [1.0, 2.0], "y": [0., 1.]}, "v", "y")
            >>> fs.take([1]).to_arrow().num_rows
            1
        """
        table = self._fs._table.select(self.get_all_keys())
        rows = getattr(self, "_rows", None)
        return table if rows is None else table.take(pa.array(rows))

    def to_pandas(self) -> pd.DataFrame:
        """These rows as a pandas DataFrame (array cells as arrays).

        Example:
            >>> from modjax import FeatureSet
            >>> FeatureSet.from_dict("tp", {"v": [1.0], "y": [0.]}, "v", "y").to_pandas().shape
            (1, 3)
        """
        return self.to_arrow().to_pandas()

    def summary(self) -> str:
        """A boxed text summary: label, sample count, columns per domain, splits.

        Example:
            >>> from modjax import FeatureSet
            >>> print(FeatureSet.from_dict("sm", {"v": [1.0], "y": [0.]}, "v", "y").summary())
            ┌─ FeatureSet ───────────┐
            │ label : sm             │
            │ n_samples : 1          │
            │ columns :              │
            │   features : ['v.raw'] │
            │   targets : ['y.raw']  │
            │   tags : []            │
            │ splits : []            │
            └────────────────────────┘
        """
        is_fs = self._fs is self
        title = "FeatureSet" if is_fs else "FeatureSetView"
        rows = [f"label : {self.label}", f"n_samples : {self.n_samples}", "columns :"]
        for d in DOMAINS:
            keys = self._mml_keys(d, True, False)
            rows.append(f"  {d} : {keys}")
        if is_fs:
            rows.append(f"splits : {self.available_splits}")
        else:
            rows.append(f"source : {self._fs.label}")
        width = max(len(r) for r in rows) + 2
        head = f"┌─ {title} " + "─" * max(0, width - len(title) - 3) + "┐"
        body = [f"│ {r}" + " " * (width - len(r) - 1) + "│" for r in rows]
        return "\n".join([head, *body, "└" + "─" * width + "┘"])

    @property
    def collection(self) -> Self:
        """ModularML's ``SampleCollection`` of this data: here the object itself (the
        Arrow table lives on the FeatureSet, views read it through their indices)."""
        return self

    def _get_rep_keys(self, domain: str, key: str) -> list[str]:
        """Reps present for ``domain.key`` (the SampleCollection helper ModularML code
        calls, e.g. to check whether a transformed rep exists)."""
        return [r for r in REPS if f"{domain}.{key}.{r}" in self.columns]

    # ------------------------------------------------------------------ rows
    def filter(self, conditions: Mapping[str, Any] | None = None, *, label: str | None = None,
               **column_conditions: Any) -> FeatureSetView:
        """Rows meeting every condition, as a view (no split is registered).

        Args:
            conditions: ``{column: condition}``; a column is ``[domain.]key[.rep]``, a
                condition a value (equality), a list/set (membership) or a callable
                (vectorised over scalar columns, per sample over array columns).
            label: view name (default ``"<label>_view"``).
            **column_conditions: more conditions keyed by bare key (``cell_id=[1, 2]``).

        Returns:
            The view (possibly empty).

        Raises:
            KeyError: an unknown column. TypeError: a value condition on array cells.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("flt", {"v": [1.0, 2.0, 3.0], "y": [0., 1., 1.],
            ...                                   "c": ["a", "b", "a"]}, "v", "y", "c")
            >>> fs.filter(conditions={"tags.c.raw": "a"}).indices.tolist()
            [0, 2]
            >>> fs.filter(c="a", v=lambda x: x > 1.5).indices.tolist()
            [2]
        """
        from modjax.data.splitters import resolve_column_values
        from modjax.data.view import FeatureSetView
        conds = {**dict(conditions or {}), **column_conditions}
        mask = np.ones(self.n_samples, dtype=bool)
        for column, cond in conds.items():
            values = resolve_column_values(self, str(column), where=f"filter on {self._where()}")
            mask &= _mask_for(np.asarray(values), cond, str(column))
        base = self._fs.label if self._fs is self else self.label
        return FeatureSetView(self, np.flatnonzero(mask),
                              label=label or f"{base}_view")

    def take_sample_uuids(self, uuids: Sequence[str] | np.ndarray, *,
                          label: str | None = None) -> FeatureSetView:
        """A view of the samples with these uuids (ModularML's name for ``take_uuids``).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("tsu", {"v": [1.0, 2.0], "y": [0., 1.]}, "v", "y")
            >>> fs.take_sample_uuids(fs.get_sample_uuids()[1:]).indices.tolist()
            [1]
        """
        from modjax.data.view import FeatureSetView
        return FeatureSetView(self._fs, self._fs.rows_for_uuids(uuids), label=label)


class SupportedScalers(Mapping):
    """``{name: class}`` of the scalers usable by name, built on first use so that
    importing modjax does not import scikit-learn (ModularML's ``mml.supported_scalers``).

    Example:
        >>> from modjax import supported_scalers
        >>> "SegmentedScaler" in supported_scalers and "MinMaxScaler" in supported_scalers
        True
    """

    def _table(self) -> dict[str, Any]:
        from modjax.data.scaling import Scaler
        return Scaler.get_supported_scalers()

    def __getitem__(self, name: str) -> Any:
        return self._table()[name]

    def __iter__(self) -> Any:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return repr(self._table())


supported_scalers = SupportedScalers()
