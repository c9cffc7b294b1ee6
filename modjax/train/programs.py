"""Compiled programs keyed on structure: the process-wide cache behind every phase.

A phase's epoch (and an evaluation's pass) is compiled for a key made of values only:
the graph's :class:`~modjax.graph.definition.GraphDef`, the specs of its losses and
optimizer (:func:`spec_of`), the head keys it feeds, the mesh and the recording options.
Array shapes and dtypes are left to ``jax.jit``'s own cache. So a second phase of the
same structure (a fine-tuning stage, the next fold, a notebook re-run) reuses the
compiled program, and a mutated graph (a new definition) never does.

:func:`counting_traces` lets a phase count the traces that happen on its behalf.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modjax.graph.definition import GraphDef, cached_on, freeze_value, ident

__all__ = ["program", "clear_program_cache", "counting_traces", "note_trace", "spec_of",
           "enable_compilation_cache"]

_PROGRAMS: dict[Any, Any] = {}
_SINKS: list[Any] = []
#: attributes that describe a host-side object but not what it computes
_IGNORED = frozenset({"allowed_keywords", "state", "_transform"})
_PLAIN = frozenset({type(None), bool, int, float, str})


def spec_of(obj: Any, _depth: int = 0) -> Any:
    """A hashable value standing for what ``obj`` computes (losses, optimizers, specs).

    An object with a ``spec`` property (``Optimizer``) gives that; a modjax object
    (``AppliedLoss``, ``Loss``, ``LossRef``, ...) is described by its class and its
    attributes, recursively; JSON-like values by value; functions and foreign objects
    by identity.

    Args:
        obj: the object to describe.

    Returns:
        A hashable value; two objects configured alike give equal specs.

    Example:
        >>> from modjax.train.losses import AppliedLoss
        >>> spec_of(AppliedLoss("mse", on="head")) == spec_of(AppliedLoss("mse", on="head"))
        True
    """
    if type(obj) in _PLAIN:  # the common leaves, before the attribute probes below
        return freeze_value(obj)
    if _depth > 16:
        return ident(obj)
    spec = getattr(type(obj), "spec", None)
    if isinstance(spec, property):
        return obj.spec
    if isinstance(obj, GraphDef) or obj is None or isinstance(obj, (bool, int, float, str)):
        return freeze_value(obj)
    if isinstance(obj, enum.Enum):
        return (type(obj).__qualname__, obj.value)
    if isinstance(obj, Mapping):
        return ("map", tuple(sorted((str(k), spec_of(v, _depth + 1)) for k, v in obj.items())))
    if isinstance(obj, (list, tuple)):
        return ("seq", tuple(spec_of(v, _depth + 1) for v in obj))
    cls = type(obj)
    if cls.__module__.startswith("modjax.") and (
            hasattr(obj, "__dict__") or dataclasses.is_dataclass(obj)):
        fields = (dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(
            obj, type) else vars(obj))
        return (cls.__module__, cls.__qualname__, tuple(sorted(
            (k, spec_of(v, _depth + 1)) for k, v in fields.items() if k not in _IGNORED)))
    return ident(obj)


def program(key: Any, make: Callable[[], Any]) -> Any:
    """The compiled program for ``key`` (made once per process by ``make``)."""
    return cached_on(_PROGRAMS, key, make, limit=128)


def clear_program_cache() -> None:
    """Forget every compiled program (the next phase of any structure compiles again).

    Example:
        >>> clear_program_cache()
    """
    _PROGRAMS.clear()


@contextlib.contextmanager
def counting_traces(owner: Any) -> Iterator[None]:
    """Count traces made while the block runs into ``owner.n_traces``."""
    _SINKS.append(owner)
    try:
        yield
    finally:
        _SINKS.pop()


def note_trace() -> None:
    """Called by a program's Python body, which runs only while it is being traced."""
    if _SINKS:
        _SINKS[-1].n_traces += 1


def enable_compilation_cache(path: str | os.PathLike[str], *,
                             min_compile_time_secs: float = 0.0) -> None:
    """Keep compiled programs on disk so that the next run of a script starts fast.

    This switches on JAX's persistent compilation cache: every program compiled from
    then on (epochs, evaluations, forwards) is stored under ``path`` and loaded instead of
    compiled by later processes with the same JAX version and devices.

    Args:
        path: a directory (created if needed).
        min_compile_time_secs: store only programs that took at least this long to
            compile (0 stores all of them).

    Example:
        >>> import tempfile, jax
        >>> enable_compilation_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir is not None
        True
        >>> jax.config.update("jax_compilation_cache_dir", None)
    """
    import jax

    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
