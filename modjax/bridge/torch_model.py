"""TorchModelWrapper: a ``torch.nn.Module`` as a graph model.

The module's parameters live as JAX arrays in ``variables["params"][node]`` nested by
the module's own names (``encoder.0.weight`` is ``params[node]["encoder"]["0"]["weight"]``)
and its buffers (BatchNorm running statistics) in ``variables["state"][node]``, so freezing
by label path, optimizer masks, ``parameters_at``, checkpoints and Orbax saves treat a
torch node like any JAX node. Forward and backward run on the host (see
:mod:`modjax.bridge.torch_call`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.bridge.torch_call import (
    TorchHost,
    TorchLayout,
    jax_dtype,
    make_torch_call,
    seed_of,
    to_numpy,
)
from modjax.errors import ConfigError, ShapeMismatchError
from modjax.graph.models.adapters import _import_object, _import_path
from modjax.graph.models.base import BaseModel, Shape, as_shape
from modjax.io.registry import register

__all__ = ["TorchModelWrapper"]

#: torch's own layer classes are rebuilt from a config without ``allow_packaged_code``
_TRUSTED_PREFIX = "torch.nn."


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised without torch installed
        raise ImportError("torch nodes need PyTorch: pip install 'modjax[torch]'") from e
    return torch


def nest(names: tuple[str, ...], values: list[Any]) -> dict[str, Any]:
    """``{"a.b": v}`` -> ``{"a": {"b": v}}`` (the module's dotted names as nested dicts).

    Example:
        >>> nest(("0.weight", "0.bias"), [1, 2])
        {'0': {'weight': 1, 'bias': 2}}
    """
    out: dict[str, Any] = {}
    for name, v in zip(names, values):
        *parents, leaf = name.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


def pick(tree: Any, names: tuple[str, ...], what: str) -> list[Any]:
    """The leaves of a nested dict at dotted ``names`` (error naming a missing one)."""
    out = []
    for name in names:
        d = tree
        for part in name.split("."):
            if not isinstance(d, dict) or part not in d:
                raise KeyError(f"{what} have no entry {name!r} (the module's names are "
                               f"{list(names)[:8]})")
            d = d[part]
        out.append(d)
    return out


def _json_kwargs(kwargs: dict[str, Any], cls: type) -> dict[str, Any]:
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise ConfigError(f"TorchModelWrapper({cls.__name__}): model_kwargs must be JSON values "
                          f"to be saved in a config: {e}") from None
    return kwargs


@register("TorchModelWrapper")
class TorchModelWrapper(BaseModel):
    """A PyTorch module as a graph node's model.

    Give either a module instance (its current values become the initial variables) or
    ``model_class`` with its keyword arguments (the module is built lazily; each
    ``init(key)`` constructs it with torch's RNG seeded from ``key``, so the graph's key
    decides the initial values and the config can be reloaded). Input and output shapes
    are found by a dry forward at ``build()``, which also materialises lazy layers.

    ``train=True`` runs the module in ``train()`` mode (dropout on, BatchNorm statistics
    updated into ``variables["state"]``) with torch's RNG seeded from the step's JAX key.

    Args:
        model: a ``torch.nn.Module`` on the CPU.
        model_class: a ``torch.nn.Module`` subclass (instead of ``model``).
        model_kwargs: constructor arguments of ``model_class`` as a dict (ModularML's
            spelling; JSON values).
        inject_input_shape_as / inject_output_shape_as: constructor parameters that
            receive the per-sample input shape / the output shape asked for at
            ``build()`` (a lazy build). The default names are passed only when the
            constructor has them; another name it lacks is an error.
        **kwargs: constructor arguments given as keywords (same as ``model_kwargs``).

    Example:
        >>> import torch, jax, jax.numpy as jnp
        >>> m = TorchModelWrapper(model_class=torch.nn.Linear, in_features=3, out_features=2)
        >>> m.build((3,))
        >>> p, s = m.init(jax.random.key(0), (3,))
        >>> sorted(p), m.apply(p, s, jnp.ones((4, 3)))[0].shape
        (['bias', 'weight'], (4, 2))
    """

    backend = "torch"
    #: trains graph-wise with the other nodes (its backward is torch autograd)
    bridged = True
    _config_determines_model = False

    def __init__(self, model: Any = None, *, model_class: Any = None,
                 model_kwargs: dict[str, Any] | None = None,
                 inject_input_shape_as: str = "input_shape",
                 inject_output_shape_as: str = "output_shape", **kwargs: Any) -> None:
        torch = _torch()
        model_kwargs = _merge_kwargs(model_kwargs, kwargs)
        if (model is None) == (model_class is None):
            raise TypeError("TorchModelWrapper needs exactly one of model= (a torch.nn.Module "
                            "instance) or model_class= (a torch.nn.Module subclass)")
        if model is not None:
            if isinstance(model, type):
                raise TypeError(f"TorchModelWrapper: model= got the class {model.__name__}; pass "
                                "model_class=... with its keyword arguments instead")
            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"TorchModelWrapper: model must be a torch.nn.Module, got "
                                f"{type(model).__name__}")
            if model_kwargs:
                raise TypeError(f"TorchModelWrapper: keyword arguments {sorted(model_kwargs)} "
                                "are constructor arguments and need model_class=")
        elif not (isinstance(model_class, type) and issubclass(model_class, torch.nn.Module)):
            raise TypeError(f"TorchModelWrapper: model_class must be a torch.nn.Module subclass, "
                            f"got {model_class!r}")
        super().__init__()
        self.module = model
        self.model_class = type(model) if model is not None else model_class
        self.model_kwargs = None if model is not None else dict(model_kwargs)
        self.inject_input_shape_as, self.inject_output_shape_as = _injected_names(
            model_class, inject_input_shape_as, inject_output_shape_as)
        self._requested_output: Shape | None = None
        self._host: TorchHost | None = None
        self._built_for: Shape | None = None
        self._calls: dict[bool, Any] = {}

    # ------------------------------------------------------------------ host side
    def _construct(self, seed: int, input_shape: Shape | None) -> Any:
        """A fresh module from the class (torch RNG seeded), lazy layers materialised."""
        torch = _torch()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            module = self.model_class(**self._constructor_kwargs(input_shape))
            if input_shape is not None and _has_lazy(module):
                with torch.no_grad():
                    module.eval()(torch.zeros((1, *input_shape)))
        return module

    def _constructor_kwargs(self, input_shape: Shape | None) -> dict[str, Any]:
        kwargs = dict(self.model_kwargs)
        for name, value in ((self.inject_input_shape_as, input_shape),
                            (self.inject_output_shape_as, self._requested_output)):
            if name is not None and value is not None and name not in kwargs:
                kwargs[name] = tuple(value)
        return kwargs

    def _check_device(self, module: Any) -> None:
        for name, t in (*module.named_parameters(), *module.named_buffers()):
            if t.device.type != "cpu":
                raise ValueError(
                    f"TorchModelWrapper({self.model_class.__name__}): {name!r} is on device "
                    f"{t.device}, which the host callback cannot reach; the callback runs torch "
                    "on the CPU: move the module there with module.cpu()")

    def build(self, input_shape: Any, output_shape: Any = None) -> None:
        """Dry-run the module on a zero batch to find its output shape.

        Args:
            input_shape: per-sample input shape.
            output_shape: ignored (the module decides its output).

        Raises:
            ValueError: the module is not on the CPU or its forward fails.
        """
        torch = _torch()
        input_shape = as_shape(input_shape, what="input_shape")
        if self.inject_output_shape_as is not None and output_shape is not None:
            if as_shape(output_shape) != self._requested_output:
                self._requested_output, self._host = as_shape(output_shape), None
        if self._host is not None and self._built_for == input_shape:
            return
        module = self.module if self.module is not None else self._construct(0, input_shape)
        self._check_device(module)
        was_training = module.training
        try:
            with torch.no_grad():
                y = module.eval()(torch.zeros((2, *input_shape)))
        except Exception as e:
            raise ValueError(
                f"TorchModelWrapper({self.model_class.__name__}): forward failed on a dry batch "
                f"of shape {(2, *input_shape)}: {type(e).__name__}: {e}") from e
        finally:
            module.train(was_training)
        if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != 2:
            raise ValueError(
                f"TorchModelWrapper({self.model_class.__name__}): forward must return one tensor "
                f"with the batch axis first, got {getattr(y, 'shape', type(y).__name__)} for a "
                "batch of 2")
        if self.module is None:
            self._template = module
        self._host = TorchHost(module, TorchLayout.of(module), jax_dtype(y.dtype))
        self._input_shape, self._output_shape = input_shape, tuple(y.shape[1:])
        self._built_for, self._calls = input_shape, {}

    def _require_host(self) -> TorchHost:
        if self._host is None:
            raise RuntimeError(f"TorchModelWrapper({self.model_class.__name__}) is not built: "
                               "add it to a graph and build() it (or call build(input_shape))")
        return self._host

    # ------------------------------------------------------------------ protocol
    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        """The module's values as JAX arrays (instance) or a fresh module seeded from ``key``."""
        self.build(input_shape)
        host = self._require_host()
        lay = host.layout
        if self.module is not None:
            p = [jnp.asarray(to_numpy(t, np.dtype(jax_dtype(t.dtype))))
                 for _, t in self.module.named_parameters()]
            b = [jnp.asarray(to_numpy(t, np.dtype(jax_dtype(t.dtype))))
                 for _, t in self.module.named_buffers()]
        else:
            structs = (lay.jax_structs("param"), lay.jax_structs("buffer"))

            def fresh(seed: Any) -> Any:
                m = self._construct(int(np.asarray(seed)), tuple(input_shape))
                return ([to_numpy(t, s.dtype) for (_, t), s in zip(m.named_parameters(),
                                                                     structs[0])],
                        [to_numpy(t, s.dtype) for (_, t), s in zip(m.named_buffers(),
                                                                     structs[1])])
            p, b = jax.pure_callback(fresh, structs, seed_of(key), vmap_method="sequential")
        return nest(lay.param_names, list(p)), nest(lay.buffer_names, list(b))

    def apply(self, params: Any, state: Any, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        """Forward through the module on the host (differentiable through torch autograd)."""
        host = self._require_host()
        if tuple(x.shape[1:]) != self._input_shape:
            raise ShapeMismatchError(
                f"TorchModelWrapper({self.model_class.__name__}) was built for input "
                f"{self._input_shape} but receives {tuple(x.shape[1:])}")
        lay = host.layout
        train = bool(train)
        call = self._calls.get(train)
        if call is None:
            call = self._calls[train] = make_torch_call(host, train, self._output_shape)
        p = pick(params, lay.param_names, "torch params")
        b = pick(state, lay.buffer_names, "torch buffers")
        y, nb = call(p, b, x, seed_of(key))
        if not train:
            return y, state
        return y, nest(lay.buffer_names, nb)

    # ------------------------------------------------------------------ torch views
    def state_dict(self, params: Any, state: Any) -> OrderedDict:
        """The torch ``state_dict`` these variables stand for (CPU tensors, copies).

        Example:
            >>> import torch, jax
            >>> m = TorchModelWrapper(torch.nn.Linear(2, 1))
            >>> m.build((2,))
            >>> p, s = m.init(jax.random.key(0), (2,))
            >>> bool(torch.equal(m.state_dict(p, s)["weight"], m.module.weight))
            True
        """
        torch = _torch()
        lay = self._require_host().layout
        out: OrderedDict = OrderedDict()
        vals = zip(lay.param_names + lay.buffer_names,
                   pick(params, lay.param_names, "torch params") +
                   pick(state, lay.buffer_names, "torch buffers"),
                   lay.param_dtypes + lay.buffer_dtypes)
        for name, v, dt in vals:
            out[name] = torch.from_numpy(np.array(v)).to(dt)
        return out

    def to_module(self, params: Any, state: Any) -> Any:
        """The wrapped (or template) module with these values loaded into it."""
        module = self._require_host().module
        module.load_state_dict(self.state_dict(params, state), strict=False)
        return module

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        cfg = {"model_class": _import_path(self.model_class),
               "model_kwargs": None if self.model_kwargs is None else _json_kwargs(
                   self.model_kwargs, self.model_class)}
        if self._input_shape is not None:
            cfg["input_shape"] = list(self._input_shape)
        if self.inject_input_shape_as not in (None, "input_shape"):
            cfg["inject_input_shape_as"] = self.inject_input_shape_as
        if self.inject_output_shape_as is not None:
            cfg["inject_output_shape_as"] = self.inject_output_shape_as
            cfg["output_shape"] = None if self._requested_output is None else list(
                self._requested_output)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> TorchModelWrapper:
        """Rebuild from :meth:`get_config`; the class is imported only when it is one of
        torch's own layers or ``allow_packaged_code=True``."""
        path, kwargs = config.get("model_class"), config.get("model_kwargs")
        if path is None:
            raise ConfigError("TorchModelWrapper config has no importable model_class (it was a "
                              "local class); define the module class at module level")
        if kwargs is None:
            raise ConfigError(
                f"TorchModelWrapper of {path} was made from a module instance, which a config "
                "cannot rebuild; use TorchModelWrapper(model_class=..., **kwargs) to make it "
                "loadable (its learned values come back with the graph's variables)")
        module_cls = _import_object(path, what="torch module class",
                                    allow_packaged_code=allow_packaged_code or path.startswith(
                                        _TRUSTED_PREFIX))
        model = cls(model_class=module_cls, model_kwargs=kwargs,
                    inject_input_shape_as=config.get("inject_input_shape_as", "input_shape"),
                    inject_output_shape_as=config.get("inject_output_shape_as", "output_shape"))
        if config.get("input_shape") is not None:
            model.build(tuple(config["input_shape"]), config.get("output_shape"))
        return model

    def __repr__(self) -> str:
        form = "instance" if self.module is not None else "class"
        return f"TorchModelWrapper({self.model_class.__name__}, {form})"


def _merge_kwargs(model_kwargs: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if model_kwargs is None:
        return kwargs
    if not isinstance(model_kwargs, dict):
        raise TypeError(f"TorchModelWrapper: model_kwargs must be a dict, got "
                        f"{type(model_kwargs).__name__}")
    clash = sorted(set(model_kwargs) & set(kwargs))
    if clash:
        raise TypeError(f"TorchModelWrapper: {clash} given both in model_kwargs and as keywords")
    return {**model_kwargs, **kwargs}


def _injected_names(model_class: Any, in_name: str, out_name: str
                    ) -> tuple[str | None, str | None]:
    """The constructor parameters that receive shapes (None: not injected)."""
    if model_class is None:
        return None, None
    import inspect

    try:
        params = inspect.signature(model_class).parameters
    except (TypeError, ValueError):
        params = {}
    names = []
    for name, default in ((in_name, "input_shape"), (out_name, "output_shape")):
        if name in params:
            names.append(name)
        elif name != default:
            raise ValueError(f"TorchModelWrapper: {model_class.__name__}'s constructor has no "
                             f"parameter {name!r} to receive the {default} (its parameters: "
                             f"{list(params)})")
        else:
            names.append(None)
    return names[0], names[1]


def _has_lazy(module: Any) -> bool:
    torch = _torch()
    return any(isinstance(p, torch.nn.parameter.UninitializedParameter)
               for p in module.parameters())
