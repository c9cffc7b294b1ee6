"""The Observer: batch buffers -> epoch history, trends, ETA, timings, hooks.

Every built flow ``Graph`` owns one Observer and delegates its observation methods to
it; a training loop (or ``TrainPhase``) feeds it. The cycle is the one of goDl:

* ``collect(*tags)`` snapshots scalar tagged outputs of the last forward, and
  ``record(tag, *values)`` injects values computed elsewhere, into a *batch buffer*;
* ``flush()`` promotes each buffer's mean to the *epoch history*, stamps the wall
  clock, and calls the ``on_flush`` hook;
* ``trend(tag)`` / ``trends(group)`` query the history; ``eta``, ``elapsed``,
  ``last_flush_duration`` read the stamps.

Scan-driven training never touches the host per batch: the per-batch metrics come
out of ``lax.scan`` as arrays and are pushed in one call per epoch with
:meth:`Observer.record_batches`, then flushed.

Tree (as in flodl): a parent observer can :meth:`~Observer.attach_child` the observers
of labelled child graphs. ``flush()`` and ``latest_metrics()`` then recurse and name
child metrics with dotted paths (``encoder.loss``); ``flush_local()`` and
``latest_metrics_local()`` stay on this observer. A dotted tag whose first segment is
an attached child's label is routed to that child everywhere a tag is accepted.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modjax.errors import LabelPathError, closest_names
from modjax.io.registry import register
from modjax.notebook import ObserverNotebookRepr
from modjax.observe.observer_batches import ObserverBatchesMixin
from modjax.observe.observer_timing import ObserverTimingMixin
from modjax.observe.profiling import Profile, ProfileHook
from modjax.observe.series import Series, scalar_value
from modjax.observe.trends import Trend, TrendGroup

__all__ = ["Observer", "LogHook", "FlushHook"]

#: ``on_log`` hook: receives ``{tag: value}`` (values as tagged, arrays or scalars).
LogHook = Callable[[dict[str, Any]], None]
#: ``on_flush`` hook: receives ``{tag: epoch mean}`` of the tags just flushed.
FlushHook = Callable[[dict[str, float]], None]


@register("Observer")
class Observer(ObserverBatchesMixin, ObserverTimingMixin, ObserverNotebookRepr):
    """Observation state of one graph (or one training loop): buffers, history, hooks.

    Args:
        tag_groups: ``{group: [member tags]}``; group names expand to their members in
            ``trends``, ``plot_html``, ``export_trends``, ``write_log``, ``flush``.
        name: who owns this observer (a graph label), used in messages.
        clock: wall-clock in seconds (``time.time``); injectable for tests.

    Example:
        >>> obs = Observer(tag_groups={"head": ["head_0", "head_1"]})
        >>> for epoch_losses in ([0.9, 0.7], [0.5, 0.3]):
        ...     for v in epoch_losses:
        ...         obs.record("loss", v)
        ...     obs.flush()
        {'loss': 0.8}
        {'loss': 0.4}
        >>> obs.trend("loss").values().tolist(), obs.flush_count()
        ([0.8, 0.4], 2)
        >>> obs.collect("head_0", "head_1", values={"head_0": 1.0, "head_1": 2.0})
        >>> obs.flush("head")
        {'head_0': 1.0, 'head_1': 2.0}
        >>> obs.trends("head").tags
        ['head_0', 'head_1']
    """

    def __init__(
        self,
        tag_groups: Mapping[str, Sequence[str]] | None = None,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._clock = clock
        self._tag_groups: dict[str, tuple[str, ...]] = {}
        for g, members in (tag_groups or {}).items():
            self.add_tag_group(g, members)
        self._values = Series()
        self._timings = Series()
        self._flush_times: list[float] = []
        self._timing_flush_count = 0
        self._start: float | None = None
        self._last_tagged: dict[str, Any] = {}
        self._children: dict[str, Observer] = {}
        self._profiling = False
        self._profile: Profile | None = None
        self._on_log: LogHook | None = None
        self._on_flush: FlushHook | None = None
        self._on_profile: ProfileHook | None = None

    # ------------------------------------------------------------------ identity
    @property
    def _owner(self) -> str:
        return f"observer of {self.name!r}" if self.name else "observer"

    def __repr__(self) -> str:
        return (f"Observer(name={self.name!r}, tags={sorted(self._values.history)}, "
                f"flushes={self.flush_count()}, children={list(self._children)})")

    # ---------------------------------------------------------------- tag groups
    def add_tag_group(self, name: str, members: Sequence[str]) -> None:
        """Register a tag group (``FlowBuilder.tag_group`` does this on build).

        Raises:
            ValueError: empty member list, or a group name that is also one of its members.
        """
        if isinstance(members, str):
            raise TypeError(f"{self._owner}: tag group {name!r} members must be a list of "
                            f"tags, got the string {members!r}")
        members = tuple(members)
        if not members:
            raise ValueError(f"{self._owner}: tag group {name!r} has no members")
        if name in members:
            raise ValueError(f"{self._owner}: tag group {name!r} lists itself as a member")
        self._tag_groups[name] = members

    @property
    def tag_groups(self) -> dict[str, tuple[str, ...]]:
        """``{group: member tags}`` (a copy)."""
        return dict(self._tag_groups)

    def tag_group(self, name: str) -> tuple[str, ...] | None:
        """Members of a tag group, or ``None`` when no group has that name."""
        return self._tag_groups.get(name)

    def expand_tags(self, *tags: str) -> list[str]:
        """Replace each group name by its members (order kept, duplicates dropped).

        Example:
            >>> Observer(tag_groups={"h": ["h_0", "h_1"]}).expand_tags("loss", "h", "h_0")
            ['loss', 'h_0', 'h_1']
        """
        out: list[str] = []
        for t in tags:
            for m in self._tag_groups.get(t, (t,)):
                if m not in out:
                    out.append(m)
        return out

    # ------------------------------------------------------------------ children
    def attach_child(self, label: str, child: Observer) -> None:
        """Make ``child`` (a labelled subgraph's observer) part of this observer's tree.

        Raises:
            ValueError: the label has a dot, is taken, or attaching would form a cycle.
        """
        if not isinstance(child, Observer):
            raise TypeError(f"{self._owner}: child {label!r} must be an Observer, "
                            f"got {type(child).__name__}")
        if not label or "." in label:
            raise ValueError(f"{self._owner}: child label {label!r} must be non-empty, no dots")
        if label in self._children and self._children[label] is not child:
            raise ValueError(f"{self._owner}: a child labelled {label!r} is already attached")
        if child is self or self in child._walk():
            raise ValueError(f"{self._owner}: attaching {label!r} would make a cycle")
        self._children[label] = child

    def detach_child(self, label: str) -> Observer:
        """Remove and return the child observer with this label."""
        try:
            return self._children.pop(label)
        except KeyError:
            raise LabelPathError(self._no_child(label)) from None

    @property
    def children(self) -> dict[str, Observer]:
        """``{label: child observer}`` (a copy)."""
        return dict(self._children)

    def _walk(self) -> list[Observer]:
        out, todo = [], list(self._children.values())
        while todo:
            o = todo.pop()
            if o not in out:
                out.append(o)
                todo.extend(o._children.values())
        return out

    def _no_child(self, label: str, path: str | None = None) -> str:
        where = f" (in path {path!r})" if path and path != label else ""
        return (f"{self._owner} has no child labelled {label!r}{where}; children: "
                f"{sorted(self._children)}; did you mean {closest_names(label, self._children)}?")

    def child(self, path: str) -> Observer:
        """The observer at a dotted child path (``"encoder"``, ``"encoder.scan"``).

        Raises:
            LabelPathError: naming the missing label and the existing ones.
        """
        node = self
        for part in path.split("."):
            if part not in node._children:
                raise LabelPathError(node._no_child(part, path))
            node = node._children[part]
        return node

    def _route(self, tag: str) -> tuple[Observer, str]:
        """Resolve ``"child.sub.tag"`` to (child observer, local tag); local tags stay here."""
        node, rest = self, tag
        while "." in rest:
            head, tail = rest.split(".", 1)
            if head not in node._children:
                break
            node, rest = node._children[head], tail
        return node, rest

    def _split_by_owner(self, tags: Sequence[str]) -> dict[int, tuple[Observer, list[str]]]:
        groups: dict[int, tuple[Observer, list[str]]] = {}
        for t in tags:
            node, local = self._route(t)
            groups.setdefault(id(node), (node, []))[1].append(local)
        return groups

    # ------------------------------------------------------------------- hooks
    def on_log(self, fn: LogHook | None) -> None:
        """Handle ``log`` calls with ``fn({tag: value})``; ``None`` restores printing to stderr."""
        self._on_log = fn

    def on_flush(self, fn: FlushHook | None) -> None:
        """Call ``fn({tag: epoch mean})`` after each flush that produced data; ``None`` removes it."""
        self._on_flush = fn

    def on_profile(self, fn: ProfileHook | None) -> None:
        """Call ``fn(profile)`` whenever a profiled forward completes; ``None`` removes it."""
        self._on_profile = fn

    # ----------------------------------------------------------- last forward
    def mark_start(self, when: float | None = None) -> None:
        """Stamp the start of training (first forward) if not stamped yet.

        A scan-driven trainer calls this before its first epoch, so epoch 1's duration
        (and hence the ETA) counts the first epoch in full.
        """
        if self._start is None:
            self._start = self._clock() if when is None else float(when)

    def set_tagged(self, values: Mapping[str, Any]) -> None:
        """Store the tagged outputs of the last forward (the Graph calls this after each forward).

        Values are kept as given (device arrays are not pulled to the host until a
        ``log``/``collect`` reads them).
        """
        self.mark_start()
        self._last_tagged = dict(values)

    def tagged(self, tag: str) -> Any | None:
        """The last forward's value for ``tag`` (``None`` before a forward or for an unknown tag)."""
        node, local = self._route(tag)
        return node._last_tagged.get(local)

    def _missing(self, what: str, tag: str, src: Mapping[str, Any]) -> LabelPathError:
        if not src:
            return LabelPathError(
                f"{self._owner}: cannot {what} {tag!r}: no tagged values (run a forward "
                f"first, or pass values={{tag: value}})")
        return LabelPathError(
            f"{self._owner}: cannot {what} unknown tag {tag!r}; tagged values: "
            f"{sorted(src)}; did you mean {closest_names(tag, src)}?")

    def _pick(self, tags: Sequence[str], src: Mapping[str, Any], what: str) -> dict[str, Any]:
        """Local lookup of ``tags`` (groups expanded; all of ``src`` when none) in ``src``."""
        wanted = self.expand_tags(*tags) if tags else list(src)
        for t in wanted:
            if t not in src:
                raise self._missing(what, t, src)
        return {t: src[t] for t in wanted}

    def _resolve(self, tags: Sequence[str], values: Mapping[str, Any] | None,
                 what: str) -> list[tuple[Observer, str, str, Any]]:
        """Find each tag's value: ``(owner observer, local tag, name as asked, value)``.

        With ``values`` every tag is looked up there; otherwise in the last forward's
        tagged values of the observer the tag routes to (``encoder.hidden`` -> child).
        """
        if values is not None:
            picked = self._pick(tags, values, what)
            return [(*self._route(t), t, v) for t, v in picked.items()]
        if not tags:
            return [(self, t, t, v) for t, v in self._last_tagged.items()]
        out = []
        for t in self.expand_tags(*tags):
            node, local = self._route(t)
            if local not in node._last_tagged:
                raise node._missing(what, local, node._last_tagged)
            out.append((node, local, t, node._last_tagged[local]))
        return out

    def log(self, *tags: str, values: Mapping[str, Any] | None = None) -> None:
        """Show current tagged values (all when no tags): ``loss: 0.2341 | acc: 0.891``.

        Args:
            *tags: tags or tag groups to show.
            values: tagged values to read; defaults to the last forward's.

        The ``on_log`` hook, when set, receives ``{tag: value}`` instead of printing.
        """
        self.mark_start()
        picked = {name: v for _, _, name, v in self._resolve(tags, values, "log")}
        if self._on_log is not None:
            self._on_log(picked)
            return
        parts = []
        for t, v in picked.items():
            arr = np.asarray(v)
            if not np.issubdtype(arr.dtype, np.number):
                parts.append(f"{t}: {v!r}")
            elif arr.size == 1:
                parts.append(f"{t}: {float(arr.reshape(())):.4f}")
            else:
                parts.append(f"{t}: {arr.dtype}{list(arr.shape)} mean={float(arr.mean()):.4f}")
        print(" | ".join(parts), file=sys.stderr)

    # -------------------------------------------------------- batch buffers
    def collect(self, *tags: str, values: Mapping[str, Any] | None = None) -> None:
        """Append scalar tagged values to the batch buffers (all tagged values when no tags).

        Args:
            *tags: tags or tag groups to collect; ``child.tag`` collects an attached
                child's tagged value into the child's buffer.
            values: ``{tag: scalar}`` of the last forward; defaults to what
                :meth:`set_tagged` stored (on this observer, or on the child a dotted
                tag routes to).

        Raises:
            LabelPathError: a tag has no value (names it and the tags that exist).
            ValueError: a value is not a scalar (names the tag and shape).

        Nothing is appended unless every requested tag is valid.
        """
        found = self._resolve(tags, values, "collect")
        scalars = [(node, local, scalar_value(node._owner, local, v)) for node, local, _, v in found]
        self.mark_start()
        for node, local, v in scalars:
            node.mark_start()
            node._values.push(local, [v], None)

    def record(self, tag: str, *values: Any) -> None:
        """Inject scalar values computed outside the graph into ``tag``'s batch buffer.

        A dotted tag whose first segment is an attached child's label goes to that child
        (``record("encoder.loss", v)``).

        Raises:
            ValueError: no values, or a non-scalar value.
        """
        node, local = self._route(tag)
        if not values:
            raise ValueError(f"{self._owner}: record({tag!r}) needs at least one value")
        scalars = [scalar_value(node._owner, local, v) for v in values]
        self.mark_start()
        node.mark_start()
        node._values.push(local, scalars, None)

    def record_at(self, path: str, *values: Any) -> None:
        """Record into a child's buffer by dotted path; the child must exist.

        Raises:
            LabelPathError: ``path`` has no child part, or the child does not exist.
        """
        if "." not in path:
            raise LabelPathError(f"{self._owner}: record_at needs 'child.tag', got {path!r}")
        head, local = path.rsplit(".", 1)
        self.child(head).record(local, *values)

    def collected(self, tag: str) -> list[float] | None:
        """The raw batch buffer of ``tag`` since the last flush, or ``None`` when empty."""
        node, local = self._route(tag)
        buf = node._values.buffered(local)
        return None if buf is None else buf.tolist()

    # ------------------------------------------------------------------- flush
    def _flush_here(self, tags: Sequence[str]) -> dict[str, float]:
        if not self._values.pending(tags):
            return {}
        self.mark_start()
        self._flush_times.append(self._clock())
        return self._values.flush(tags, len(self._flush_times))

    def flush_local(self, *tags: str) -> dict[str, float]:
        """Promote batch means to epoch history on this observer only (no children).

        Args:
            *tags: tags or groups to flush; all buffered tags when none.

        Returns:
            ``{tag: epoch mean}`` of what was flushed (empty when the buffers were empty;
            an empty flush adds no epoch and no timestamp).
        """
        out = self._flush_here(self.expand_tags(*tags))
        if out and self._on_flush is not None:
            self._on_flush(dict(out))
        return out

    def flush(self, *tags: str) -> dict[str, float]:
        """Promote batch means to epoch history here and, recursively, in attached children.

        With no tags everything buffered in the tree is flushed; dotted tags
        (``"encoder.loss"``) flush that child's tag only. Children whose buffers are
        empty (flushed on their own cadence) are skipped without a new epoch. Each
        observer's ``on_flush`` hook sees its own local names; this one's sees the
        whole flushed tree with dotted names.

        Returns:
            ``{tag or dotted path: epoch mean}``.
        """
        out = self._flush_tree(self.expand_tags(*tags), fire=False)
        if out and self._on_flush is not None:
            self._on_flush(dict(out))
        return out

    def _flush_tree(self, tags: Sequence[str], fire: bool) -> dict[str, float]:
        if tags:
            local = [t for t in tags if self._route(t)[0] is self]
            routed: dict[str, list[str]] = {}
            for t in tags:
                if self._route(t)[0] is not self:
                    head, rest = t.split(".", 1)
                    routed.setdefault(head, []).append(rest)
            out = self._flush_here(local) if local else {}
        else:
            routed = {label: [] for label in self._children}
            out = self._flush_here(())
        if fire and out and self._on_flush is not None:
            self._on_flush(dict(out))
        for label, sub in routed.items():
            child = self._children[label]
            flushed = child._flush_tree(child.expand_tags(*sub), fire=True)
            out.update({f"{label}.{k}": v for k, v in flushed.items()})
        return out

    # ------------------------------------------------------------- history
    def trend(self, tag: str) -> Trend:
        """The epoch history of ``tag`` as a :class:`Trend` (empty when nothing was flushed)."""
        node, local = self._route(tag)
        return node._values.trend(local)

    def trend_at(self, path: str) -> Trend:
        """A child's trend by dotted path; unlike ``trend``, the child must exist."""
        if "." not in path:
            raise LabelPathError(f"{self._owner}: trend_at needs 'child.tag', got {path!r}")
        head, local = path.rsplit(".", 1)
        return self.child(head).trend(local)

    def trends(self, *tags: str) -> TrendGroup:
        """Trends of the given tags, groups expanded; all tags with history when none."""
        wanted = self.expand_tags(*tags) if tags else list(self._values.history)
        return TrendGroup(self.trend(t) for t in wanted)

    def history_tags(self) -> list[str]:
        """Local tags that have epoch history, in first-flushed order."""
        return list(self._values.history)

    def reset_trend(self, *tags: str) -> None:
        """Clear the epoch history of the given tags (all local tags when none)."""
        for node, local in self._split_by_owner(self.expand_tags(*tags)).values():
            node._values.reset(local)
        if not tags:
            self._values.reset(())

    def latest_metrics_local(self, prefix: str = "") -> dict[str, float]:
        """``{tag: latest epoch value}`` of this observer only.

        Args:
            prefix: prepended as ``prefix.tag`` (how a parent names a child's metrics).
        """
        p = f"{prefix}." if prefix else ""
        return {f"{p}{t}": float(h[-1]) for t, h in self._values.history.items() if h}

    def latest_metrics(self, prefix: str = "") -> dict[str, float]:
        """Latest epoch values of this observer and, with dotted names, its whole subtree.

        Example:
            >>> parent, enc = Observer(), Observer()
            >>> parent.attach_child("encoder", enc)
            >>> parent.record("loss", 1.0); parent.record("encoder.loss", 0.5)
            >>> parent.flush()
            {'loss': 1.0, 'encoder.loss': 0.5}
            >>> parent.latest_metrics()
            {'loss': 1.0, 'encoder.loss': 0.5}
        """
        out = self.latest_metrics_local(prefix)
        p = f"{prefix}." if prefix else ""
        for label, child in self._children.items():
            out.update(child.latest_metrics(f"{p}{label}"))
        return out

    # ------------------------------------------------------- config / state
    def get_config(self) -> dict[str, Any]:
        """JSON config: tag groups and name."""
        return {"tag_groups": {g: list(m) for g, m in self._tag_groups.items()},
                "name": self.name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Observer:
        """Rebuild an (empty) observer from :meth:`get_config`."""
        return cls(config.get("tag_groups") or None, name=config.get("name"))

    def get_state(self) -> dict[str, Any]:
        """History, buffers and clock stamps as a pytree of numpy arrays (children excluded).

        Example:
            >>> a = Observer(); a.record("loss", 2.0); _ = a.flush()
            >>> b = Observer(); b.set_state(a.get_state())
            >>> b.trend("loss").values().tolist(), b.flush_count()
            ([2.0], 1)
        """
        return {
            "values": self._values.get_state(),
            "timings": self._timings.get_state(),
            "flush_times": np.asarray(self._flush_times, dtype=np.float64),
            "timing_flush_count": np.asarray(self._timing_flush_count, dtype=np.int64),
            "start_time": np.asarray(math.nan if self._start is None else self._start,
                                     dtype=np.float64),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` output; on error the observer is left unchanged."""
        try:
            values = Series.from_state(self._owner, state["values"])
            timings = Series.from_state(self._owner, state["timings"])
            flush_times = [float(x) for x in np.ravel(state["flush_times"])]
            tcount = int(np.asarray(state["timing_flush_count"]))
            start = float(np.asarray(state["start_time"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{self._owner}: malformed observer state: missing or bad {e}; "
                             f"expected the dict returned by get_state()") from e
        top = max((int(v.view().max()) for v in values.epochs.values() if len(v)), default=0)
        if top > len(flush_times):
            raise ValueError(f"{self._owner}: state has epoch {top} but only "
                             f"{len(flush_times)} flush times")
        self._values, self._timings = values, timings
        self._flush_times, self._timing_flush_count = flush_times, tcount
        self._start = None if math.isnan(start) else start

    def reset(self) -> None:
        """Forget all buffers, history, stamps and the last profile (config and hooks stay)."""
        self._values, self._timings = Series(), Series()
        self._flush_times, self._timing_flush_count = [], 0
        self._start, self._profile, self._last_tagged = None, None, {}
