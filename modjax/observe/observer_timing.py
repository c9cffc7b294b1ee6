"""The Observer's wall clock, profiling and timing history, and its file outputs (HTML
plots, CSV, text log): a mixin of :class:`~modjax.observe.observer.Observer`, which
supplies the tag routing and the value history these methods read."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

from modjax.errors import LabelPathError, closest_names
from modjax.observe.logs import format_duration
from modjax.observe.profiling import Profile
from modjax.observe.series import scalar_value
from modjax.observe.trends import Trend, TrendGroup

__all__ = ["ObserverTimingMixin"]


class ObserverTimingMixin:
    """Clock stamps, ETA, profiles, timing buffers/history and outputs of an Observer."""

    def flush_count(self) -> int:
        """Number of flushes that produced data (epochs)."""
        return len(self._flush_times)

    def flush_times(self) -> list[float]:
        """Wall-clock stamp (``clock()`` seconds) of each flush that produced data."""
        return list(self._flush_times)

    def start_time(self) -> float | None:
        """When training started (first forward/record, or :meth:`mark_start`)."""
        return self._start

    def elapsed(self) -> float:
        """Seconds since training started; ``0.0`` before."""
        return 0.0 if self._start is None else max(0.0, self._clock() - self._start)

    def epoch_durations(self) -> list[float]:
        """Duration of each flushed epoch; the first runs from the start stamp."""
        if not self._flush_times:
            return []
        stamps = [self._start if self._start is not None else self._flush_times[0]]
        stamps += self._flush_times
        return [b - a for a, b in zip(stamps[:-1], stamps[1:])]

    def last_flush_duration(self) -> float:
        """Seconds between the two most recent flushes; ``0.0`` with fewer than two."""
        if len(self._flush_times) < 2:
            return 0.0
        return self._flush_times[-1] - self._flush_times[-2]

    def eta(self, total_epochs: int, window: int = 0) -> float:
        """Estimated seconds left: mean epoch time times the epochs remaining.

        Args:
            total_epochs: the planned number of epochs (flushes).
            window: average the last ``window`` epochs only (``0``: all, counting epoch 1
                in full from the start stamp, as goDl does). Epoch 1 of a jitted run
                includes compilation, so a small window gives a steadier estimate.

        Returns:
            Seconds; ``0.0`` before the first flush or once ``total_epochs`` flushes happened.
        """
        n = len(self._flush_times)
        if n == 0 or total_epochs <= n:
            return 0.0
        durations = self.epoch_durations()
        if window > 0:
            durations = durations[-window:]
        return sum(durations) / len(durations) * (total_epochs - n)

    @staticmethod
    def format_duration(seconds: float) -> str:
        """Same as :func:`modjax.observe.format_duration`."""
        return format_duration(seconds)

    # --------------------------------------------------------------- timings
    def enable_profiling(self) -> None:
        """Ask the owning graph to run profiled forwards (see ``profiling``)."""
        self._profiling = True

    def disable_profiling(self) -> None:
        """Back to plain forwards: no timing calls at all."""
        self._profiling = False

    @property
    def profiling(self) -> bool:
        """Whether profiling is enabled; the graph checks this one bool per forward."""
        return self._profiling

    def set_profile(self, profile: Profile) -> None:
        """Store the Profile of the forward that just ran and call ``on_profile``."""
        if not isinstance(profile, Profile):
            raise TypeError(f"{self._owner}: set_profile takes a Profile, got "
                            f"{type(profile).__name__}")
        self._profile = profile
        if self._on_profile is not None:
            self._on_profile(profile)

    def profile(self) -> Profile | None:
        """The Profile of the most recent profiled forward, or ``None``."""
        return self._profile

    def timing(self, tag: str) -> float:
        """Seconds the node tagged ``tag`` took in the last profiled forward (0.0 if none)."""
        node, local = self._route(tag)
        return node._profile.timing(local) if node._profile is not None else 0.0

    def collect_timings(self, *tags: str) -> None:
        """Append tagged node durations of the last profile to the timing buffers.

        With no tags every tagged node of the profile is collected.

        Raises:
            RuntimeError: no profile yet (profiling disabled, or no forward ran).
            LabelPathError: a tag is not in the profile.
        """
        if self._profile is None:
            raise RuntimeError(f"{self._owner}: collect_timings needs a profiled forward; "
                               f"call enable_profiling() and run a forward first")
        src = self._profile.tag_timings()
        picked = self._pick(tags, src, "collect timings of")
        for t, v in picked.items():
            self._timings.push(t, [float(v)], None)

    def record_timing(self, tag: str, *seconds: float) -> None:
        """Inject durations measured elsewhere into ``tag``'s timing buffer."""
        node, local = self._route(tag)
        if not seconds:
            raise ValueError(f"{self._owner}: record_timing({tag!r}) needs at least one value")
        node._timings.push(local, [scalar_value(node._owner, local, s) for s in seconds], None)

    def collected_timings(self, tag: str) -> list[float] | None:
        """The raw timing buffer of ``tag`` since the last timing flush, or ``None``."""
        node, local = self._route(tag)
        buf = node._timings.buffered(local)
        return None if buf is None else buf.tolist()

    def flush_timings(self, *tags: str) -> dict[str, float]:
        """Promote timing batch means to the timing history (all buffered when no tags)."""
        wanted = self.expand_tags(*tags)
        if not self._timings.pending(wanted):
            return {}
        self._timing_flush_count += 1
        return self._timings.flush(wanted, self._timing_flush_count)

    def timing_trend(self, tag: str) -> Trend:
        """Epoch history of mean node time (seconds) for ``tag``."""
        node, local = self._route(tag)
        return node._timings.trend(local)

    def timing_trends(self, *tags: str) -> TrendGroup:
        """Timing trends of the given tags (groups expanded; all when none)."""
        wanted = self.expand_tags(*tags) if tags else list(self._timings.history)
        return TrendGroup(self.timing_trend(t) for t in wanted)

    def reset_timing_trend(self, *tags: str) -> None:
        """Clear timing history of the given tags (all when none)."""
        self._timings.reset(self.expand_tags(*tags))

    # ------------------------------------------------------------ outputs
    def _trends_for_output(self, tags: Sequence[str], timings: bool) -> list[Trend]:
        store = self._timings if timings else self._values
        wanted = self.expand_tags(*tags) if tags else list(store.history)
        get = self.timing_trend if timings else self.trend
        trends = [get(t) for t in wanted]
        empty = [t.tag for t in trends if len(t) == 0]
        kind = "timing history" if timings else "epoch history"
        if not trends:
            raise ValueError(f"{self._owner}: no {kind} to write (flush first)")
        if empty:
            have = list(store.history)
            raise LabelPathError(f"{self._owner}: no {kind} for {empty}; tags with history: "
                                 f"{have}; did you mean {closest_names(empty[0], have)}?")
        return trends

    def _panels(self, tags: Sequence[str], timings: bool) -> list[tuple[str, list[Trend]]]:
        if not tags:
            return [(t.tag, [t]) for t in self._trends_for_output((), timings)]
        panels = []
        for t in tags:
            members = self._trend_members(t)
            panels.append((t, self._trends_for_output(members, timings)))
        return panels

    def _trend_members(self, tag: str) -> list[str]:
        return list(self._tag_groups.get(tag, (tag,)))

    def plot_html(self, path: str | PathLike, *tags: str, title: str | None = None,
                  log_y: bool | Sequence[str] = False) -> None:
        """Write one self-contained HTML page of training curves (inline SVG + JS, no CDN).

        Each argument is one chart: a tag group overlays its members, a tag stands
        alone; with no tags every tag with history gets a chart. ``log_y`` (``True`` or
        chart names) draws charts on a log10 axis.

        Raises:
            LabelPathError: a tag has no epoch history.
            FileNotFoundError: the parent directory does not exist.
        """
        from modjax.observe.plots import plot_html

        plot_html(path, self._panels(tags, False), title=title or self._title("training curves"),
                  durations=self.epoch_durations(), log_y=log_y)

    def plot_timings_html(self, path: str | PathLike, *tags: str, title: str | None = None,
                          log_y: bool | Sequence[str] = False) -> None:
        """Like :meth:`plot_html` for the timing history (seconds per node per epoch)."""
        from modjax.observe.plots import plot_html

        plot_html(path, self._panels(tags, True), title=title or self._title("node timings"),
                  unit="s", log_y=log_y)

    def _title(self, what: str) -> str:
        return f"{self.name}: {what}" if self.name else f"modjax {what}"

    def export_trends(self, path: str | PathLike, *tags: str) -> None:
        """Write epoch history to CSV: ``epoch,<tag>...`` (groups expanded; all when none)."""
        from modjax.observe.logs import export_trends

        export_trends(path, self._trends_for_output(tags, False))

    def export_timing_trends(self, path: str | PathLike, *tags: str) -> None:
        """Write timing history to CSV in the format of :meth:`export_trends`."""
        from modjax.observe.logs import export_trends

        export_trends(path, self._trends_for_output(tags, True))

    def write_log(self, path: str | PathLike, total_epochs: int = 0, *tags: str) -> None:
        """Write a text log: one line per epoch with values, duration and ETA.

        Args:
            path: output file.
            total_epochs: expected epochs for the ETA column (0 leaves ETA out).
            *tags: tags or groups to include (all with history when none).
        """
        from modjax.observe.logs import write_log

        write_log(path, self._trends_for_output(tags, False), total_epochs=total_epochs,
                  epoch_durations=self.epoch_durations(), title=self.name)
