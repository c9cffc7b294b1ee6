"""modjax.observe: trends, the Observer (collect/record/flush), plots, logs, profiling.

The names are loaded on first use (``modjax.observe.Observer`` imports the observer
module then), so ``import modjax`` does not pay for the plotting and logging code.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Observer": "observer", "LogHook": "observer", "FlushHook": "observer",
    "Trend": "trends", "TrendGroup": "trends",
    "format_duration": "logs", "export_trends": "logs", "export_timing_trends": "logs",
    "write_log": "logs",
    "plot_html": "plots", "plot_timings_html": "plots",
    "Profile": "profiling", "NodeTiming": "profiling", "LevelTiming": "profiling",
    "ProfileHook": "profiling", "ProfileRecorder": "profiling", "heat_color": "profiling",
    "format_node_time": "profiling",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'modjax.observe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modjax.observe.{_WHERE[name]}"), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
