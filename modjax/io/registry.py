"""Name -> class registry behind every ``get_config``/``from_config`` round trip.

A config is plain JSON. An object is written as ``{"class": <registered name>,
"config": obj.get_config()}`` and read back by looking the name up here. Nothing is
unpickled; a class that is not registered is imported from its module path only when
the caller passes ``allow_packaged_code=True``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from modjax.errors import ConfigError, closest_names

__all__ = [
    "register",
    "registered_name",
    "get_registered",
    "serialize",
    "deserialize",
    "CONFIG_FORMAT_VERSION",
]

#: Version written into every top-level config; a larger one on load is an error.
CONFIG_FORMAT_VERSION = 1

_REGISTRY: dict[str, type] = {}
_NAMES: dict[type, str] = {}

T = TypeVar("T", bound=type)


def register(name: str | type | None = None) -> Callable[[T], T] | T:
    """Register a class under a name so configs can refer to it.

    Usable bare (``@register``) or with a name (``@register("mlp")``). The default
    name is the class's qualified name. Registering a different class under a taken
    name is an error; re-registering the same class (module reload) is allowed.

    Args:
        name: registry name, or the class itself when used bare.

    Returns:
        The class, unchanged.

    Example:
        >>> @register("my_thing")
        ... class MyThing:
        ...     def __init__(self, k=1): self.k = k
        ...     def get_config(self): return {"k": self.k}
        >>> deserialize(serialize(MyThing(3))).k
        3
    """

    def deco(cls: T, _name: str | None = None) -> T:
        key = _name or cls.__qualname__
        old = _REGISTRY.get(key)
        if old is not None and old is not cls and (
            old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(
                f"registry name {key!r} is already used by {old.__module__}.{old.__qualname__}; "
                f"cannot register {cls.__module__}.{cls.__qualname__} under it"
            )
        _REGISTRY[key] = cls
        _NAMES[cls] = key
        return cls

    if isinstance(name, type):
        return deco(name)
    return lambda cls: deco(cls, name)


def registered_name(obj_or_cls: Any) -> str:
    """The registry name of an object's class (error if it is not registered)."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    try:
        return _NAMES[cls]
    except KeyError:
        raise ConfigError(
            f"{cls.__module__}.{cls.__qualname__} is not registered; decorate it with "
            "@modjax.register to make it serialisable"
        ) from None


def get_registered(name: str, *, module: str | None = None,
                   allow_packaged_code: bool = False) -> type:
    """Look a class up by registry name.

    Args:
        name: the registry name from a config.
        module: the module the class was defined in (recorded by ``serialize``).
        allow_packaged_code: import ``module`` when the name is not registered yet.

    Returns:
        The class.

    Raises:
        ConfigError: the name is unknown (and importing was not allowed or did not help).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    # modjax's own modules (the optional bridges register on import) are not user code
    if module and (allow_packaged_code or module.split(".")[0] == "modjax"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"cannot import module {module!r} for class {name!r}: {e}") from e
        if name in _REGISTRY:
            return _REGISTRY[name]
    if not module:  # a hand-written config: modjax's classes register when their module loads
        from modjax._lazy import import_registering_modules

        import_registering_modules()
        if name in _REGISTRY:
            return _REGISTRY[name]
    hint = closest_names(name, _REGISTRY)
    extra = "" if allow_packaged_code or not module else (
        f" (it was defined in module {module!r}; pass allow_packaged_code=True to import it)")
    raise ConfigError(f"unknown class {name!r} in config{extra}; registered names like it: {hint}")


def serialize(obj: Any) -> dict[str, Any]:
    """``{"class", "module", "config"}`` for a registered object with ``get_config``."""
    return {
        "class": registered_name(obj),
        "module": type(obj).__module__,
        "config": obj.get_config(),
    }


def deserialize(cfg: dict[str, Any], *, allow_packaged_code: bool = False, **kwargs: Any) -> Any:
    """Rebuild an object written by :func:`serialize`.

    Uses ``cls.from_config(config, **kwargs)`` when the class has it, else
    ``cls(**config)``.
    """
    if not isinstance(cfg, dict) or "class" not in cfg:
        raise ConfigError(f"expected a serialized object with a 'class' entry, got {cfg!r:.200}")
    cls = get_registered(cfg["class"], module=cfg.get("module"),
                         allow_packaged_code=allow_packaged_code)
    config = cfg.get("config", {})
    if hasattr(cls, "from_config"):
        if allow_packaged_code and "allow_packaged_code" not in kwargs and _takes_permission(
                cls.from_config):
            # nested user classes (a scaler record's scaler) need the caller's permission too
            kwargs["allow_packaged_code"] = True
        return cls.from_config(config, **kwargs)
    return cls(**config)


def _takes_permission(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "allow_packaged_code" in params
