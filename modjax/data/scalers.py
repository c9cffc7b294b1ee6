"""Built-in scalers as pure numpy on 2-D ``(rows, columns)`` data.

Every scaler has ``fit``/``transform``/``inverse_transform`` (the scikit-learn
protocol), ``get_config`` (constructor kwargs, JSON) and ``get_state``/``set_state``
(learned arrays). Per-sample scalers learn nothing at ``fit``; their inverse uses the
statistics of the rows they last transformed.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN_SCALERS",
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "Normalizer",
    "Absolute",
    "Negate",
    "PerSampleMinMaxScaler",
    "PerSampleZeroStart",
    "SegmentedScaler",
]


def _nonzero(scale: np.ndarray) -> np.ndarray:
    """Constant columns get scale 1 (as in scikit-learn) instead of dividing by 0."""
    return np.where(scale == 0, 1.0, scale)


class _Builtin(abc.ABC):
    """Base: kwargs are the config, ``_state_keys`` the learned arrays."""

    _state_keys: tuple[str, ...] = ()
    invertible = True

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self.is_fit = False

    def get_config(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._kwargs.items()}

    def get_state(self) -> dict[str, Any]:
        st = {k: np.asarray(getattr(self, k)) for k in self._state_keys if hasattr(self, k)}
        st["is_fit"] = np.bool_(self.is_fit)
        return st

    def set_state(self, state: dict[str, Any]) -> None:
        for k in self._state_keys:
            if k in state:
                setattr(self, k, np.asarray(state[k]))
        self.is_fit = bool(state.get("is_fit", True))

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2-D data (rows, columns), got "
                             f"shape {x.shape}")
        return x

    def _require_fit(self) -> None:
        if not self.is_fit:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")

    def fit(self, x: np.ndarray) -> _Builtin:
        self._fit(self._check(x))
        self.is_fit = True
        return self

    def _fit(self, x: np.ndarray) -> None:  # noqa: B027 - optional hook, not abstract
        """Learn statistics from ``x``; stateless scalers learn nothing."""

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._require_fit()
        return self._transform(self._check(x))

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        self._require_fit()
        if not self.invertible:
            raise TypeError(f"{type(self).__name__} is not invertible (it discards "
                            "information); raw values are still available with rep='raw'")
        return self._inverse(self._check(x))

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    @abc.abstractmethod
    def _transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted transform to 2-D data."""

    def _inverse(self, x: np.ndarray) -> np.ndarray:
        """Undo :meth:`_transform`; only reached when ``invertible`` is True."""
        raise TypeError(f"{type(self).__name__} defines no inverse")


class StandardScaler(_Builtin):
    """``(x - mean) / std`` per column.

    Example:
        >>> StandardScaler().fit_transform(np.array([[1.0], [3.0]])).ravel().tolist()
        [-1.0, 1.0]
    """

    _state_keys = ("mean_", "scale_")

    def __init__(self, with_mean: bool = True, with_std: bool = True) -> None:
        super().__init__(with_mean=with_mean, with_std=with_std)

    def _fit(self, x):
        self.mean_ = x.mean(axis=0) if self._kwargs["with_mean"] else np.zeros(x.shape[1])
        self.scale_ = _nonzero(x.std(axis=0)) if self._kwargs["with_std"] else np.ones(x.shape[1])

    def _transform(self, x):
        return (x - self.mean_) / self.scale_

    def _inverse(self, x):
        return x * self.scale_ + self.mean_


class MinMaxScaler(_Builtin):
    """Map each column's [min, max] onto ``feature_range``.

    Example:
        >>> MinMaxScaler().fit_transform(np.array([[2.0], [4.0], [3.0]])).ravel().tolist()
        [0.0, 1.0, 0.5]
    """

    _state_keys = ("data_min_", "data_max_")

    def __init__(self, feature_range: Sequence[float] = (0.0, 1.0)) -> None:
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(f"MinMaxScaler feature_range {tuple(feature_range)} needs min < max")
        super().__init__(feature_range=(float(lo), float(hi)))

    def _fit(self, x):
        self.data_min_, self.data_max_ = x.min(axis=0), x.max(axis=0)

    def _scale(self):
        lo, hi = self._kwargs["feature_range"]
        return (hi - lo) / _nonzero(self.data_max_ - self.data_min_), lo

    def _transform(self, x):
        s, lo = self._scale()
        return (x - self.data_min_) * s + lo

    def _inverse(self, x):
        s, lo = self._scale()
        return (x - lo) / s + self.data_min_


class MaxAbsScaler(_Builtin):
    """Divide each column by its maximum absolute value."""

    _state_keys = ("max_abs_",)

    def _fit(self, x):
        self.max_abs_ = _nonzero(np.abs(x).max(axis=0))

    def _transform(self, x):
        return x / self.max_abs_

    def _inverse(self, x):
        return x * self.max_abs_


class RobustScaler(_Builtin):
    """``(x - median) / IQR`` per column (quantiles in ``quantile_range``)."""

    _state_keys = ("center_", "scale_")

    def __init__(self, with_centering: bool = True, with_scaling: bool = True,
                 quantile_range: Sequence[float] = (25.0, 75.0)) -> None:
        lo, hi = quantile_range
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"RobustScaler quantile_range {tuple(quantile_range)} must satisfy "
                             "0 <= low < high <= 100")
        super().__init__(with_centering=with_centering, with_scaling=with_scaling,
                         quantile_range=(float(lo), float(hi)))

    def _fit(self, x):
        lo, hi = self._kwargs["quantile_range"]
        q = np.percentile(x, [lo, 50.0, hi], axis=0)
        self.center_ = q[1] if self._kwargs["with_centering"] else np.zeros(x.shape[1])
        self.scale_ = _nonzero(q[2] - q[0]) if self._kwargs["with_scaling"] else \
            np.ones(x.shape[1])

    def _transform(self, x):
        return (x - self.center_) / self.scale_

    def _inverse(self, x):
        return x * self.scale_ + self.center_


class Normalizer(_Builtin):
    """Scale each row to unit ``norm`` (``"l1"``, ``"l2"`` or ``"max"``); not invertible."""

    invertible = False

    def __init__(self, norm: str = "l2") -> None:
        if norm not in ("l1", "l2", "max"):
            raise ValueError(f"Normalizer norm {norm!r}; expected 'l1', 'l2' or 'max'")
        super().__init__(norm=norm)

    def _transform(self, x):
        norm = self._kwargs["norm"]
        if norm == "l1":
            n = np.abs(x).sum(axis=1, keepdims=True)
        elif norm == "l2":
            n = np.sqrt((x * x).sum(axis=1, keepdims=True))
        else:
            n = np.abs(x).max(axis=1, keepdims=True)
        return x / _nonzero(n)


class Absolute(_Builtin):
    """``|x|``; not invertible."""

    invertible = False

    def _transform(self, x):
        return np.abs(x)


class Negate(_Builtin):
    """``-x``."""

    def _transform(self, x):
        return -x

    def _inverse(self, x):
        return -x


class _PerSample(_Builtin):
    """Row-wise scalers: inverse uses the statistics of the last transformed rows."""

    _state_keys = ("last_offset_", "last_scale_")

    @abc.abstractmethod
    def _stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row ``(offset, scale)`` with ``transform = (x - offset) / scale``."""

    def _transform(self, x):
        off, sc = self._stats(x)
        self.last_offset_, self.last_scale_ = off, sc
        return (x - off) / sc

    def _inverse(self, x):
        if not hasattr(self, "last_offset_") or len(self.last_offset_) != len(x):
            raise ValueError(f"{type(self).__name__} can only invert the {len(getattr(self, 'last_offset_', []))} "
                             f"rows it last transformed, got {len(x)} rows")
        return x * self.last_scale_ + self.last_offset_


class PerSampleMinMaxScaler(_PerSample):
    """Map each row's [min, max] onto [0, 1].

    Example:
        >>> PerSampleMinMaxScaler().fit_transform(np.array([[2.0, 4.0], [1.0, 2.0]])).tolist()
        [[0.0, 1.0], [0.0, 1.0]]
    """

    def _stats(self, x):
        lo = x.min(axis=1, keepdims=True)
        return lo, _nonzero(x.max(axis=1, keepdims=True) - lo)


class PerSampleZeroStart(_PerSample):
    """Subtract each row's first value (curves start at 0)."""

    def _stats(self, x):
        return x[:, :1], np.ones((len(x), 1))


def _segment_scaler_name(scaler: Any) -> str:
    """A SegmentedScaler's inner scaler as a config name (built-in or scikit-learn)."""
    from modjax.data.scaling import SKLEARN_ALLOWED, Scaler
    if isinstance(scaler, Scaler):
        scaler = type(scaler.scaler)
    if isinstance(scaler, type):
        scaler = scaler.__name__ if (BUILTIN_SCALERS.get(scaler.__name__) is scaler or
                                     (scaler.__module__.startswith("sklearn.") and
                                      scaler.__name__ in SKLEARN_ALLOWED)) else scaler
    if not isinstance(scaler, str) or scaler == "SegmentedScaler" or (
            scaler not in BUILTIN_SCALERS and scaler not in SKLEARN_ALLOWED):
        raise ValueError(f"SegmentedScaler scaler {scaler!r} must be a built-in or scikit-learn "
                         "scaler (name or class)")
    return scaler


class SegmentedScaler(_Builtin):
    """A separate scaler per column segment ``[boundaries[i], boundaries[i+1])``.

    Boundaries are segment edges, as in ModularML: ``[0, 20, 60, 70, 110]`` on 110
    columns makes four segments. When the last edge is below the column count, the last
    segment runs to the end (so ``[0, 2]`` on 3 columns is ``[0, 2)`` and ``[2, 3)``).

    Args:
        boundaries: increasing column indices starting at 0.
        scaler: the scaler of every segment: a built-in or scikit-learn scaler name, class
            or :class:`~modjax.data.Scaler`.
        scaler_kwargs: its kwargs.

    Example:
        >>> s = SegmentedScaler(boundaries=[0, 2], scaler="MinMaxScaler")
        >>> s.fit_transform(np.array([[0., 10., 5.], [1., 20., 7.]])).tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
        >>> s = SegmentedScaler(boundaries=[0, 1, 3], scaler=MinMaxScaler)
        >>> s.fit_transform(np.array([[0., 10., 5.], [1., 20., 7.]])).tolist()
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, boundaries: Sequence[int] = (0,), scaler: Any = "MinMaxScaler",
                 scaler_kwargs: dict[str, Any] | None = None) -> None:
        b = [int(v) for v in boundaries]
        if not b or b[0] != 0 or any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError(f"SegmentedScaler boundaries {b} must start at 0 and increase")
        name = _segment_scaler_name(scaler)
        super().__init__(boundaries=b, scaler=name, scaler_kwargs=dict(scaler_kwargs or {}))
        self._parts: list[Any] = []

    @property
    def scaler_name(self) -> str:
        """Name of the per-segment scaler."""
        return self._kwargs["scaler"]

    def _new_part(self) -> Any:
        from modjax.data.scaling import Scaler
        return Scaler(self._kwargs["scaler"], self._kwargs["scaler_kwargs"])

    def _segments(self, n_cols: int) -> list[slice]:
        b = self._kwargs["boundaries"]
        if b[-1] > n_cols:
            raise ValueError(f"SegmentedScaler boundaries {b} exceed the {n_cols} columns")
        edges = b if b[-1] == n_cols else [*b, n_cols]
        return [slice(lo, hi) for lo, hi in zip(edges, edges[1:])]

    def _fit(self, x):
        segs = self._segments(x.shape[1])
        self._parts = [self._new_part() for _ in segs]
        for part, seg in zip(self._parts, segs):
            part.fit(x[:, seg])

    def _apply(self, x, method: str):
        segs = self._segments(x.shape[1])
        if len(segs) != len(self._parts):
            raise ValueError(f"SegmentedScaler was fit on {len(self._parts)} segments, got data "
                             f"with {x.shape[1]} columns ({len(segs)} segments)")
        return np.concatenate([getattr(p, method)(x[:, s]) for p, s in zip(self._parts, segs)],
                              axis=1)

    def _transform(self, x):
        return self._apply(x, "transform")

    def _inverse(self, x):
        return self._apply(x, "inverse_transform")

    def get_state(self) -> dict[str, Any]:
        return {"is_fit": np.bool_(self.is_fit),
                "segments": [p.get_state() for p in self._parts]}

    def set_state(self, state: dict[str, Any]) -> None:
        parts = []
        for s in state["segments"]:
            p = self._new_part()
            p.set_state(s)
            parts.append(p)
        self._parts = parts
        self.is_fit = bool(state.get("is_fit", True))


BUILTIN_SCALERS: dict[str, type] = {
    c.__name__: c for c in (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, Normalizer,
                            Absolute, Negate, PerSampleMinMaxScaler, PerSampleZeroStart,
                            SegmentedScaler)
}
