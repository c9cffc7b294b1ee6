"""The Observer's value store: typed growable columns, per-tag batch buffers and epoch
history (the storage behind :class:`~modjax.observe.observer.Observer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.observe.trends import Trend

__all__ = ["Column", "Series", "scalar_value", "to_host"]


def scalar_value(owner: str, tag: str, value: Any) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(
            f"{owner}: tag {tag!r} holds an array of shape {arr.shape}; collect/record take "
            f"scalars (tag a reduced value such as a loss, or record(tag, float(x.mean())))"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{owner}: tag {tag!r} value has dtype {arr.dtype}; expected a number")
    return float(arr.reshape(()))


def to_host(tree: Any, extra: Any) -> tuple[Any, Any]:
    """``jax.device_get((tree, extra))``: one transfer for all device arrays, if any.

    Host-only input (what a phase passes) skips JAX's tree walk, a fair share of the
    per-epoch cost.
    """
    import jax

    leaves = jax.tree_util.tree_leaves((tree, extra))
    if any(isinstance(x, jax.Array) for x in leaves):
        return jax.device_get((tree, extra))
    return tree, extra


class Column:
    """An append-only numeric column with amortised O(1) appends and O(1) array views."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: Any, values: Any = ()) -> None:
        init = np.asarray(values, dtype=dtype).reshape(-1)
        self._buf = np.empty(max(16, 2 * init.size), dtype=dtype)
        self._buf[: init.size] = init
        self._n = init.size

    def append(self, v: Any) -> None:
        if self._n == self._buf.size:
            self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
        self._buf[self._n] = v
        self._n += 1

    def view(self) -> np.ndarray:
        return self._buf[: self._n]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Any:
        return self.view()[i].item()

    def __iter__(self):  # noqa: ANN204
        return iter(self.view().tolist())


class Series:
    """Buffers and epoch history of one kind of metric (values, or timings).

    Buffers hold float64 chunks (one per ``push``) so a scanned epoch's per-batch array
    goes in without a Python loop; ``flush`` concatenates once.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, list[np.ndarray]] = {}
        self.weights: dict[str, list[np.ndarray]] = {}
        self.history: dict[str, Column] = {}
        self.epochs: dict[str, Column] = {}
        # Trends are immutable: one per tag is built after each flush, then shared
        self._trends: dict[str, Trend] = {}

    def push(self, tag: str, values: Any, weights: Any | None) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0:
            return
        w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        self.buffers.setdefault(tag, []).append(v)
        self.weights.setdefault(tag, []).append(w)

    def buffered(self, tag: str) -> np.ndarray | None:
        chunks = self.buffers.get(tag)
        return np.concatenate(chunks) if chunks else None

    def pending(self, tags: Sequence[str]) -> list[str]:
        keys = tags if tags else list(self.buffers)
        return [t for t in keys if self.buffers.get(t)]

    def flush(self, tags: Sequence[str], epoch: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.pending(tags):
            v = np.concatenate(self.buffers.pop(t))
            w = np.concatenate(self.weights.pop(t))
            total = w.sum()
            mean = float(np.dot(v, w) / total) if total > 0 else float("nan")
            if t not in self.history:
                self.history[t] = Column(np.float64)
                self.epochs[t] = Column(np.int64)
            self.history[t].append(mean)
            self.epochs[t].append(epoch)
            self._trends.pop(t, None)
            out[t] = mean
        return out

    def reset(self, tags: Sequence[str]) -> None:
        for t in tags if tags else list(self.history):
            self.history.pop(t, None)
            self.epochs.pop(t, None)
            self._trends.pop(t, None)

    def trend(self, tag: str) -> Trend:
        t = self._trends.get(tag)
        if t is None:
            if tag not in self.history:
                return Trend((), tag=tag)
            t = Trend(self.history[tag].view(), tag=tag, epochs=self.epochs[tag].view())
            self._trends[tag] = t
        return t

    def get_state(self) -> dict[str, Any]:
        def cat(d):
            return {k: np.concatenate(v) for k, v in d.items() if v}

        return {"history": {k: c.view().copy() for k, c in self.history.items()},
                "epochs": {k: c.view().copy() for k, c in self.epochs.items()},
                "buffers": cat(self.buffers), "buffer_weights": cat(self.weights)}

    @classmethod
    def from_state(cls, owner: str, state: Mapping[str, Any]) -> Series:
        s = cls()
        try:
            s.history = {k: Column(np.float64, v) for k, v in state["history"].items()}
            s.epochs = {k: Column(np.int64, v) for k, v in state["epochs"].items()}
            s.buffers = {k: [np.array(v, dtype=np.float64).reshape(-1)]
                         for k, v in state["buffers"].items()}
            s.weights = {k: [np.array(v, dtype=np.float64).reshape(-1)]
                         for k, v in state["buffer_weights"].items()}
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"{owner}: malformed observer state ({e!r}); expected keys "
                             f"history/epochs/buffers/buffer_weights of {{tag: array}}") from e
        for k in s.history:
            if len(s.epochs.get(k, ())) != len(s.history[k]):
                raise ValueError(f"{owner}: state for tag {k!r} has {len(s.history[k])} values "
                                 f"but {len(s.epochs.get(k, ()))} epoch numbers")
        for k in s.buffers:
            if k not in s.weights or s.weights[k][0].shape != s.buffers[k][0].shape:
                raise ValueError(f"{owner}: buffer state for tag {k!r} has mismatched weights")
        return s
