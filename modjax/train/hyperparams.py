"""Optimizer hyperparameters that live in the optimizer state (``optax.inject_hyperparams``).

With the learning rate (and any other numeric hyperparameter) in the state, runs that
differ only in those values have the same optimizer *structure*: one compiled program
serves them all, and a vmapped program gives each replica its own values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from modjax.errors import closest_names
from modjax.io.registry import register
from modjax.train.optim import Optimizer, _resolve_learning_rate

__all__ = ["HyperOptimizer", "set_hyperparams", "get_hyperparams"]


def _is_injected(x: Any) -> bool:
    return isinstance(getattr(x, "hyperparams", None), dict) and hasattr(x, "_replace")


@register("HyperOptimizer")
class HyperOptimizer(Optimizer):
    """An :class:`Optimizer` by name whose numeric hyperparameters are in its state.

    Built as ``optax.inject_hyperparams(optax.<name>)(**opt_kwargs)``. Its spec leaves
    the numeric values out (they are state), so graphs that differ only in learning rate
    share compiled programs; :func:`set_hyperparams` changes the values of a state.

    Example:
        >>> a = HyperOptimizer("adam", opt_kwargs={"lr": 1e-3})
        >>> b = HyperOptimizer("adam", opt_kwargs={"lr": 1e-2})
        >>> a.spec == b.spec
        True
        >>> s = set_hyperparams(a.init({"w": jnp.ones(2)}), {"lr": 0.5})
        >>> float(get_hyperparams(s)["learning_rate"])
        0.5
    """

    def __init__(self, opt: str, *, opt_kwargs: dict[str, Any] | None = None,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        if not isinstance(opt, str):
            raise TypeError(f"HyperOptimizer needs an optax optimizer name, got {type(opt).__name__}")
        super().__init__(opt, opt_kwargs=opt_kwargs, clip_norm=clip_norm, clip_value=clip_value)

    def _build(self) -> optax.GradientTransformation:
        kwargs = dict(self.kwargs)
        if "learning_rate" in kwargs:
            kwargs["learning_rate"] = _resolve_learning_rate(
                kwargs["learning_rate"], owner=f"HyperOptimizer({self.name!r})")
        try:
            base = optax.inject_hyperparams(getattr(optax, self.name))(**kwargs)
        except TypeError as e:
            raise ValueError(f"HyperOptimizer({self.name!r}): bad opt_kwargs "
                             f"{sorted(self.kwargs)}: {e}") from e
        parts = []
        if self.clip_value is not None:
            parts.append(optax.clip(self.clip_value))
        if self.clip_norm is not None:
            parts.append(optax.clip_by_global_norm(self.clip_norm))
        return optax.chain(*parts, base) if parts else base

    @property
    def spec(self) -> tuple[Any, ...]:
        from modjax.graph.definition import freeze_value

        structural = {k: (None if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                      for k, v in self.kwargs.items()}
        return ("HyperOptimizer", self.name, freeze_value(structural), self.clip_norm,
                self.clip_value)


def get_hyperparams(opt_state: Any) -> dict[str, Any]:
    """The injected hyperparameters of an optimizer state (``{}`` when there are none).

    Example:
        >>> get_hyperparams(optax.adam(1e-3).init({"w": jnp.ones(1)}))
        {}
    """
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_injected) if _is_injected(x)]
    return dict(found[0].hyperparams) if found else {}


def set_hyperparams(opt_state: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``opt_state`` with injected hyperparameters set (``lr`` means
    ``learning_rate``).

    Raises:
        ValueError: the state has no injected hyperparameters (the optimizer was not
            built with ``optax.inject_hyperparams``; use :class:`HyperOptimizer`).
        KeyError: a name the optimizer does not have (the names it has are listed).
    """
    values = {("learning_rate" if k == "lr" else k): v for k, v in values.items()}
    if not get_hyperparams(opt_state):
        raise ValueError(f"cannot set optimizer hyperparameters {sorted(values)}: the optimizer "
                         "state holds none; build the graph's optimizer with "
                         "HyperOptimizer('adam', opt_kwargs=...) (optax.inject_hyperparams)")

    def fix(x: Any) -> Any:
        if not _is_injected(x):
            return x
        hp = dict(x.hyperparams)
        for k, v in values.items():
            if k not in hp:
                raise KeyError(f"optimizer has no hyperparameter {k!r}; it has {sorted(hp)} "
                               f"(closest: {closest_names(k, list(hp))})")
            hp[k] = jnp.asarray(v, dtype=jnp.result_type(hp[k]))
        return x._replace(hyperparams=hp)

    return jax.tree.map(fix, opt_state, is_leaf=_is_injected)
