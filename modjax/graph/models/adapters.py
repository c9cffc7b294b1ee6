"""Adapters that make Flax NNX / Linen modules and plain function pairs graph models."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ConfigError
from modjax.graph.models.base import BaseModel, Shape, as_shape
from modjax.io.registry import register

__all__ = ["FunctionModel", "LinenModel", "NNXModel"]


def _import_path(obj: Any) -> str | None:
    """``"module:qualname"`` if ``obj`` can be imported back by that name, else None."""
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or "<" in qual or module == "__main__":
        return None
    return f"{module}:{qual}"


def _import_object(path: str, *, allow_packaged_code: bool, what: str) -> Any:
    if not allow_packaged_code:
        raise ConfigError(
            f"{what} {path!r} is user code; pass allow_packaged_code=True to import it")
    module, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {what} {path!r}: {e}") from e
    return obj


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _typed_key(key: Any) -> Any:
    """New-style key array from either key flavour (NNX rng streams need typed keys)."""
    key = key if hasattr(key, "dtype") else jnp.asarray(key)
    return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


class _ShapeByTracing(BaseModel):
    """Adapters learn their output shape by ``eval_shape`` of init + apply."""

    _config_determines_model = False  # they wrap code and captured values

    def _resolve(self, input_shape: Shape) -> None:
        if self._declared_output is not None:
            return
        x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
        params, state = jax.eval_shape(lambda k: self.init(k, input_shape), jax.random.key(0))
        y = jax.eval_shape(lambda p, s, xx: self.apply(p, s, xx)[0], params, state, x)
        self._output_shape = tuple(y.shape[1:])


@register("FunctionModel")
class FunctionModel(_ShapeByTracing):
    """A model from a pair of pure functions.

    Stateless form (default): ``init_fn(key, input_shape) -> params`` and
    ``apply_fn(params, x) -> y`` (``apply_fn`` may also accept ``key=`` and ``train=``).
    Stateful form (``stateful=True``): ``init_fn(key, input_shape) -> (params, state)``
    and ``apply_fn(params, state, x, *, key, train) -> (y, state)``.

    Args:
        init_fn: parameter initialiser.
        apply_fn: forward function.
        stateful: use the stateful form.
        output_shape: declared per-sample output shape (else found by tracing).
        input_shape: declared per-sample input shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> m = FunctionModel(lambda key, shape: {"w": jnp.full(shape, 2.0)},
        ...                   lambda params, x: x * params["w"])
        >>> p, s = m.init(jax.random.key(0), (3,))
        >>> m.apply(p, s, jnp.ones((1, 3)))[0].tolist()
        [[2.0, 2.0, 2.0]]
    """

    def __init__(self, init_fn: Callable[..., Any], apply_fn: Callable[..., Any], *,
                 stateful: bool = False, output_shape: Any = None,
                 input_shape: Any = None) -> None:
        if not (callable(init_fn) and callable(apply_fn)):
            raise TypeError("FunctionModel needs two callables: init_fn and apply_fn")
        super().__init__(input_shape=input_shape, output_shape=output_shape,
                         stateful=bool(stateful))
        self.init_fn, self.apply_fn, self.stateful = init_fn, apply_fn, bool(stateful)
        self._pass_key = _accepts(apply_fn, "key")
        self._pass_train = _accepts(apply_fn, "train")

    def init(self, key: Any, input_shape: Shape) -> tuple[Any, Any]:
        out = self.init_fn(key, tuple(input_shape))
        if self.stateful:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("FunctionModel(stateful=True): init_fn must return (params, state)")
            return out
        return out, {}

    def apply(self, params: Any, state: Any, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        if self.stateful:
            return self.apply_fn(params, state, x, key=key, train=train)
        kwargs: dict[str, Any] = {}
        if self._pass_key:
            kwargs["key"] = key
        if self._pass_train:
            kwargs["train"] = train
        return self.apply_fn(params, x, **kwargs), state

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["init_fn"] = _import_path(self.init_fn)
        cfg["apply_fn"] = _import_path(self.apply_fn)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *, allow_packaged_code: bool = False,
                    **_: Any) -> FunctionModel:
        cfg = dict(config)
        fns = []
        for name in ("init_fn", "apply_fn"):
            path = cfg.pop(name, None)
            if path is None:
                raise ConfigError(
                    f"FunctionModel config has no importable {name} (it was a lambda or a "
                    "local function); define it at module level to make it loadable")
            fns.append(_import_object(path, allow_packaged_code=allow_packaged_code, what=name))
        return cls(*fns, **cfg)


def _linen_mode_kwargs(module: Any, train: bool) -> dict[str, Any]:
    call = type(module).__call__
    if _accepts(call, "train"):
        return {"train": train}
    if _accepts(call, "deterministic"):
        return {"deterministic": not train}
    return {}


def _plain(tree: Any) -> Any:
    from flax.core import unfreeze
    return unfreeze(tree) if hasattr(tree, "unfreeze") or type(tree).__name__ == "FrozenDict" \
        else tree


@register("LinenModel")
class LinenModel(_ShapeByTracing):
    """A Flax Linen module as a graph model.

    ``variables["params"]`` holds the module's ``"params"`` collection and
    ``variables["state"]`` every other collection (e.g. ``"batch_stats"``, updated when
    ``train=True``). If ``__call__`` takes ``train`` (or ``deterministic``) it is passed
    the mode; the apply key feeds the rng streams in ``rng_collections``.

    Args:
        module: the Linen module (unbound).
        rng_collections: rng stream names fed from the apply key.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> m = LinenModel(nn.Dense(3))
        >>> p, s = m.init(jax.random.key(0), (4,))
        >>> m.apply(p, s, jnp.ones((2, 4)))[0].shape
        (2, 3)
    """

    def __init__(self, module: Any, *, rng_collections: tuple[str, ...] = ("dropout",),
                 input_shape: Any = None, output_shape: Any = None) -> None:
        super().__init__(input_shape=input_shape, output_shape=output_shape)
        self.module = module
        self.rng_collections = tuple(rng_collections)

    def init(self, key: Any, input_shape: Shape) -> tuple[Any, Any]:
        keys = jax.random.split(key, 1 + len(self.rng_collections))
        rngs = {"params": keys[0], **dict(zip(self.rng_collections, keys[1:]))}
        x = jnp.zeros((1, *input_shape), jnp.float32)
        variables = _plain(self.module.init(rngs, x, **_linen_mode_kwargs(self.module, False)))
        params = variables.pop("params", {})
        return params, variables

    def apply(self, params: Any, state: Any, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        rngs = None
        if key is not None:
            ks = jax.random.split(key, max(len(self.rng_collections), 1))
            rngs = dict(zip(self.rng_collections, ks))
        variables = {"params": params, **state}
        mode = _linen_mode_kwargs(self.module, train)
        if train and state:
            y, updates = self.module.apply(variables, x, rngs=rngs, mutable=list(state), **mode)
            return y, {**state, **_plain(updates)}
        return self.module.apply(variables, x, rngs=rngs, **mode), state

    def get_config(self) -> dict[str, Any]:
        fields = {}
        for f in dataclasses.fields(self.module):
            if f.name in ("parent", "name"):
                continue
            value = getattr(self.module, f.name)
            try:
                json.dumps(value)
            except TypeError:
                continue  # non-JSON fields (initialisers, dtypes) fall back to defaults
            fields[f.name] = value
        cfg = super().get_config()
        cfg.update(module_class=_import_path(type(self.module)), module_fields=fields,
                   rng_collections=list(self.rng_collections))
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *, allow_packaged_code: bool = False,
                    **_: Any) -> LinenModel:
        cfg = dict(config)
        path = cfg.pop("module_class")
        fields = cfg.pop("module_fields", {})
        if path is None:
            raise ConfigError("LinenModel config has no importable module class")
        module_cls = _import_object(path, allow_packaged_code=allow_packaged_code or
                                    path.startswith("flax."), what="Linen module class")
        cfg["rng_collections"] = tuple(cfg.get("rng_collections", ("dropout",)))
        return cls(module_cls(**fields), **cfg)


@register("NNXModel")
class NNXModel(_ShapeByTracing):
    """A Flax NNX module as a graph model.

    ``variables["params"]`` holds the module's ``nnx.Param``s and
    ``variables["state"]`` its other variables (``BatchStat``...) as plain dicts; rng
    streams stay inside the adapter and are reseeded from the apply key, so dropout
    is driven by the graph's key. ``train`` switches the module with
    ``module.train()`` / ``module.eval()``.

    An instance brings its own initial values (``init`` returns them, ignoring the
    key). :meth:`from_class` instead constructs the module inside ``init`` with
    ``rngs=nnx.Rngs(key)``, so the graph key decides the values and the config can be
    reloaded.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> m = NNXModel(nnx.Linear(4, 2, rngs=nnx.Rngs(0)))
        >>> p, s = m.init(jax.random.key(0), (4,))
        >>> sorted(p), m.apply(p, s, jnp.ones((3, 4)))[0].shape
        (['bias', 'kernel'], (3, 2))
    """

    def __init__(self, module: Any, *, input_shape: Any = None,
                 output_shape: Any = None) -> None:
        from flax import nnx

        super().__init__(input_shape=input_shape, output_shape=output_shape)
        self._factory: tuple[Any, dict[str, Any]] | None = None
        self._set_module(module)
        self._nnx = nnx

    def _set_module(self, module: Any) -> None:
        from flax import nnx

        self.module = module
        graphdef, params, rngs, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        self._graphdef, self._params, self._rngs, self._other = graphdef, params, rngs, other
        self._streams = sorted({s.tag for _, s in nnx.iter_graph(module)
                                if isinstance(s, nnx.RngStream)})

    @classmethod
    def from_class(cls, module_class: type, **kwargs: Any) -> NNXModel:
        """Build ``module_class(**kwargs, rngs=nnx.Rngs(key))`` at each ``init``.

        Args:
            module_class: an ``nnx.Module`` subclass whose constructor takes ``rngs``.
            **kwargs: JSON-able constructor arguments (recorded in the config).
        """
        from flax import nnx

        model = cls(module_class(**kwargs, rngs=nnx.Rngs(0)))
        model._factory = (module_class, dict(kwargs))
        return model

    def init(self, key: Any, input_shape: Shape) -> tuple[Any, Any]:
        nnx = self._nnx
        if self._factory is None:
            return nnx.to_pure_dict(self._params), nnx.to_pure_dict(self._other)
        module_class, kwargs = self._factory
        module = module_class(**kwargs, rngs=nnx.Rngs(_typed_key(key)))
        _, params, _, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(other)

    def apply(self, params: Any, state: Any, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        nnx = self._nnx
        p_state = jax.tree.map(lambda v: v, self._params)
        o_state = jax.tree.map(lambda v: v, self._other)
        nnx.replace_by_pure_dict(p_state, params)
        nnx.replace_by_pure_dict(o_state, state)
        r_state = self._rngs
        if key is not None and self._streams:
            # fresh stream keys derived from the apply key (rebuilt as values, not mutated
            # in place, so this works under any trace)
            tkey = _typed_key(key)
            leaves, treedef = jax.tree.flatten(nnx.to_pure_dict(self._rngs))
            new = [jax.random.fold_in(tkey, i) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key)
                   else jnp.zeros_like(v) for i, v in enumerate(leaves)]
            r_state = jax.tree.map(lambda v: v, self._rngs)
            nnx.replace_by_pure_dict(r_state, jax.tree.unflatten(treedef, new))
        module = nnx.merge(self._graphdef, p_state, r_state, o_state)
        module.train() if train else module.eval()
        y = module(x)
        _, _, _, new_other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return y, nnx.to_pure_dict(new_other)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        if self._factory is None:
            cfg.update(module_class=_import_path(type(self.module)), module_kwargs=None)
        else:
            cfg.update(module_class=_import_path(self._factory[0]), module_kwargs=self._factory[1])
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *, allow_packaged_code: bool = False,
                    **_: Any) -> NNXModel:
        cfg = dict(config)
        path, kwargs = cfg.pop("module_class"), cfg.pop("module_kwargs", None)
        if kwargs is None or path is None:
            raise ConfigError(
                f"NNXModel of {path} was made from a module instance, which a config cannot "
                "rebuild; construct it with NNXModel.from_class(cls, **kwargs) to make it "
                "loadable (its learned values come back with set_state)")
        module_class = _import_object(path, allow_packaged_code=allow_packaged_code or
                                      path.startswith("flax."), what="NNX module class")
        model = cls.from_class(module_class, **kwargs)
        for k in ("input_shape", "output_shape"):
            if cfg.get(k) is not None:
                setattr(model, f"_declared_{k.split('_')[0]}", as_shape(cfg[k]))
        return model
