"""Observation methods of the flow ``Graph``: delegation to its Observer plus tree paths.

Every built graph owns an :class:`~modjax.observe.Observer`; labelled children's
observers are attached under their labels, so ``flush()`` recurses and
``latest_metrics()`` names child metrics ``encoder.loss``. Eager forwards hand the
observer the tagged values of the pass (``collect`` reads them). The ``*_at`` methods
check the label path against the graph tree first, so a wiring mistake is an error
rather than a silent new metric.
"""

from __future__ import annotations

import functools
from typing import Any

from modjax.errors import LabelPathError
from modjax.observe.observer import Observer
from modjax.observe.profiling import Profile
from modjax.observe.trends import Trend
from modjax.paths import split_path

__all__ = ["GraphObservation", "DELEGATED"]

#: Observer methods a Graph exposes unchanged.
DELEGATED = (
    "log", "collect", "record", "flush", "flush_local", "latest_metrics",
    "latest_metrics_local", "collected", "flush_count", "flush_times", "elapsed", "eta",
    "epoch_durations", "last_flush_duration", "trend", "trends", "reset_trend",
    "history_tags", "plot_html", "export_trends", "write_log", "collect_timings",
    "record_timing", "collected_timings", "flush_timings", "timing", "timing_trend",
    "timing_trends", "reset_timing_trend", "plot_timings_html", "export_timing_trends",
    "on_log", "on_flush", "on_profile", "enable_profiling", "disable_profiling",
    "record_batches", "record_batch_values", "record_batch_tags", "mark_start",
)


def _delegate(name: str) -> Any:
    target = getattr(Observer, name)

    @functools.wraps(target)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._observer, name)(*args, **kwargs)

    method.__doc__ = (target.__doc__ or "").split("\n\n")[0] + (
        f"\n\nDelegates to :meth:`modjax.observe.Observer.{name}` of this graph's observer.")
    return method


class GraphObservation:
    """Observation mixin of the flow ``Graph`` (needs ``_observer`` and the tree mixin)."""

    @property
    def observer(self) -> Observer:
        """This graph's Observer (children's observers are attached to it)."""
        return self._observer

    @property
    def profiling(self) -> bool:
        """Whether eager forwards are profiled (see :meth:`enable_profiling`)."""
        return self._observer.profiling

    def profile(self) -> Profile | None:
        """Per-node and per-level timings of the last profiled forward (None if none).

        Profiled forwards run node by node, each node compiled once and waited on, so
        the host clock measures device work; nodes are grouped by topological level.
        With profiling disabled the forward is one jitted call and this stays None.
        """
        return self._observer.profile()

    @staticmethod
    def format_duration(seconds: float) -> str:
        """``42ms`` / ``1.2s`` / ``2m05s`` (as in training logs)."""
        return Observer.format_duration(seconds)

    def tagged(self, tag: str) -> Any | None:
        """The last eager forward's value of a tag (``None`` before a forward)."""
        return self._observer.tagged(tag)

    def tagged_at(self, path: str) -> Any | None:
        """A tagged value across graph boundaries (``"encoder.hidden"``).

        Returns:
            The value from the last forward, or ``None`` if none ran yet.

        Raises:
            LabelPathError: the path does not resolve, names a subgraph rather than a
                tag, or crosses into an internal tag.
        """
        if self.validate_path(path) != "tag":
            raise LabelPathError(
                f"tagged_at({path!r}): {path!r} is a subgraph, not a tag; give "
                f"'{path}.<tag>'")
        own = self.__dict__.get("_tree_tagged")
        if own is not None and path in own:
            return own[path]
        return self._observer.tagged(path)

    def _metric_owner(self, path: str, what: str) -> tuple[str, str]:
        parts = split_path(path)
        if len(parts) < 2:
            raise LabelPathError(
                f"{what}({path!r}) needs 'child.metric' (use {what.replace('_at', '')} for this "
                "graph's own tags)")
        sub = ".".join(parts[:-1])
        self.subgraph(sub)  # the child must exist: no silent new metrics on typos
        return sub, parts[-1]

    def record_at(self, path: str, *values: Any) -> None:
        """Record scalars into a child graph's buffer (``"encoder.loss"``)."""
        self._metric_owner(path, "record_at")
        self._observer.record(path, *values)

    def collect_at(self, *paths: str) -> None:
        """Collect tagged values of child graphs by path (``"encoder.hidden"``)."""
        for p in paths:
            self.tagged_at(p)  # validates
        for p in paths:
            parts = split_path(p)
            self._observer.child(".".join(parts[:-1])).collect(parts[-1])

    def trend_at(self, path: str) -> Trend:
        """A child graph's epoch trend by path (``"encoder.loss"``)."""
        sub, local = self._metric_owner(path, "trend_at")
        return self._observer.child(sub).trend(local)


for _name in DELEGATED:
    setattr(GraphObservation, _name, _delegate(_name))
