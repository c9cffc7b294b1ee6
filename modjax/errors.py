"""Exception types shared by every layer.

Each error subclasses a builtin (``ValueError``, ``KeyError``, ...) so callers that
catch the builtin keep working, and a modjax base so callers can catch ours only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ModjaxError",
    "LabelPathError",
    "RegistrationError",
    "ConfigError",
    "ShapeMismatchError",
    "GraphStructureError",
    "CheckpointError",
    "closest_names",
]


class ModjaxError(Exception):
    """Base class of every error raised by modjax."""


class LabelPathError(ModjaxError, KeyError):
    """A dotted label path (``"encoder.scan"``) does not resolve."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class RegistrationError(ModjaxError, ValueError):
    """A label or id collides in an ExperimentContext, or is not registered."""


class ConfigError(ModjaxError, ValueError):
    """A config names an unknown class, has a future version, or is malformed."""


class ShapeMismatchError(ModjaxError, ValueError):
    """Two connected parts disagree on an array shape."""


class GraphStructureError(ModjaxError, ValueError):
    """A graph is not a valid DAG (cycle, dangling reference, label clash)."""


class CheckpointError(ModjaxError, ValueError):
    """A checkpoint is missing, truncated, or does not match its target."""


def closest_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates that look like ``name`` (for "did you mean").

    Args:
        name: the name that was not found.
        candidates: the names that exist.
        n: how many suggestions at most.

    Returns:
        Suggestions, best first; all candidates (sorted, up to ``n``) when none is close.

    Example:
        >>> closest_names("encodr", ["encoder", "decoder", "head"])
        ['encoder', 'decoder']
    """
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    return close if close else pool[:n]
