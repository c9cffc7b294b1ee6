"""modjax.observe: trends, the Observer (collect/record/flush), plots, logs, profiling."""

from modjax.observe.logs import (
    export_timing_trends,
    export_trends,
    format_duration,
    write_log,
)
from modjax.observe.observer import FlushHook, LogHook, Observer
from modjax.observe.profiling import (
    LevelTiming,
    NodeTiming,
    Profile,
    ProfileHook,
    ProfileRecorder,
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
    "Profile",
    "NodeTiming",
    "LevelTiming",
    "ProfileHook",
    "ProfileRecorder",
    "heat_color",
]
