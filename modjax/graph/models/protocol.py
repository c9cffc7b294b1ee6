"""The model protocol every graph node's model satisfies.

A model is a pair of pure functions plus shape metadata:

* ``init(key, input_shape) -> (params, state)``
* ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``
* ``input_shape`` / ``output_shape``: per-sample shapes (no batch axis), ``None``
  while unknown,
* ``get_config() -> dict``.

Optional extensions the graph uses when present:

* ``build(input_shape, output_shape=None)``: told its shapes before ``init`` (lazy
  built-ins use it to size their layers; the graph hands a tail node the target shape),
* ``apply_capture(params, state, x, *, key=None, train=False, capture=())
  -> (y, new_state, captured)``: a model that has tagged internal values (a flow
  ``Graph``) returns the requested ones, keyed by their dotted tag path,
* ``fit(params, state, x, y) -> (params, state)``: closed-form fitting (:class:`Fittable`),
* ``init_draws(input_shape) -> int | None`` and ``init_from_draws(u, input_shape)``: an
  init whose only randomness is ``init_draws`` uniform draws in ``[-1, 1)``; the graph
  then draws them for many nodes at once (see ``BaseModel.init_draws``).

:func:`as_model` turns Flax NNX modules, Flax Linen modules and ``(init_fn, apply_fn)``
pairs into models.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Model", "Fittable", "is_model", "as_model"]

Shape = tuple[int, ...]


@runtime_checkable
class Model(Protocol):
    """Structural type of a graph model (see the module docstring)."""

    input_shape: Shape | None
    output_shape: Shape | None

    def init(self, key: Any, input_shape: Shape) -> tuple[Any, Any]: ...

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[Any, Any]: ...

    def get_config(self) -> dict[str, Any]: ...


@runtime_checkable
class Fittable(Protocol):
    """A model with a pure closed-form fit, used by ``FitPhase``.

    ``fit(params, state, x, y) -> (params, state)`` must be a pure function of its
    arguments (jittable), where ``x`` is the batched input the node sees and ``y`` the
    batched targets routed to the node.
    """

    def fit(self, params: Any, state: Any, x: Any, y: Any) -> tuple[Any, Any]: ...


def is_model(obj: Any) -> bool:
    """Whether ``obj`` already satisfies the model protocol.

    Example:
        >>> from modjax import Identity
        >>> is_model(Identity()), is_model(object())
        (True, False)
    """
    return all(callable(getattr(obj, name, None)) for name in ("init", "apply", "get_config")) \
        and hasattr(obj, "output_shape") and hasattr(obj, "input_shape")


def as_model(obj: Any) -> Model:
    """Adapt ``obj`` to the model protocol.

    Accepts anything that already is a model (returned unchanged), a Flax NNX module
    (:class:`~modjax.graph.models.NNXModel`), a Flax Linen module
    (:class:`~modjax.graph.models.LinenModel`) and an ``(init_fn, apply_fn)`` pair
    (:class:`~modjax.graph.models.FunctionModel`).

    Args:
        obj: the model-like object.

    Returns:
        An object satisfying :class:`Model`.

    Raises:
        TypeError: ``obj`` is none of the above.

    Example:
        >>> import jax.numpy as jnp
        >>> m = as_model((lambda key, shape: {"b": jnp.ones(shape)},
        ...               lambda params, x: x + params["b"]))
        >>> type(m).__name__
        'FunctionModel'
    """
    if is_model(obj):
        return obj
    from modjax.graph.models import adapters

    try:
        from flax import nnx
        if isinstance(obj, nnx.Module):
            return adapters.NNXModel(obj)
    except ImportError:  # pragma: no cover - flax is a dependency
        pass
    try:
        import flax.linen as nn
        if isinstance(obj, nn.Module):
            return adapters.LinenModel(obj)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        return adapters.FunctionModel(*obj)
    from modjax.bridge.dispatch import bridge_model  # torch/sklearn only if obj is theirs

    bridged = bridge_model(obj)
    if bridged is not None:
        return bridged
    raise TypeError(
        f"cannot use {type(obj).__name__} as a model: expected an object with "
        "init/apply/get_config/input_shape/output_shape, a Flax NNX or Linen module, "
        "a torch.nn.Module, a scikit-learn estimator or an (init_fn, apply_fn) pair")
