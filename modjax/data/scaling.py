"""Scaler wrapper, ScalerRecord and the FeatureSet transform log.

``fs.fit_transform`` fits a scaler on one split, transforms every sample and writes
``domain.key.transformed`` beside ``raw``. Undoing replays the remaining records from
the raw columns (exact, no inverse round-off); ``unscale_data_for_cols`` inverts
model outputs newest-record-first.
"""

from __future__ import annotations

import copy as _copy
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modjax.data.access import as_key_list
from modjax.data.chunked_scaling import (
    fit_transform_chunked,
    is_out_of_core,
    rebuild_domain_chunked,
)
from modjax.data.scalers import BUILTIN_SCALERS
from modjax.data.schema import REP_RAW, REP_TRANSFORMED, check_domain, column_name
from modjax.errors import ConfigError
from modjax.io.registry import register

if TYPE_CHECKING:
    from modjax.data.featureset import FeatureSet

__all__ = ["Scaler", "ScalerRecord"]

_SKLEARN_BY_NAME = ("PowerTransformer", "QuantileTransformer")
#: scikit-learn transformers a config may name without ``allow_packaged_code``: classes of
#: ``sklearn.preprocessing`` that keep the data's shape. Loading never constructs
#: anything else unless the caller opts in.
SKLEARN_ALLOWED = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler",
                   "Normalizer", "PowerTransformer", "QuantileTransformer", "Binarizer")


def _sklearn_class(name: str) -> type:
    try:
        mod = importlib.import_module("sklearn.preprocessing")
    except ImportError:  # pragma: no cover - sklearn is a test dependency
        raise ConfigError(f"scaler {name!r} needs scikit-learn (pip install modjax[sklearn])") \
            from None
    return getattr(mod, name)


def resolve_scaler_class(module: str, name: str, *, allow_packaged_code: bool = False) -> type:
    """The scaler class a config names, refusing anything not known to be a scaler.

    Without ``allow_packaged_code`` only the scikit-learn transformers of
    :data:`SKLEARN_ALLOWED` are constructed, and only after checking that they are
    ``TransformerMixin`` subclasses; any other module or name is a ``ConfigError``
    before anything is imported or called. With it, ``module`` is imported and
    ``name`` (a qualified name) must be a class with ``fit`` and ``transform``.

    Raises:
        ConfigError: the class is not allowed, not found, or not a transformer.

    Example:
        >>> resolve_scaler_class("sklearn.preprocessing._data", "StandardScaler").__name__
        'StandardScaler'
        >>> resolve_scaler_class("sklearn.datasets._covtype", "GzipFile")
        Traceback (most recent call last):
        ...
        modjax.errors.ConfigError: scaler class 'GzipFile' from module 'sklearn.datasets._covtype' is not an allowed scaler (built-ins and scikit-learn ['StandardScaler', 'MinMaxScaler', 'MaxAbsScaler', 'RobustScaler', 'Normalizer', 'PowerTransformer', 'QuantileTransformer', 'Binarizer']); pass allow_packaged_code=True to import your own scaler classes
    """
    where = f"scaler class {name!r} from module {module!r}"
    if isinstance(module, str) and module.split(".")[:2] == ["sklearn", "preprocessing"] \
            and name in SKLEARN_ALLOWED:
        cls = _sklearn_class(name)
        from sklearn.base import TransformerMixin
        if not (isinstance(cls, type) and issubclass(cls, TransformerMixin)):
            raise ConfigError(f"{where} is not a scikit-learn transformer")
        return cls
    if not allow_packaged_code:
        raise ConfigError(
            f"{where} is not an allowed scaler (built-ins and scikit-learn "
            f"{list(SKLEARN_ALLOWED)}); pass allow_packaged_code=True to import your own "
            "scaler classes")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {where}: {e}") from e
    if not isinstance(obj, type) or not all(callable(getattr(obj, m, None))
                                            for m in ("fit", "transform")):
        raise ConfigError(f"{where} is not a scaler class (a class with fit and transform)")
    return obj


def _estimator_state(obj: Any) -> dict[str, Any]:
    """Fitted attributes (``name_``) of an sklearn-style object, nested estimators too."""
    out: dict[str, Any] = {}
    for k, v in vars(obj).items():
        if hasattr(v, "get_params") and hasattr(v, "fit"):
            out[k] = {"__estimator__": f"{type(v).__module__}:{type(v).__qualname__}",
                      "params": {p: q for p, q in v.get_params().items()
                                 if isinstance(q, str | int | float | bool | type(None))},
                      "state": _estimator_state(v)}
        elif k.endswith("_") and not k.startswith("__") and isinstance(
                v, np.ndarray | np.generic | int | float | bool | str):
            out[k] = v
    return out


def _set_estimator_state(obj: Any, state: Mapping[str, Any], *,
                         allow_packaged_code: bool = False) -> None:
    for k, v in state.items():
        if isinstance(v, Mapping) and "__estimator__" in v:
            mod, _, qual = str(v["__estimator__"]).partition(":")
            cls = resolve_scaler_class(mod, qual, allow_packaged_code=allow_packaged_code)
            inner = cls(**v["params"])
            _set_estimator_state(inner, v["state"], allow_packaged_code=allow_packaged_code)
            setattr(obj, k, inner)
        else:
            # checkpoint round trips turn Python scalars into 0-d arrays; undo that
            setattr(obj, k, v.item() if isinstance(v, np.ndarray | np.generic) and np.ndim(v) == 0
                    else v)


@register("Scaler")
class Scaler:
    """A scaler by registered name, class or instance (sklearn protocol).

    Args:
        scaler: a built-in name (``"StandardScaler"``, ``"MinMaxScaler"``, ...,
            ``"PowerTransformer"``/``"QuantileTransformer"`` via scikit-learn), a class, or
            an instance with ``fit``/``transform`` (``inverse_transform`` for unscaling).
        scaler_kwargs: constructor kwargs (with a name or class).

    Example:
        >>> s = Scaler("MinMaxScaler", {"feature_range": (-1, 1)})
        >>> s.fit_transform(np.array([[0.0], [2.0]])).ravel().tolist()
        [-1.0, 1.0]
    """

    def __init__(self, scaler: str | type | Any, scaler_kwargs: Mapping[str, Any] | None = None
                 ) -> None:
        kwargs = dict(scaler_kwargs or {})
        if isinstance(scaler, str):
            if scaler in BUILTIN_SCALERS:
                cls = BUILTIN_SCALERS[scaler]
            elif scaler in _SKLEARN_BY_NAME:
                cls = _sklearn_class(scaler)
            else:
                raise ValueError(f"unknown scaler {scaler!r}; registered scalers: "
                                 f"{sorted(self.get_supported_scalers())}")
            obj = cls(**kwargs)
        elif isinstance(scaler, type):
            obj = scaler(**kwargs)
        else:
            if kwargs:
                raise ValueError("scaler_kwargs are only used with a scaler name or class")
            obj = scaler
        for m in ("fit", "transform"):
            if not callable(getattr(obj, m, None)):
                raise TypeError(f"scaler {type(obj).__name__} has no {m}() method; expected a "
                                "Scaler, a built-in name or an sklearn-style transformer")
        self.scaler = obj
        self._kwargs = kwargs
        # set by from_config: nested estimators in a loaded state follow the same permission
        self._allow_packaged_code = False

    @classmethod
    def get_supported_scalers(cls) -> dict[str, Any]:
        """``{name: class}`` of every scaler usable by name."""
        out: dict[str, Any] = dict(BUILTIN_SCALERS)
        for n in _SKLEARN_BY_NAME:
            try:
                out[n] = _sklearn_class(n)
            except ConfigError:  # pragma: no cover
                pass
        return out

    @property
    def name(self) -> str:
        return type(self.scaler).__name__

    @property
    def scaler_name(self) -> str:
        """ModularML's name for :attr:`name`."""
        return self.name

    @property
    def is_fit(self) -> bool:
        if hasattr(self.scaler, "is_fit"):
            return bool(self.scaler.is_fit)
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self.scaler))

    def fit(self, data: np.ndarray) -> Scaler:
        self.scaler.fit(np.asarray(data))
        return self

    def transform(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(self.scaler.transform(np.asarray(data)))

    def fit_transform(self, data: np.ndarray) -> np.ndarray:
        return self.fit(data).transform(data)

    def inverse_transform(self, data: np.ndarray) -> np.ndarray:
        """Map transformed 2-D data back to raw units.

        Raises:
            TypeError: the scaler has no inverse (e.g. ``Normalizer``, ``Absolute``).

        Example:
            >>> s = Scaler("StandardScaler").fit(np.array([[1.0], [3.0]]))
            >>> s.inverse_transform(np.array([[1.0]])).tolist()
            [[3.0]]
        """
        if not callable(getattr(self.scaler, "inverse_transform", None)):
            raise TypeError(f"scaler {self.name} has no inverse_transform")
        return np.asarray(self.scaler.inverse_transform(np.asarray(data)))

    def clone_unfitted(self) -> Scaler:
        """A fresh, unfitted Scaler with the same configuration.

        Example:
            >>> s = Scaler("MinMaxScaler", {"feature_range": (-1, 1)}).fit(np.eye(2))
            >>> c = s.clone_unfitted()
            >>> c.is_fit, c.get_config() == s.get_config()
            (False, True)
        """
        # the class is already imported here, so this loads no code
        return Scaler.from_config(self.get_config(), allow_packaged_code=True)

    # ------------------------------------------------------------------ config / state
    def get_config(self) -> dict[str, Any]:
        """``{"scaler": name, "scaler_kwargs": {...}, "module": ...}`` (JSON)."""
        obj = self.scaler
        if type(obj).__name__ in BUILTIN_SCALERS and isinstance(
                obj, BUILTIN_SCALERS[type(obj).__name__]):
            return {"scaler": type(obj).__name__, "scaler_kwargs": obj.get_config(),
                    "module": "modjax.data.scalers"}
        params = obj.get_params() if hasattr(obj, "get_params") else dict(self._kwargs)
        # tuples are tagged: scikit-learn's parameter validation rejects a list where it
        # wants a tuple (MinMaxScaler.feature_range), so from_config must give tuples back
        params = {k: ({"__tuple__": list(v)} if isinstance(v, tuple) else v)
                  for k, v in params.items()
                  if isinstance(v, str | int | float | bool | tuple | list | type(None))}
        return {"scaler": type(obj).__name__, "scaler_kwargs": params,
                "module": type(obj).__module__}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, allow_packaged_code: bool = False
                    ) -> Scaler:
        name, mod = config["scaler"], config.get("module", "modjax.data.scalers")
        kwargs = {k: (tuple(v["__tuple__"]) if isinstance(v, Mapping) and "__tuple__" in v
                      else v) for k, v in config.get("scaler_kwargs", {}).items()}
        if name in BUILTIN_SCALERS and mod == "modjax.data.scalers":
            return cls(name, kwargs)
        out = cls(resolve_scaler_class(mod, name, allow_packaged_code=allow_packaged_code),
                  kwargs)
        out._allow_packaged_code = allow_packaged_code
        return out

    def get_state(self) -> dict[str, Any]:
        """Learned values (pytree of arrays/scalars; no pickles).

        Example:
            >>> s = Scaler("MinMaxScaler").fit(np.array([[0.0], [4.0]]))
            >>> fresh = Scaler.from_config(s.get_config())
            >>> fresh.set_state(s.get_state())
            >>> fresh.transform(np.array([[2.0]])).tolist()
            [[0.5]]
        """
        if hasattr(self.scaler, "get_state"):
            return self.scaler.get_state()
        return _estimator_state(self.scaler)

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore learned values from :meth:`get_state` (scikit-learn estimators nested
        in the state are rebuilt from scikit-learn only)."""
        if hasattr(self.scaler, "set_state"):
            self.scaler.set_state(dict(state))
        else:
            _set_estimator_state(self.scaler, state,
                                 allow_packaged_code=self._allow_packaged_code)

    def __repr__(self) -> str:
        return f"Scaler({self.name}, fit={self.is_fit})"


@register("ScalerRecord")
@dataclass
class ScalerRecord:
    """One applied transform: domain, keys, fitted scaler, fit split, merged axes."""

    domain: str
    keys: tuple[str, ...]
    scaler: Scaler
    fit_to_split: str | None = None
    merged_axes: tuple[int, ...] | None = None

    def get_config(self) -> dict[str, Any]:
        """JSON config (the scaler's learned values are in FeatureSet.get_state)."""
        return {"domain": self.domain, "keys": list(self.keys),
                "scaler": self.scaler.get_config(), "fit_to_split": self.fit_to_split,
                "merged_axes": None if self.merged_axes is None else list(self.merged_axes)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, allow_packaged_code: bool = False
                    ) -> ScalerRecord:
        """Rebuild; a scaler class outside the allow-list needs ``allow_packaged_code``."""
        ma = config.get("merged_axes")
        scaler = Scaler.from_config(config["scaler"], allow_packaged_code=allow_packaged_code)
        return cls(config["domain"], tuple(config["keys"]), scaler,
                   config.get("fit_to_split"), None if ma is None else tuple(ma))


# ---------------------------------------------------------------------------- flatten helpers
def _norm_axes(merged_axes: int | Sequence[int] | None, ndim: int, where: str) -> tuple[int, ...]:
    if merged_axes is None:
        return ()
    axes = (merged_axes,) if isinstance(merged_axes, int | np.integer) else tuple(merged_axes)
    out = []
    for a in axes:
        a = int(a)
        if a < 0:
            a += ndim
        if not 1 <= a < ndim:
            raise ValueError(f"{where}: merged_axes {merged_axes} must name axes 1..{ndim - 1} of "
                             f"the stacked data (axis 0 is the sample axis)")
        out.append(a)
    return tuple(sorted(set(out)))


def flatten(data: np.ndarray, merged: tuple[int, ...]) -> np.ndarray:
    """``(n, k, *s)`` -> 2-D: rows = sample axis x merged axes, columns = the rest."""
    rest = [a for a in range(1, data.ndim) if a not in merged]
    moved = np.transpose(data, (0, *merged, *rest))
    n_rows = int(np.prod([data.shape[a] for a in (0, *merged)]))
    return moved.reshape(n_rows, -1)


def unflatten(flat: np.ndarray, shape: tuple[int, ...], merged: tuple[int, ...]) -> np.ndarray:
    rest = [a for a in range(1, len(shape)) if a not in merged]
    order = (0, *merged, *rest)
    moved = flat.reshape([shape[a] for a in order])
    return np.transpose(moved, np.argsort(order))


def _apply(rec: ScalerRecord, data: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    merged = rec.merged_axes or ()
    flat = flatten(data, merged)
    out = np.asarray(rec.scaler.inverse_transform(flat) if inverse else
                     rec.scaler.transform(flat))
    if out.shape != flat.shape:
        # e.g. PCA: a transformed column must keep its raw column's shape
        raise ValueError(
            f"{rec.scaler.name} on {rec.domain} {list(rec.keys)} returned shape {out.shape} "
            f"for input {flat.shape}; a scaler must keep the shape of the data (reduce "
            "dimensions in a graph node instead)")
    return unflatten(out, data.shape, merged)


def _out_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)


# ---------------------------------------------------------------------------- FeatureSet ops
def fit_transform(fs: FeatureSet, scaler: Any, *, domain: str, keys: Any = None,
                  fit_to_split: str | None = None, merged_axes: Any = None) -> ScalerRecord:
    """Fit ``scaler`` on ``fit_to_split`` (or all rows) and transform every sample.

    See :meth:`FeatureSet.fit_transform`.
    """
    check_domain(domain)
    where = f"fit_transform on FeatureSet {fs.label!r}"
    ks = fs.resolve_keys(domain, keys)
    if not ks:
        raise ValueError(f"{where}: domain {domain!r} has no keys to transform")
    if fit_to_split is not None and fit_to_split not in fs.available_splits:
        raise KeyError(f"{where}: fit_to_split {fit_to_split!r} is not a split; available "
                       f"splits: {fs.available_splits}")
    for k in ks:
        # the column's dtype only: an out-of-core column is not read for it
        if fs._fs._numpy_column(column_name(domain, k, REP_RAW)).dtype == object:
            raise TypeError(f"{where}: {domain} key {k!r} holds strings and cannot be scaled")
    out_of_core = is_out_of_core(fs)
    # an out-of-core FeatureSet is read chunk by chunk below, never whole
    data = None if out_of_core else fs.get_domain(domain, ks)  # current rep: transforms chain
    ndim = len(fs.stacked_shape(domain, ks)) + 1 if data is None else data.ndim
    merged = _norm_axes(merged_axes, ndim, where)
    fitted = _private_copy(scaler)
    if data is None:
        return fit_transform_chunked(fs, fitted, domain=domain, keys=ks,
                                     fit_to_split=fit_to_split, merged=merged, where=where)
    rows = fs.get_split(fit_to_split).indices if fit_to_split is not None else None
    fit_data = data if rows is None else data[rows]
    if fit_data.shape[0] == 0:
        raise ValueError(f"{where}: split {fit_to_split!r} is empty; nothing to fit")
    _check_finite(fit_data, ks, domain, fit_to_split, where)
    fitted.fit(flatten(fit_data.astype(np.float64), merged))
    rec = ScalerRecord(domain, tuple(ks), fitted, fit_to_split, merged or None)
    out = _apply(rec, data.astype(np.float64)).astype(_out_dtype(data))
    new_cols = {column_name(domain, k, REP_TRANSFORMED): out[:, i] for i, k in enumerate(ks)}
    table = fs.with_columns(new_cols)
    fs._swap_table(table)
    fs._scaler_records.append(rec)
    return rec


def _private_copy(scaler: Any) -> Scaler:
    """The Scaler to fit: the caller's object is never mutated or shared between records."""
    if isinstance(scaler, Scaler):
        return Scaler(_copy.deepcopy(scaler.scaler))
    if isinstance(scaler, str | type):
        return Scaler(scaler)
    return Scaler(_copy.deepcopy(scaler))


def _check_finite(data: np.ndarray, keys: Sequence[str], domain: str, split: str | None,
                  where: str) -> None:
    """One NaN would make a fitted statistic NaN (every transformed value NaN) and one
    inf collapses a min/max range: refuse both, naming the column."""
    finite = np.isfinite(data.astype(np.float64)).reshape(data.shape[0], len(keys), -1)
    bad = ~finite.all(axis=(0, 2))
    if bad.any():
        k = list(keys)[int(np.argmax(bad))]
        n = int((~finite[:, int(np.argmax(bad))]).any(axis=1).sum())
        raise ValueError(
            f"{where}: column {domain}.{k} has {n} non-finite (NaN or inf) value(s) in the rows "
            f"the scaler is fitted on ({'all rows' if split is None else f'split {split!r}'}); "
            "a scaler fitted on them would make every value NaN or collapse the range. Clean "
            "or drop those rows first")


def _rebuild_domain(fs: FeatureSet, domain: str, records: Sequence[ScalerRecord],
                    base: Any) -> Any:
    """``base`` with the ``transformed`` columns of ``domain`` replayed from raw."""
    if is_out_of_core(fs):
        return rebuild_domain_chunked(fs, domain, records, base)
    values: dict[str, np.ndarray] = {}
    touched: set[str] = set()
    for rec in records:
        if rec.domain != domain:
            continue
        cur = np.stack([values[k] if k in values else
                        fs.get_domain(domain, k, rep=REP_RAW)[:, 0] for k in rec.keys], axis=1)
        out = _apply(rec, cur.astype(np.float64)).astype(_out_dtype(cur))
        for i, k in enumerate(rec.keys):
            values[k] = out[:, i]
            touched.add(k)
    table = base
    for k in fs.keys_of(domain):
        col = column_name(domain, k, REP_TRANSFORMED)
        i = table.schema.get_field_index(col)
        if k not in touched and i >= 0:
            table = table.remove_column(i)
    return fs.with_columns({column_name(domain, k, REP_TRANSFORMED): v
                            for k, v in values.items()}, base=table)


def _undo(fs: FeatureSet, targets: list[ScalerRecord], where: str) -> None:
    recs = fs._scaler_records
    for t in targets:
        i = next(j for j, r in enumerate(recs) if r is t)
        for later in recs[i + 1:]:
            if later in targets or later.domain != t.domain:
                continue
            if set(later.keys) & set(t.keys):
                raise ValueError(
                    f"{where}: cannot undo {t.scaler.name} on {t.domain} {list(t.keys)} because "
                    f"the later {later.scaler.name} on {later.domain} {list(later.keys)} depends "
                    "on it; undo that one first")
    remaining = [r for r in recs if not any(r is t for t in targets)]
    table = fs.table
    for dom in sorted({t.domain for t in targets}):
        table = _rebuild_domain(fs, dom, remaining, table)
    fs._swap_table(table)
    fs._scaler_records[:] = remaining


def undo_last_transform(fs: FeatureSet, domain: str, keys: Any = None) -> None:
    """Undo the newest transform on exactly ``keys`` of ``domain``."""
    check_domain(domain)
    where = f"undo_last_transform on FeatureSet {fs.label!r}"
    ks = fs.resolve_keys(domain, keys)
    match = [r for r in fs._scaler_records if r.domain == domain and set(r.keys) == set(ks)]
    if not match:
        applied = [(r.domain, list(r.keys)) for r in fs._scaler_records]
        raise ValueError(f"{where}: no transform was applied to {domain} {ks}; applied "
                         f"transforms: {applied}")
    _undo(fs, [match[-1]], where)


def undo_all_transforms(fs: FeatureSet, domain: str | None = None, keys: Any = None) -> None:
    """Undo every transform touching ``keys`` of ``domain`` (all when None)."""
    where = f"undo_all_transforms on FeatureSet {fs.label!r}"
    if domain is None:
        if keys is not None:
            raise ValueError(f"{where}: give a domain with keys")
        targets = list(fs._scaler_records)
    else:
        check_domain(domain)
        ks = set(fs.resolve_keys(domain, keys))
        targets = [r for r in fs._scaler_records if r.domain == domain and set(r.keys) & ks]
    if targets:
        _undo(fs, targets, where)


def iter_scalers_on_cols(fs: FeatureSet, *, domain: str, columns: Any) -> list[Scaler]:
    """Scalers to invert for ``columns`` of ``domain``, newest first."""
    return [r.scaler for r in _records_on(fs, domain, columns)[::-1]]


def _records_on(fs: FeatureSet, domain: str, columns: Any) -> list[ScalerRecord]:
    check_domain(domain)
    cols = fs.resolve_keys(domain, as_key_list(columns))
    out = []
    for r in fs._scaler_records:
        if r.domain != domain or not set(r.keys) & set(cols):
            continue
        if not set(r.keys) <= set(cols):
            raise ValueError(
                f"FeatureSet {fs.label!r}: {r.scaler.name} was fitted jointly on {domain} "
                f"{list(r.keys)}; columns {cols} alone cannot be unscaled (include "
                f"{sorted(set(r.keys) - set(cols))})")
        out.append(r)
    return out


def unscale_data_for_cols(fs: FeatureSet, *, data: Any, domain: str, columns: Any) -> np.ndarray:
    """Invert the transforms of ``columns`` on user data ``(n, n_cols, *s)`` (or ``(n, *s)``
    for one column)."""
    cols = fs.resolve_keys(domain, as_key_list(columns))
    recs = _records_on(fs, domain, cols)
    arr = np.asarray(data)
    shape = fs.stacked_shape(domain, cols)
    squeeze = False
    if arr.shape[1:] != shape:
        if len(cols) == 1 and arr.shape[1:] == shape[1:]:
            arr, squeeze = arr[:, None], True
        else:
            raise ValueError(f"unscale_data_for_cols on FeatureSet {fs.label!r}: data of shape "
                             f"{arr.shape} does not match {domain} {cols} of per-sample shape "
                             f"{shape}")
    out = arr.astype(np.float64)
    for r in reversed(recs):
        pos = [cols.index(k) for k in r.keys]
        out[:, pos] = _apply(r, out[:, pos], inverse=True)
    out = out.astype(_out_dtype(arr))
    return out[:, 0] if squeeze else out
