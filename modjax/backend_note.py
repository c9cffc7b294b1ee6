"""ModularML's ``backend=`` argument, accepted and ignored with a one-time note.

ModularML picks a framework per object (``Optimizer(..., backend="torch")``). modjax
runs everything as JAX (torch and scikit-learn models are bridged into the same
program), so the argument has nothing to choose; ported code keeps working and is told
once per process.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["note_backend", "BackendIgnoredWarning"]

_NOTED: set[str] = set()
_KNOWN = ("torch", "tensorflow", "tf", "jax", "scikit", "sklearn", "none")


class BackendIgnoredWarning(UserWarning):
    """Issued once per process per owner when ``backend=`` is passed."""


def note_backend(owner: str, backend: Any) -> None:
    """Accept ModularML's ``backend=`` for ``owner``; warn once that it is ignored.

    Args:
        owner: class name taking the argument (``"Optimizer"``, ``"Loss"``).
        backend: the value passed (None: nothing to note).

    Raises:
        ValueError: a value that is not a backend name (a typo is not silently ignored).

    Example:
        >>> note_backend("Optimizer", None)  # nothing passed, nothing said
    """
    if backend is None:
        return
    name = str(getattr(backend, "value", backend)).lower()
    if name not in _KNOWN:
        raise ValueError(f"{owner}: unknown backend {backend!r}; expected one of {list(_KNOWN)} "
                         "(modjax runs everything as JAX and ignores it)")
    if owner in _NOTED:
        return
    _NOTED.add(owner)
    warnings.warn(f"{owner}(backend={name!r}) is accepted for ModularML code and ignored: "
                  "modjax compiles every node with JAX (torch/scikit-learn models run through "
                  "bridges); this note is shown once", BackendIgnoredWarning, stacklevel=3)
