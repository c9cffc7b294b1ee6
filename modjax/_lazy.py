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

__all__ = ["lazy_namespace", "REGISTERING_MODULES", "import_registering_modules"]

#: modjax's modules whose classes register a config name (``@register``), except the
#: optional bridges; ``import modjax`` imports none of them, so a config that names a class
#: without its module (written by hand) finds it once these are imported
REGISTERING_MODULES = (
    "modjax.data.featureset", "modjax.data.references", "modjax.data.samplers",
    "modjax.data.scaling", "modjax.data.similarity", "modjax.data.splitters", "modjax.data.view",
    "modjax.observe.observer",
    "modjax.graph.models.adapters", "modjax.graph.models.cnn", "modjax.graph.models.layers",
    "modjax.graph.models.mlp", "modjax.graph.models.norm", "modjax.graph.models.ridge",
    "modjax.graph.nodes", "modjax.graph.model_graph", "modjax.graph.flow.graph",
    "modjax.graph.flow.modules", "modjax.graph.flow.routers",
    "modjax.train.callbacks", "modjax.train.checkpointing", "modjax.train.cv",
    "modjax.train.eval_phase", "modjax.train.experiment", "modjax.train.feeds",
    "modjax.train.fit_phase", "modjax.train.hyperparams", "modjax.train.losses",
    "modjax.train.metrics", "modjax.train.optim", "modjax.train.train_phase",
)


def import_registering_modules() -> None:
    """Import every module of :data:`REGISTERING_MODULES` (their classes register)."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)


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
