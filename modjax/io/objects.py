"""Shared pieces of object save/load: the config envelope and registration scope."""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from modjax.context import ExperimentContext, RegistrationPolicy
from modjax.errors import ConfigError
from modjax.io.checkpoints import Artifact
from modjax.io.registry import CONFIG_FORMAT_VERSION, get_registered, serialize

__all__ = ["CONFIG_FILE", "accepts_kwarg", "config_envelope", "object_from_artifact",
           "read_envelope", "registration_scope", "remap_ids", "fresh_ids_for_collisions"]

CONFIG_FILE = "config.json"


def config_envelope(obj: Any) -> dict[str, Any]:
    """``{"format_version", "object": serialize(obj)}``: what ``config.json`` holds."""
    return {"format_version": CONFIG_FORMAT_VERSION, "object": serialize(obj)}


def read_envelope(art: Artifact, name: str = CONFIG_FILE) -> dict[str, Any]:
    """The serialized object of a config file, after checking its format version."""
    env = art.read_json(name)
    version = env.get("format_version") if isinstance(env, dict) else None
    if not isinstance(version, int):
        raise ConfigError(f"{str(art.path)!r}: {name} has no integer format_version")
    if version > CONFIG_FORMAT_VERSION:
        raise ConfigError(
            f"{str(art.path)!r}: {name} has config format version {version}; this modjax reads "
            f"up to {CONFIG_FORMAT_VERSION}: upgrade modjax to load it")
    if not isinstance(env.get("object"), dict):
        raise ConfigError(f"{str(art.path)!r}: {name} has no serialized object")
    return env["object"]


def accepts_kwarg(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes keyword ``name`` (or ``**kwargs``).

    Example:
        >>> accepts_kwarg(lambda path, *, blocking=True: None, "blocking")
        True
    """
    if fn is None:
        return False
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@contextlib.contextmanager
def registration_scope(overwrite: bool) -> Iterator[ExperimentContext]:
    """Registration policy while loaded objects are rebuilt.

    ``overwrite=True`` replaces colliding labels/ids in the active context silently;
    otherwise the context's own policy applies (error, warn, rename, ...).
    """
    ctx = ExperimentContext.get_active()
    prev = ctx.registration_policy
    if overwrite:
        ctx.set_registration_policy(RegistrationPolicy.OVERWRITE)
    try:
        yield ctx
    finally:
        ctx.set_registration_policy(prev)


def remap_ids(cfg: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of a JSON config with every string equal to a key of ``mapping`` replaced.

    Node ids are uuid4 hex strings, so an exact string match is an id reference.

    Example:
        >>> remap_ids({"node_id": "a1", "refs": [{"node_id": "a1"}], "label": "x"}, {"a1": "b2"})
        {'node_id': 'b2', 'refs': [{'node_id': 'b2'}], 'label': 'x'}
    """
    if not mapping:
        return cfg
    if isinstance(cfg, str):
        return mapping.get(cfg, cfg)
    if isinstance(cfg, dict):
        return {k: remap_ids(v, mapping) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [remap_ids(v, mapping) for v in cfg]
    return cfg


def _defined_ids(cfg: Any, out: list[str]) -> list[str]:
    """Node ids *defined* in a serialized tree: ``config.node_id`` of each object."""
    if isinstance(cfg, dict):
        inner = cfg.get("config") if "class" in cfg else None
        if isinstance(inner, dict) and isinstance(inner.get("node_id"), str):
            out.append(inner["node_id"])
        for v in cfg.values():
            _defined_ids(v, out)
    elif isinstance(cfg, list):
        for v in cfg:
            _defined_ids(v, out)
    return out


def fresh_ids_for_collisions(cfg: dict[str, Any], ctx: ExperimentContext) -> dict[str, str]:
    """``{old id: new id}`` for the nodes defined in ``cfg`` whose id ``ctx`` already has.

    Seed 001: loading with ``overwrite=False`` gives the reloaded nodes new ids instead of
    replacing the registered ones (labels still follow the context's policy).

    Example:
        >>> ctx = ExperimentContext()
        >>> fresh_ids_for_collisions({"class": "X", "config": {"node_id": "abc"}}, ctx)
        {}
    """
    return {i: uuid.uuid4().hex for i in dict.fromkeys(_defined_ids(cfg, []))
            if ctx.has_node(node_id=i)}


def object_from_artifact(art: Artifact, expected: type, *, overwrite: bool,
                         allow_packaged_code: bool, name: str = CONFIG_FILE,
                         id_map: Mapping[str, str] | None = None) -> Any:
    """Rebuild the object in ``config.json`` and check it is an ``expected``.

    Without ``overwrite``, nodes whose id is already registered in the active context get
    new ids (references to them follow); ``id_map`` renames further ids (FeatureSets that
    were reloaded under a new id).

    Raises:
        ConfigError: unknown class (named), future format, or a different type.
    """
    cfg = read_envelope(art, name)
    ctx = ExperimentContext.get_active()
    if not overwrite:
        cfg = remap_ids(cfg, fresh_ids_for_collisions(cfg, ctx))
    if id_map:
        cfg = remap_ids(cfg, id_map)
    cls = get_registered(cfg.get("class", ""), module=cfg.get("module"),
                         allow_packaged_code=allow_packaged_code)
    kwargs = {}
    if accepts_kwarg(getattr(cls, "from_config", None), "allow_packaged_code"):
        # Hosts that rebuild nested user classes (nodes' models) need the permission too.
        kwargs["allow_packaged_code"] = allow_packaged_code
    with registration_scope(overwrite):
        config = cfg.get("config", {})
        obj = cls.from_config(config, **kwargs) if hasattr(cls, "from_config") else cls(**config)
    if not isinstance(obj, expected):
        raise ConfigError(
            f"{str(art.path)!r} holds a {type(obj).__name__} ({cfg.get('class')!r}), "
            f"not a {expected.__name__}")
    return obj
