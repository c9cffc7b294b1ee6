"""modjax.observe: trends, the Observer (collect/record/flush), plots, logs, profiling."""

from modjax.observe.logs import (
    export_timing_trends,
    export_trends,
    format_duration,
    write_log,
)
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

__all__ = [
    "Observer",
    "LogHook",
    "FlushHook",
    "Trend",
    "TrendGroup",
    "format_duration",
    "export_trends",
    "export_timing_trends",
    "write_log",
    "plot_html",
    "plot_timings_html",
    "Profile",
    "NodeTiming",
    "LevelTiming",
    "ProfileHook",
    "ProfileRecorder",
    "heat_color",
    "format_node_time",
]
