"""Profile data: per-node durations and per-level wall-clock of one profiled forward.

A graph runs a *profiled* forward only when profiling is enabled (an eager pass that
blocks on each node's output so the host clock measures device work); the jitted
path never sees any of this, which is why profiling costs nothing when disabled.
:class:`ProfileRecorder` is the helper the graph uses while running that pass;
:class:`Profile` is the immutable result handed to ``on_profile`` hooks, to
``Observer.set_profile`` (for timing trends) and to ``dot_with_profile``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jax

from modjax.observe.logs import format_duration

__all__ = [
    "NodeTiming",
    "LevelTiming",
    "Profile",
    "ProfileHook",
    "ProfileRecorder",
    "heat_color",
    "format_node_time",
]


def format_node_time(seconds: float) -> str:
    """A node or level duration: microseconds under 1 ms, else :func:`format_duration`.

    Training-log durations round to whole milliseconds (as goDl's ``FormatDuration``);
    profiled nodes are often faster than that, and a row of ``0ms`` says nothing.

    Example:
        >>> format_node_time(0.00042), format_node_time(0.0123), format_node_time(2.5)
        ('420us', '12ms', '2.5s')
    """
    s = float(seconds)
    if 0.0 <= s < 0.9995e-3:
        return f"{int(round(s * 1e6))}us"
    return format_duration(s)


@dataclass(frozen=True)
class NodeTiming:
    """Execution time of one node in a profiled forward.

    Attributes:
        node_id: the node's id (unique in its graph, e.g. ``"Dense_0"``).
        tag: the node's tag, ``""`` when untagged.
        duration: wall-clock seconds of the node's computation (outputs ready).
        level: topological level index of the node.
    """

    node_id: str
    tag: str
    duration: float
    level: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"node_id": self.node_id, "tag": self.tag, "duration": self.duration,
                "level": self.level}


@dataclass(frozen=True)
class LevelTiming:
    """Execution time of one topological level (nodes with no dependency on each other).

    Attributes:
        index: level index.
        wall_clock: seconds from the level's start to its last node's outputs ready.
        sum_nodes: sum of the level's node durations.
        num_nodes: how many nodes the level has.
    """

    index: int
    wall_clock: float
    sum_nodes: float
    num_nodes: int

    @property
    def parallelism(self) -> float:
        """``sum_nodes / wall_clock``: above 1 means the level's nodes overlapped.

        1.0 for single-node levels or a zero wall-clock.
        """
        if self.num_nodes <= 1 or self.wall_clock <= 0.0:
            return 1.0
        return self.sum_nodes / self.wall_clock

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"index": self.index, "wall_clock": self.wall_clock,
                "sum_nodes": self.sum_nodes, "num_nodes": self.num_nodes}


@dataclass(frozen=True)
class Profile:
    """Timing data of one profiled forward pass.

    Attributes:
        total: wall-clock seconds of the whole pass.
        levels: per-level timings, in execution order.
        nodes: per-node timings, in execution order.

    Example:
        >>> p = Profile(0.010, (LevelTiming(0, 0.004, 0.006, 2),),
        ...             (NodeTiming("a", "enc", 0.004, 0), NodeTiming("b", "", 0.002, 0)))
        >>> p.timing("enc"), p.timing("b"), p.levels[0].parallelism
        (0.004, 0.002, 1.5)
        >>> p.fraction("a")
        1.0
    """

    total: float
    levels: tuple[LevelTiming, ...] = ()
    nodes: tuple[NodeTiming, ...] = ()
    _by_key: dict[str, NodeTiming] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        by_key: dict[str, NodeTiming] = {}
        for n in self.nodes:
            by_key[n.node_id] = n
        for n in self.nodes:  # tags win over ids when a tag equals another node's id
            if n.tag:
                by_key[n.tag] = n
        object.__setattr__(self, "_by_key", by_key)

    def node(self, tag_or_id: str) -> NodeTiming:
        """The timing of the node with this tag (or, failing that, this node id).

        Raises:
            KeyError: naming the tag and the profiled tags/ids.
        """
        try:
            return self._by_key[tag_or_id]
        except KeyError:
            from modjax.errors import closest_names

            raise KeyError(
                f"no profiled node tagged or named {tag_or_id!r}; "
                f"did you mean {closest_names(tag_or_id, self._by_key)}?"
            ) from None

    def timing(self, tag_or_id: str) -> float:
        """Seconds spent in the node with this tag or id; ``0.0`` when it was not profiled."""
        n = self._by_key.get(tag_or_id)
        return n.duration if n is not None else 0.0

    def tag_timings(self) -> dict[str, float]:
        """``{tag: seconds}`` for every tagged node (what ``collect_timings`` reads)."""
        return {n.tag: n.duration for n in self.nodes if n.tag}

    def fraction(self, tag_or_id: str) -> float:
        """The node's duration relative to the slowest node (0..1; what colours the DOT)."""
        slowest = max((n.duration for n in self.nodes), default=0.0)
        return self.timing(tag_or_id) / slowest if slowest > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (round-trips through :meth:`from_dict`)."""
        return {"total": self.total, "levels": [lv.to_dict() for lv in self.levels],
                "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a Profile written by :meth:`to_dict`."""
        return cls(float(data["total"]), tuple(LevelTiming(**lv) for lv in data["levels"]),
                   tuple(NodeTiming(**n) for n in data["nodes"]))

    def summary(self) -> str:
        """Human-readable table: total, then each level and its nodes."""
        lines = [f"forward: {format_node_time(self.total)} ({len(self.nodes)} nodes, "
                 f"{len(self.levels)} levels)"]
        by_level: dict[int, list[NodeTiming]] = {}
        for n in self.nodes:
            by_level.setdefault(n.level, []).append(n)
        for lv in self.levels:
            par = f"  parallelism {lv.parallelism:.2f}x" if lv.num_nodes > 1 else ""
            lines.append(f"  level {lv.index}: {format_node_time(lv.wall_clock)}{par}")
            for n in by_level.get(lv.index, []):
                name = f"{n.node_id} [{n.tag}]" if n.tag else n.node_id
                lines.append(f"    {name}: {format_node_time(n.duration)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


#: Signature of an ``on_profile`` hook: called with each completed Profile.
ProfileHook = Callable[[Profile], None]


def heat_color(fraction: float) -> str:
    """Green -> yellow -> red hex colour for a relative cost in [0, 1] (for DOT nodes).

    Example:
        >>> heat_color(0.0), heat_color(0.5), heat_color(1.0)
        ('#00c800', '#c8c800', '#c80000')
    """
    f = min(max(float(fraction), 0.0), 1.0)
    r = int(round(200 * min(1.0, 2 * f)))
    g = int(round(200 * min(1.0, 2 * (1 - f))))
    return f"#{r:02x}{g:02x}00"


class ProfileRecorder:
    """Collects node and level timings while a graph runs a profiled (eager) forward.

    The graph creates one per profiled pass, wraps each level in :meth:`level` and each
    node in :meth:`node`, then calls :meth:`finish`. :meth:`node` blocks until the
    node's outputs are ready so the host clock measures the device work, not just the
    dispatch. Never use it inside ``jax.jit``.

    Args:
        clock: seconds clock (monotonic); injectable for tests.

    Example:
        >>> rec = ProfileRecorder()
        >>> with rec.level(0):
        ...     y = rec.node("Dense_0", "hidden", lambda v: v * 2, 3.0)
        >>> p = rec.finish()
        >>> y, [n.tag for n in p.nodes], p.levels[0].num_nodes
        (6.0, ['hidden'], 1)
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self._nodes: list[NodeTiming] = []
        self._levels: list[LevelTiming] = []
        self._level: int | None = None

    @contextmanager
    def level(self, index: int) -> Iterator[None]:
        """Time one topological level; nodes run inside are attributed to it."""
        if self._level is not None:
            raise RuntimeError(f"profile level {index} opened inside level {self._level}")
        self._level = index
        first = len(self._nodes)
        t0 = self._clock()
        try:
            yield
        finally:
            wall = self._clock() - t0
            self._level = None
        members = self._nodes[first:]
        self._levels.append(LevelTiming(index, wall, sum(n.duration for n in members),
                                        len(members)))

    def node(self, node_id: str, tag: str | None, fn: Callable[..., Any], *args: Any,
             **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)``, wait for its outputs, record the duration.

        Args:
            node_id: the node's id.
            tag: the node's tag (``None``/``""`` when untagged).
            fn: the node's computation.

        Returns:
            Whatever ``fn`` returned.
        """
        t0 = self._clock()
        out = jax.block_until_ready(fn(*args, **kwargs))
        dt = self._clock() - t0
        lvl = self._level if self._level is not None else (
            self._levels[-1].index + 1 if self._levels else 0)
        self._nodes.append(NodeTiming(node_id, tag or "", dt, lvl))
        return out

    def add_node(self, node_id: str, tag: str | None, duration: float, level: int) -> None:
        """Record a node timing measured elsewhere."""
        self._nodes.append(NodeTiming(node_id, tag or "", float(duration), int(level)))

    def finish(self) -> Profile:
        """Close the pass and return its Profile (total = time since the recorder was made)."""
        return Profile(self._clock() - self._start, tuple(self._levels), tuple(self._nodes))
