"""Results queries: values keyed by named axes (``epoch``, ``batch``, ``label``, ...).

``PhaseResults.losses()``, ``.metrics()``, ``.callbacks()`` and ``.artifacts()`` and
``CVResults.collect()`` answer with an :class:`AxisSeries`: a mapping from coordinate
tuples to values that is filtered with :meth:`AxisSeries.where` and reduced along an axis
with :meth:`AxisSeries.collapse` (ModularML's query layer over the same records).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["AxisSeries", "ArtifactResult", "REDUCERS"]


def _concat(xs: list[Any]) -> Any:
    return np.concatenate([np.atleast_1d(np.asarray(x)) for x in xs], axis=0)


#: Reducers :meth:`AxisSeries.collapse` accepts by name.
REDUCERS: dict[str, Callable[[list[Any]], Any]] = {
    "mean": lambda xs: float(np.mean(xs)), "sum": lambda xs: float(np.sum(xs)),
    "min": lambda xs: float(np.min(xs)), "max": lambda xs: float(np.max(xs)),
    "first": lambda xs: xs[0], "last": lambda xs: xs[-1], "concat": _concat,
    "stack": lambda xs: np.stack([np.asarray(x) for x in xs]), "list": list,
}


@dataclasses.dataclass(frozen=True)
class ArtifactResult:
    """A named value a phase or callback produced at some point (an evaluation's results,
    a checkpoint path, a figure, ...).

    Attributes:
        name: artifact name.
        value: the value.
        epoch: epoch it belongs to (None: the whole phase).
        batch: batch it belongs to (None: epoch level).
        source: label of the callback (or phase) that produced it.
    """

    name: str
    value: Any
    epoch: int | None = None
    batch: int | None = None
    source: str | None = None


def _selector(want: Any) -> Callable[[Any], bool]:
    if callable(want) and not isinstance(want, type):
        return want
    if isinstance(want, (list, tuple, set, frozenset, range)):
        allowed = set(want)
        return lambda v: v in allowed
    return lambda v: v == want


class AxisSeries(Mapping):
    """Values keyed by coordinate tuples along named axes.

    Args:
        axes: axis names, in key order.
        data: ``{coordinates tuple: value}``.

    Example:
        >>> s = AxisSeries(("epoch", "batch"), {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 0.5})
        >>> s.where(epoch=0).values_list()
        [1.0, 3.0]
        >>> s.collapse("batch", "mean").to_dict()
        {0: 2.0, 1: 0.5}
        >>> s.axis_values("epoch"), s.shape
        ([0, 1], {'epoch': 2, 'batch': 2})
    """

    def __init__(self, axes: Iterable[str], data: Mapping[tuple[Hashable, ...], Any]) -> None:
        self.axes = tuple(axes)
        for key in data:
            if not isinstance(key, tuple) or len(key) != len(self.axes):
                raise ValueError(f"AxisSeries key {key!r} does not have one coordinate per axis "
                                 f"{self.axes}")
        self._data = dict(data)

    # ------------------------------------------------------------ mapping
    def __getitem__(self, key: Any) -> Any:
        return self._data[key if isinstance(key, tuple) else (key,)]

    def __iter__(self) -> Iterator[tuple[Hashable, ...]]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _axis(self, axis: str) -> int:
        if axis not in self.axes:
            raise KeyError(f"unknown axis {axis!r}; this series has axes {self.axes}")
        return self.axes.index(axis)

    def axis_values(self, axis: str) -> list[Hashable]:
        """Distinct values along ``axis``, in first-seen order."""
        i = self._axis(axis)
        return list(dict.fromkeys(k[i] for k in self._data))

    @property
    def shape(self) -> dict[str, int]:
        """Number of distinct values per axis."""
        return {a: len(self.axis_values(a)) for a in self.axes}

    def values_list(self) -> list[Any]:
        """The values, in key order."""
        return list(self._data.values())

    def to_dict(self) -> dict[Any, Any]:
        """``{key: value}`` with one-axis keys unwrapped to scalars."""
        return {(k[0] if len(self.axes) == 1 else k): v for k, v in self._data.items()}

    # ------------------------------------------------------------ queries
    def where(self, **coords: Any) -> AxisSeries:
        """Entries whose coordinates match: a value, a collection of values, or a predicate.

        Raises:
            KeyError: an unknown axis name (with the axes that exist).
        """
        tests = [(self._axis(a), _selector(w)) for a, w in coords.items()]
        return AxisSeries(self.axes, {k: v for k, v in self._data.items()
                                      if all(t(k[i]) for i, t in tests)})

    def at(self, **coords: Any) -> Any:
        """The single value at fully given coordinates."""
        missing = [a for a in self.axes if a not in coords]
        if missing:
            raise KeyError(f"at() needs every axis; missing {missing}")
        return self._data[tuple(coords[a] for a in self.axes)]

    def one(self) -> Any:
        """The only value (an error unless exactly one entry is left)."""
        if len(self._data) != 1:
            raise ValueError(f"expected exactly one entry, the series holds {len(self._data)}")
        return next(iter(self._data.values()))

    def collapse(self, axis: str, reducer: str | Callable[[list[Any]], Any] = "mean"
                 ) -> AxisSeries:
        """Reduce along ``axis`` (entries that differ only there are combined).

        Args:
            axis: the axis to remove.
            reducer: a name in :data:`REDUCERS` or a function of the list of values.

        Returns:
            A series without ``axis``.
        """
        i = self._axis(axis)
        if isinstance(reducer, str):
            if reducer not in REDUCERS:
                raise ValueError(f"unknown reducer {reducer!r}; expected one of "
                                 f"{sorted(REDUCERS)} or a function")
            reducer = REDUCERS[reducer]
        if not self._data:
            raise ValueError("cannot collapse an empty series")
        groups: dict[tuple[Hashable, ...], list[Any]] = {}
        for k, v in self._data.items():
            groups.setdefault(k[:i] + k[i + 1:], []).append(v)
        return AxisSeries(self.axes[:i] + self.axes[i + 1:],
                          {k: reducer(vs) for k, vs in groups.items()})

    def squeeze(self) -> AxisSeries:
        """Drop axes that hold a single value."""
        keep = [i for i, a in enumerate(self.axes) if len(self.axis_values(a)) > 1]
        return AxisSeries(tuple(self.axes[i] for i in keep),
                          {tuple(k[i] for i in keep): v for k, v in self._data.items()})

    def prepend(self, axis: str, value: Hashable) -> AxisSeries:
        """The same entries with a new first axis fixed at ``value``."""
        return AxisSeries((axis, *self.axes), {(value, *k): v for k, v in self._data.items()})

    @staticmethod
    def merge(parts: Iterable[AxisSeries]) -> AxisSeries:
        """Union of series with the same axes (a key in two of them is an error)."""
        parts = list(parts)
        if not parts:
            return AxisSeries((), {})
        axes, data = parts[0].axes, {}
        for p in parts:
            if p.axes != axes:
                raise ValueError(f"cannot merge series with axes {p.axes} and {axes}")
            clash = set(data) & set(p._data)
            if clash:
                raise KeyError(f"merged series share keys {sorted(clash)[:3]}")
            data.update(p._data)
        return AxisSeries(axes, data)

    def __repr__(self) -> str:
        return f"AxisSeries(axes={self.axes}, n={len(self._data)})"
