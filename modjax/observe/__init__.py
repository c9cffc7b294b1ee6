"""modjax.observe: trends, the Observer (collect/record/flush), plots, logs, profiling.

The names are loaded on first use (``modjax.observe.Observer`` imports the observer
module then), so ``import modjax`` does not pay for the plotting and logging code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.observe.logs import export_timing_trends, export_trends, format_duration, write_log
    from modjax.observe.observer import FlushHook, LogHook, Observer
    from modjax.observe.plots import plot_html, plot_timings_html
    from modjax.observe.profiling import (
        LevelTiming,
        NodeTiming,
        Profile,
        ProfileHook,
        ProfileRecorder,
        format_node_time,
        heat_color,
    )
    from modjax.observe.trends import Trend, TrendGroup

_WHERE: dict[str, str] = {
    **dict.fromkeys((
        "export_timing_trends", "export_trends", "format_duration", "write_log",
    ), "modjax.observe.logs"),
    **dict.fromkeys(("FlushHook", "LogHook", "Observer"), "modjax.observe.observer"),
    **dict.fromkeys(("plot_html", "plot_timings_html"), "modjax.observe.plots"),
    **dict.fromkeys((
        "format_node_time", "heat_color", "LevelTiming", "NodeTiming", "Profile",
        "ProfileHook", "ProfileRecorder",
    ), "modjax.observe.profiling"),
    **dict.fromkeys(("Trend", "TrendGroup"), "modjax.observe.trends"),
}

__all__ = [
    "export_timing_trends", "export_trends", "FlushHook", "format_duration", "format_node_time",
    "heat_color", "LevelTiming", "LogHook", "NodeTiming", "Observer", "plot_html",
    "plot_timings_html", "Profile", "ProfileHook", "ProfileRecorder", "Trend", "TrendGroup",
    "write_log",
]

__getattr__, __dir__ = lazy_namespace("modjax.observe", _WHERE)
