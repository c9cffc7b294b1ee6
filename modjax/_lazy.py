"""Lazy public namespaces: a package's names load from their defining modules on first use.

Each public namespace (``modjax``, ``modjax.flow``, ``modjax.data``, ...) lists its names in
an explicit ``{name: defining module}`` table and installs the module hooks of PEP 562 made
here, so ``import modjax`` imports none of the layers; ``modjax.FeatureSet`` imports
``modjax.data.featureset`` then, and later look-ups find the name in the module's globals.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(namespace: str, where: Mapping[str, str], submodules: Iterable[str] = ()
                   ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` hooks of a lazy public namespace.

    Args:
        namespace: the package's dotted name (``"modjax.data"``).
        where: ``{public name: defining module}``; the name is that module's attribute.
        submodules: public subpackages/modules reachable as attributes (``modjax.io``),
            imported when first named.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.

    Example:
        >>> getattr_, dir_ = lazy_namespace("modjax", {"FeatureSet": "modjax.data.featureset"})
        >>> getattr_("FeatureSet").__name__, "FeatureSet" in dir_()
        ('FeatureSet', True)
    """

    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in subs:
            return importlib.import_module(f"{namespace}.{name}")
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {namespace!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[namespace], name, value)  # later look-ups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[namespace])) | set(where) | subs)

    return __getattr__, __dir__
