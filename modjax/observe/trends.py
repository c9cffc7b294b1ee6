"""Statistical queries over an epoch-level series: ``Trend`` and ``TrendGroup``.

A :class:`Trend` is what ``observer.trend("loss")`` returns: one value per flushed
epoch, with the queries that drive training decisions (reduce the learning rate when
the loss stalls, unfreeze a block when it improves). Every query takes a ``window``:
a positive window looks at the last ``window`` values, zero or negative at all of
them. Queries on empty or too-short series return safe zero values (``0.0`` or
``False``), as in goDl, so a callback can ask from epoch one without guarding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["Trend", "TrendGroup"]


def _as_series(values: Iterable[float] | np.ndarray) -> np.ndarray:
    arr = np.array(values, dtype=np.float64, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"a Trend holds a 1-D series of scalars; got an array of shape {arr.shape}")
    return arr


def _ols_slope(y: np.ndarray) -> float:
    """Least-squares slope of ``y`` against ``0..n-1`` (what ``np.polyfit(x, y, 1)[0]`` gives)."""
    n = y.shape[0]
    if n < 2:
        return 0.0
    x = np.arange(n, dtype=np.float64)
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


class Trend:
    """An immutable epoch-level time series with statistical queries.

    Args:
        values: the series, oldest first (copied).
        tag: the tag the series belongs to (used in TrendGroup and error messages).
        epochs: 1-based epoch (flush) numbers of each value; defaults to ``1..n``.

    Example:
        >>> t = Trend([1.0, 0.8, 0.5, 0.45, 0.44], tag="loss")
        >>> t.latest(), len(t), t.improving(3)
        (0.44, 5, True)
        >>> round(t.slope(0), 3)
        -0.147
        >>> t.stalled(2, tol=0.05), t.converged(2, tol=1e-3)
        (True, True)
    """

    __slots__ = ("_values", "_epochs", "tag")

    def __init__(
        self,
        values: Iterable[float] | np.ndarray = (),
        tag: str | None = None,
        epochs: Iterable[int] | np.ndarray | None = None,
    ) -> None:
        self._values = _as_series(values)
        self._values.setflags(write=False)
        if epochs is None:
            ep = np.arange(1, self._values.shape[0] + 1, dtype=np.int64)
        else:
            ep = np.array(epochs, dtype=np.int64, copy=True)
            if ep.shape != self._values.shape:
                raise ValueError(
                    f"Trend {tag!r}: {ep.shape[0] if ep.ndim == 1 else ep.shape} epoch numbers "
                    f"for {self._values.shape[0]} values"
                )
        ep.setflags(write=False)
        self._epochs = ep
        self.tag = tag

    # -- the series -----------------------------------------------------------------
    def values(self) -> np.ndarray:
        """All values, oldest first (a read-only float64 array)."""
        return self._values

    def epochs(self) -> np.ndarray:
        """The 1-based epoch (flush) number of each value."""
        return self._epochs

    def last(self, n: int) -> np.ndarray:
        """The last ``n`` values (all of them when ``n`` exceeds the length, none for ``n<=0``)."""
        if n <= 0:
            return self._values[:0]
        return self._values[-n:]

    def latest(self) -> float:
        """The most recent value, or ``0.0`` for an empty series."""
        return float(self._values[-1]) if self._values.size else 0.0

    def __len__(self) -> int:
        return int(self._values.shape[0])

    def __iter__(self) -> Iterator[float]:
        return iter(self._values.tolist())

    def __getitem__(self, i):  # noqa: ANN001 - int or slice, like a list
        out = self._values[i]
        return float(out) if np.ndim(out) == 0 else out

    def __repr__(self) -> str:
        tail = ", ".join(f"{v:.4g}" for v in self.last(5))
        more = "..., " if len(self) > 5 else ""
        return f"Trend(tag={self.tag!r}, n={len(self)}, values=[{more}{tail}])"

    def _window(self, window: int) -> np.ndarray:
        return self._values if window <= 0 else self._values[-window:]

    # -- summary statistics ---------------------------------------------------------
    def min(self) -> float:
        """Smallest value, or ``0.0`` for an empty series."""
        return float(self._values.min()) if self._values.size else 0.0

    def max(self) -> float:
        """Largest value, or ``0.0`` for an empty series."""
        return float(self._values.max()) if self._values.size else 0.0

    def mean(self) -> float:
        """Arithmetic mean, or ``0.0`` for an empty series."""
        return float(self._values.mean()) if self._values.size else 0.0

    def argmin(self) -> int:
        """Epoch number (1-based) of the smallest value, or ``0`` when empty."""
        return int(self._epochs[int(np.argmin(self._values))]) if self._values.size else 0

    def argmax(self) -> int:
        """Epoch number (1-based) of the largest value, or ``0`` when empty."""
        return int(self._epochs[int(np.argmax(self._values))]) if self._values.size else 0

    # -- queries --------------------------------------------------------------------
    def slope(self, window: int = 0) -> float:
        """OLS slope per epoch over the last ``window`` values (all when ``window <= 0``).

        Args:
            window: how many of the latest values to fit.

        Returns:
            The slope (negative = decreasing); ``0.0`` with fewer than two values.
        """
        return _ols_slope(self._window(window))

    def improving(self, window: int = 0) -> bool:
        """Whether the metric decreases (slope < 0) over the last ``window`` values.

        "Improving" means going down, as for a loss; for a metric to maximise use
        ``trend.slope(w) > 0``. False with fewer than two values.
        """
        y = self._window(window)
        return bool(y.shape[0] >= 2 and _ols_slope(y) < 0.0)

    def stalled(self, window: int, tol: float) -> bool:
        """Whether the metric stopped moving: ``|slope| < tol`` over the last ``window`` values.

        Unlike :meth:`slope`, this needs a full window (at least ``window`` values, and at
        least two): "stalled for 5 epochs" is not claimed after 2.

        Args:
            window: epochs to look at (``<= 0``: the whole series).
            tol: slope magnitude per epoch under which the metric counts as flat.
        """
        y = self._window(window)
        if y.shape[0] < max(window, 2):
            return False
        return bool(abs(_ols_slope(y)) < tol)

    def converged(self, window: int, tol: float) -> bool:
        """Whether the metric stabilised: population variance of the last ``window`` values < tol.

        Needs a full window (at least ``window`` values, and at least two).

        Args:
            window: epochs to look at (``<= 0``: the whole series).
            tol: variance threshold.
        """
        y = self._window(window)
        if y.shape[0] < max(window, 2):
            return False
        return bool(float(np.var(y)) < tol)


class TrendGroup(Sequence[Trend]):
    """Several trends queried together (a tag group such as ``head_0, head_1, ...``).

    Args:
        trends: the member trends, in order.

    Example:
        >>> g = TrendGroup([Trend([3.0, 2.0, 1.0], tag="head_0"), Trend([1.0, 1.0, 1.5], tag="head_1")])
        >>> g.tags, g.any_improving(0), g.all_improving(0)
        (['head_0', 'head_1'], True, False)
        >>> g.slopes(0).tolist(), g.mean_slope(0)
        ([-1.0, 0.25], -0.375)
    """

    __slots__ = ("_trends",)

    def __init__(self, trends: Iterable[Trend] = ()) -> None:
        self._trends = tuple(trends)
        for t in self._trends:
            if not isinstance(t, Trend):
                raise TypeError(f"TrendGroup members must be Trend, got {type(t).__name__}")

    @property
    def tags(self) -> list[str | None]:
        """The member tags, in order."""
        return [t.tag for t in self._trends]

    def __len__(self) -> int:
        return len(self._trends)

    def __getitem__(self, key):  # noqa: ANN001 - index, slice or tag name
        if isinstance(key, str):
            for t in self._trends:
                if t.tag == key:
                    return t
            raise KeyError(f"TrendGroup has no trend tagged {key!r}; tags: {self.tags}")
        if isinstance(key, slice):
            return TrendGroup(self._trends[key])
        return self._trends[key]

    def __repr__(self) -> str:
        return f"TrendGroup(tags={self.tags})"

    def slopes(self, window: int = 0) -> np.ndarray:
        """The slope of each member over the last ``window`` values."""
        return np.array([t.slope(window) for t in self._trends], dtype=np.float64)

    def mean_slope(self, window: int = 0) -> float:
        """Average slope of the members; ``0.0`` for an empty group."""
        return float(self.slopes(window).mean()) if self._trends else 0.0

    def all_improving(self, window: int = 0) -> bool:
        """Every member improving (False for an empty group)."""
        return bool(self._trends) and all(t.improving(window) for t in self._trends)

    def any_improving(self, window: int = 0) -> bool:
        """At least one member improving."""
        return any(t.improving(window) for t in self._trends)

    def all_stalled(self, window: int, tol: float) -> bool:
        """Every member stalled (False for an empty group)."""
        return bool(self._trends) and all(t.stalled(window, tol) for t in self._trends)

    def any_stalled(self, window: int, tol: float) -> bool:
        """At least one member stalled."""
        return any(t.stalled(window, tol) for t in self._trends)

    def all_converged(self, window: int, tol: float) -> bool:
        """Every member converged (False for an empty group)."""
        return bool(self._trends) and all(t.converged(window, tol) for t in self._trends)

    def any_converged(self, window: int, tol: float) -> bool:
        """At least one member converged."""
        return any(t.converged(window, tol) for t in self._trends)

    def latest(self) -> dict[str | None, float]:
        """``{tag: latest value}`` of every member."""
        return {t.tag: t.latest() for t in self._trends}
