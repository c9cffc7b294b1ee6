"""Shared read accessors of FeatureSet and FeatureSetView.

Both classes expose the same ``get_features``/``get_targets``/``get_tags`` surface; a
FeatureSet reads all rows, a view reads its index array. Domain arrays stack keys on
axis 1: keys of per-sample shape ``s`` give ``(n, n_keys, *s)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from modjax.data.accessor_types import (
    AccessorData,
    DictFormat,
    DictJaxFormat,
    DictListFormat,
    DictTorchFormat,
    FormatName,
    JaxFormat,
    KeySelection,
    ListFormat,
    NumpyFormat,
    PandasFormat,
    TorchFormat,
)
from modjax.data.compat import ModularMLAccessMixin, format_column
from modjax.data.formats import (
    STACKED_FORMATS,
    DataFormat,
    convert_columns,
    is_format_name,
    normalize_format,
)
from modjax.data.schema import (
    DOMAIN_FEATURES,
    DOMAIN_TAGS,
    DOMAIN_TARGETS,
    REP_RAW,
    REP_TRANSFORMED,
    SAMPLE_UUIDS,
    check_domain,
    check_rep,
    column_name,
)
from modjax.errors import ShapeMismatchError, closest_names

if TYPE_CHECKING:
    import jax
    import pandas as pd
    import torch

    from modjax.data.featureset import FeatureSet

__all__ = ["DataAccessMixin", "FORMATS"]

FORMATS = ("numpy", "jax", "dict")


def as_key_list(keys: str | Sequence[str] | None) -> list[str] | None:
    if keys is None:
        return None
    if isinstance(keys, str):
        return [keys]
    return list(keys)


class DataAccessMixin(ModularMLAccessMixin):
    """Accessors over ``self._fs`` restricted to ``self._rows`` and ``self._allowed``.

    Hosts define ``_fs`` (the source FeatureSet), ``_rows`` (int64 indices or None for
    all rows) and ``_allowed`` (set of column names or None for all).
    """

    _fs: FeatureSet
    _rows: np.ndarray | None
    _allowed: frozenset[str] | None

    # ------------------------------------------------------------------ columns
    @property
    def columns(self) -> list[str]:
        """Column names visible here (``domain.key.rep``), without ``sample_uuids``."""
        cols = [c for c in self._fs._table.column_names if c != SAMPLE_UUIDS]
        if self._allowed is not None:
            cols = [c for c in cols if c in self._allowed]
        return cols

    def _keys(self, domain: str) -> list[str]:
        seen: dict[str, None] = {}
        prefix = domain + "."
        for c in self.columns:
            if c.startswith(prefix):
                seen[c.split(".")[1]] = None
        return list(seen)

    @property
    def feature_keys(self) -> list[str]:
        """Feature keys, in table order."""
        return self._keys(DOMAIN_FEATURES)

    @property
    def target_keys(self) -> list[str]:
        """Target keys, in table order."""
        return self._keys(DOMAIN_TARGETS)

    @property
    def tag_keys(self) -> list[str]:
        """Tag keys, in table order."""
        return self._keys(DOMAIN_TAGS)

    def keys_of(self, domain: str) -> list[str]:
        """Keys of ``domain`` (``"features"``, ``"targets"`` or ``"tags"``)."""
        return self._keys(check_domain(domain))

    @property
    def n_samples(self) -> int:
        """Number of samples (rows)."""
        return self._fs._table.num_rows if self._rows is None else int(self._rows.shape[0])

    def __len__(self) -> int:
        return self.n_samples

    # ------------------------------------------------------------------ resolution
    def _where(self) -> str:
        return f"FeatureSet {self._fs.label!r}"

    def resolve_keys(self, domain: str, keys: str | Sequence[str] | None) -> list[str]:
        """Validate ``keys`` of ``domain`` (all keys when None); KeyError names the culprit."""
        avail = self._keys(check_domain(domain))
        wanted = as_key_list(keys)
        if wanted is None:
            return avail
        for k in wanted:
            if k not in avail:
                raise KeyError(
                    f"{self._where()} has no {domain} key {k!r}; available {domain} keys: "
                    f"{avail} (did you mean {closest_names(str(k), avail)}?)")
        return wanted

    def resolve_rep(self, domain: str, key: str, rep: str | None) -> str:
        """``rep=None`` -> ``transformed`` if that column exists here, else ``raw``.

        Tags asked for as ``transformed`` without such a column read ``raw``.
        """
        if rep is None:
            tcol = column_name(domain, key, REP_TRANSFORMED)
            visible = self._fs._table.schema.get_field_index(tcol) >= 0 and (
                self._allowed is None or tcol in self._allowed)
            return REP_TRANSFORMED if visible else REP_RAW
        check_rep(rep)
        col = column_name(domain, key, rep)
        if domain == DOMAIN_TAGS and rep == REP_TRANSFORMED and col not in self.columns:
            # tags are metadata and never scaled: a reference asking for transformed
            # columns reads its tags raw (ModularML does the same)
            return REP_RAW
        if col not in self.columns:
            raise KeyError(f"{self._where()} has no column {col!r} (key {key!r} has reps "
                           f"{[r for r in (REP_RAW, REP_TRANSFORMED) if column_name(domain, key, r) in self.columns]})")
        return rep

    def get_shape(self, domain: str, key: str) -> tuple[int, ...]:
        """Per-sample shape of one key (``()`` for scalars)."""
        self.resolve_keys(domain, [key])
        return self._fs._column_shape(column_name(domain, key, REP_RAW))

    def shapes(self, domain: str = DOMAIN_FEATURES) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every key of ``domain``."""
        return {k: self.get_shape(domain, k) for k in self._keys(check_domain(domain))}

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{key: per-sample shape}`` of the features."""
        return self.shapes(DOMAIN_FEATURES)

    @property
    def target_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{key: per-sample shape}`` of the targets."""
        return self.shapes(DOMAIN_TARGETS)

    @property
    def tag_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{key: per-sample shape}`` of the tags."""
        return self.shapes(DOMAIN_TAGS)

    def stacked_shape(self, domain: str, keys: str | Sequence[str] | None = None) -> tuple[int, ...]:
        """Per-sample shape of the stacked domain array: ``(n_keys, *s)``."""
        ks = self.resolve_keys(domain, keys)
        shapes = {k: self.get_shape(domain, k) for k in ks}
        distinct = set(shapes.values())
        if len(distinct) > 1:
            raise ShapeMismatchError(
                f"{self._where()}: cannot stack {domain} keys of different per-sample shapes "
                f"{shapes}; select keys of one shape")
        return (len(ks), *(distinct.pop() if distinct else ()))

    # ------------------------------------------------------------------ data
    def _contiguous(self) -> slice | None:
        """``slice(a, b)`` when the rows are exactly ``a..b-1`` in order (checked once), so
        reads are zero-copy slices instead of gathers."""
        if self._rows is None:
            return slice(None)
        cached = getattr(self, "_contig_cache", False)
        if cached is not False:
            return cached
        r = self._rows
        out = None
        if r.size and int(r[-1]) - int(r[0]) == r.size - 1 and (
                r.size == 1 or bool((np.diff(r) == 1).all())):
            out = slice(int(r[0]), int(r[-1]) + 1)
        self._contig_cache = out
        return out

    def _take_rows(self, arr: np.ndarray) -> np.ndarray:
        sl = self._contiguous()
        return arr[sl] if sl is not None else arr[self._rows]

    def _column(self, domain: str, key: str, rep: str | None) -> np.ndarray:
        col = column_name(domain, key, self.resolve_rep(domain, key, rep))
        return self._take_rows(self._fs._numpy_column(col))

    @overload
    def get_domain(self, domain: str, keys: KeySelection = ..., *, rep: str | None = ...,
                   fmt: Literal["numpy"] = ...) -> np.ndarray: ...
    @overload
    def get_domain(self, domain: str, keys: KeySelection = ..., *, rep: str | None = ...,
                   fmt: Literal["jax"]) -> jax.Array: ...
    @overload
    def get_domain(self, domain: str, keys: KeySelection = ..., *, rep: str | None = ...,
                   fmt: Literal["dict"]) -> dict[str, np.ndarray]: ...
    @overload
    def get_domain(self, domain: str, keys: KeySelection = ..., *, rep: str | None = ...,
                   fmt: str) -> np.ndarray | jax.Array | dict[str, np.ndarray]: ...

    def get_domain(self, domain: str, keys: KeySelection = None, *, rep: str | None = None,
                   fmt: str = "numpy") -> np.ndarray | jax.Array | dict[str, np.ndarray]:
        """Data of one domain.

        Args:
            domain: ``"features"``, ``"targets"`` or ``"tags"``.
            keys: key or keys (default: all keys of the domain, in table order).
            rep: ``"raw"``, ``"transformed"`` or None (transformed when present).
            fmt: ``"numpy"`` / ``"jax"`` (stacked ``(n, n_keys, *s)``) or ``"dict"``
                (``{key: (n, *s)}`` numpy arrays).

        Returns:
            The stacked ``numpy.ndarray`` (``jax.Array`` for ``"jax"``) or the dict
            (typed per ``fmt`` literal for type checkers).

        Raises:
            KeyError: unknown key or rep. ShapeMismatchError: keys of different shapes
            stacked. TypeError: string values with ``fmt="jax"``.

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gd", {"a": [[1., 2.]], "b": [[3., 4.]], "y": [0.]},
            ...                           ["a", "b"], "y")
            >>> fs.get_domain("features").shape, fs.get_domain("features", "b", fmt="dict")
            ((1, 2, 2), {'b': array([[3., 4.]])})
        """
        if fmt not in FORMATS:
            raise ValueError(f"unknown fmt {fmt!r}; expected one of {list(FORMATS)} (the "
                             "ModularML formats are accepted by get_features/get_data)")
        ks = self.resolve_keys(domain, keys)
        if fmt == "dict":
            return {k: self._column(domain, k, rep) for k in ks}
        self.stacked_shape(domain, ks)
        if not ks:
            out = np.zeros((self.n_samples, 0), dtype=np.float32)
        elif len(ks) == 1 and self._contiguous() is not None:
            out = self._column(domain, ks[0], rep)[:, None]  # zero-copy view of the column
        else:
            out = np.stack([self._column(domain, k, rep) for k in ks], axis=1)
        if fmt == "jax":
            if out.dtype == object:
                raise TypeError(f"{self._where()}: {domain} {ks} hold strings; they stay on the "
                                "host (use fmt='numpy')")
            import jax.numpy as jnp
            return jnp.asarray(out)
        return out

    def _get_compat(self, domain: str, keys: Any, selectors: Any, rep: str | None, fmt: Any,
                    include_domain_prefix: bool, include_rep_suffix: bool) -> AccessorData:
        """Shared body of get_features/get_targets/get_tags (both call conventions)."""
        if keys is not None and is_format_name(keys) and (
                not isinstance(keys, str) or keys not in self._keys(domain)):
            # ModularML passes fmt first: get_features("numpy", features="voltage")
            keys, fmt = None, keys
        if selectors is not None:
            if keys is not None:
                raise TypeError(f"{self._where()}: give the {domain} keys once (positionally "
                                f"or as {domain}=), not both")
            keys = selectors
        if keys is not None:
            from modjax.data.references import select_keys
            keys, rep = select_keys(self, domain, keys, rep)
        f = normalize_format(fmt)
        if f in (DataFormat.NUMPY, DataFormat.JAX):
            return self.get_domain(domain, keys, rep=rep, fmt=f.value)
        ks = self.resolve_keys(domain, keys)
        cols = {}
        for k in ks:
            r = self.resolve_rep(domain, k, rep)
            name = format_column(column_name(domain, k, r),
                                 include_domain_prefix=include_domain_prefix,
                                 include_rep_suffix=include_rep_suffix)
            cols[name] = self._column(domain, k, r)
        stacked = self.get_domain(domain, ks, rep=rep) if f in STACKED_FORMATS else None
        return convert_columns(cols, f, stacked=stacked)

    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: NumpyFormat = ...,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> np.ndarray: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: JaxFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> jax.Array: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> dict[str, np.ndarray]: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictJaxFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> dict[str, jax.Array]: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictListFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> dict[str, list[Any]]: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictTorchFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> dict[str, torch.Tensor]: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: PandasFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> pd.DataFrame: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: ListFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> list[Any]: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: TorchFormat,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> torch.Tensor: ...
    @overload
    def get_features(self, keys: Any = ..., *, rep: str | None = ..., fmt: FormatName,
                     features: KeySelection = ..., include_domain_prefix: bool = ...,
                     include_rep_suffix: bool = ...) -> AccessorData: ...

    def get_features(self, keys: Any = None, *, rep: str | None = None,
                     fmt: FormatName = "numpy", features: KeySelection = None,
                     include_domain_prefix: bool = False,
                     include_rep_suffix: bool = False) -> AccessorData:
        """Feature data: stacked ``(n, n_keys, *s)`` by default.

        Args:
            keys: key(s) or wildcard selectors (default: all); ModularML's positional
                ``fmt`` is accepted here too (``get_features("numpy")``).
            rep: ``"raw"``, ``"transformed"`` or None (transformed when present).
            fmt: ``"numpy"``/``"jax"`` (stacked), ``"dict"``/``"dict_numpy"``,
                ``"pandas"``, ``"torch"``, ``"dict_list"`` ... (see :class:`DataFormat`).
            features: the keys, ModularML's spelling (instead of ``keys``).
            include_domain_prefix, include_rep_suffix: key spelling of keyed formats.

        Returns:
            The data in ``fmt``: ``numpy.ndarray`` (``"numpy"``), ``jax.Array``,
            ``dict[str, numpy.ndarray]`` (``"dict"``/``"dict_numpy"``),
            ``pandas.DataFrame`` (``"pandas"``), ``torch.Tensor``, ... The method is
            overloaded on the ``fmt=`` literal, so type checkers see the precise type
            (ModularML's positional fmt reads as ``keys`` to them: pass ``fmt=`` to get it).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gf", {"v": np.ones((3, 8)), "y": np.zeros(3)},
            ...                           "v", "y")
            >>> fs.get_features().shape, type(fs.get_features(fmt="jax")).__name__
            ((3, 1, 8), 'ArrayImpl')
            >>> fs.get_features(fmt="dict_numpy", features="v")["v"].shape
            (3, 8)
        """
        return self._get_compat(DOMAIN_FEATURES, keys, features, rep, fmt,
                                include_domain_prefix, include_rep_suffix)

    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: NumpyFormat = ...,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> np.ndarray: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: JaxFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> jax.Array: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> dict[str, np.ndarray]: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictJaxFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> dict[str, jax.Array]: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictListFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> dict[str, list[Any]]: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictTorchFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> dict[str, torch.Tensor]: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: PandasFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> pd.DataFrame: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: ListFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> list[Any]: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: TorchFormat,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> torch.Tensor: ...
    @overload
    def get_targets(self, keys: Any = ..., *, rep: str | None = ..., fmt: FormatName,
                    targets: KeySelection = ..., include_domain_prefix: bool = ...,
                    include_rep_suffix: bool = ...) -> AccessorData: ...

    def get_targets(self, keys: Any = None, *, rep: str | None = None,
                    fmt: FormatName = "numpy", targets: KeySelection = None,
                    include_domain_prefix: bool = False,
                    include_rep_suffix: bool = False) -> AccessorData:
        """Target data ``(n, n_keys, *s)`` by default (arguments as :meth:`get_features`)."""
        return self._get_compat(DOMAIN_TARGETS, keys, targets, rep, fmt,
                                include_domain_prefix, include_rep_suffix)

    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: NumpyFormat = ...,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> np.ndarray: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: JaxFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> jax.Array: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> dict[str, np.ndarray]: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictJaxFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> dict[str, jax.Array]: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictListFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> dict[str, list[Any]]: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: DictTorchFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> dict[str, torch.Tensor]: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: PandasFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> pd.DataFrame: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: ListFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> list[Any]: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: TorchFormat,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> torch.Tensor: ...
    @overload
    def get_tags(self, keys: Any = ..., *, rep: str | None = ..., fmt: FormatName,
                 tags: KeySelection = ..., include_domain_prefix: bool = ...,
                 include_rep_suffix: bool = ...) -> AccessorData: ...

    def get_tags(self, keys: Any = None, *, rep: str | None = None, fmt: FormatName = "numpy",
                 tags: KeySelection = None, include_domain_prefix: bool = False,
                 include_rep_suffix: bool = False) -> AccessorData:
        """Tag data (arguments as :meth:`get_features`); strings give object arrays."""
        return self._get_compat(DOMAIN_TAGS, keys, tags, rep, fmt,
                                include_domain_prefix, include_rep_suffix)

    @property
    def sample_uuids(self) -> np.ndarray:
        """Sample uuids (host-side object array of str)."""
        return self._take_rows(self._fs._numpy_column(SAMPLE_UUIDS))

    def get_column(self, column: str) -> np.ndarray:
        """One column by full name (``features.voltage.raw`` or ``sample_uuids``).

        Args:
            column: the full column name.

        Returns:
            Its values ``(n, *s)`` for these rows (read-only; strings as objects).

        Raises:
            KeyError: no such column here (names the closest ones).

        Example:
            >>> from modjax import FeatureSet
            >>> fs = FeatureSet.from_dict("gc", {"x": [1.0, 2.0], "y": [0.0, 1.0]}, "x", "y")
            >>> fs.take([1]).get_column("targets.y.raw").tolist()
            [1.0]
        """
        if column != SAMPLE_UUIDS and column not in self.columns:
            raise KeyError(f"{self._where()} has no column {column!r}; columns like it: "
                           f"{closest_names(column, self.columns)}")
        return self._take_rows(self._fs._numpy_column(column))
