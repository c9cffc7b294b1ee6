"""``Optimizer``: optax by name or instance, with freezing as a traced mask.

Freezing works on label paths (``"encoder"``, ``"encoder.scan"``). The frozen set is
turned into a pytree of boolean scalars shaped like the parameters and handed to
:meth:`Optimizer.update` as a *traced argument*, so changing what is frozen changes
array values, not the compiled program: it never rebuilds the optimizer or the model.

For frozen leaves :meth:`Optimizer.update`

* feeds a zero gradient into the chain (so they do not count in a global-norm clip),
* keeps the parameter bit-identical (selected *after* the whole chain, so decoupled
  weight decay in ``adamw``/``lion`` cannot move it),
* keeps the leaf's optimizer state (moments) as it was, so unfreezing resumes with
  the moments it had.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax.errors import ConfigError, closest_names
from modjax.io.registry import register
from modjax.paths import path_mask

__all__ = ["Optimizer", "frozen_mask", "freezable", "OPTIMIZER_NAMES"]

#: optax constructors accepted by name (any other optax attribute that builds a
#: GradientTransformation is accepted too; these are the ones we document and test).
OPTIMIZER_NAMES = (
    "adam", "adamw", "sgd", "rmsprop", "lion", "adagrad", "adabelief", "nadam", "radam",
    "lamb", "lars", "adafactor", "adamax", "yogi", "novograd", "adadelta", "amsgrad",
)

#: optax schedule constructors accepted in a JSON learning-rate spec.
_SCHEDULES = (
    "constant_schedule", "linear_schedule", "cosine_decay_schedule", "exponential_decay",
    "warmup_cosine_decay_schedule", "piecewise_constant_schedule", "polynomial_schedule",
    "cosine_onecycle_schedule", "linear_onecycle_schedule", "warmup_exponential_decay_schedule",
    "sgdr_schedule",
)


class _Pair:
    """Opaque (old, new) leaf pair; not a pytree node, so tree maps stop at it."""

    __slots__ = ("old", "new")

    def __init__(self, old: Any, new: Any) -> None:
        self.old, self.new = old, new


def frozen_mask(params: Any, frozen_paths: Iterable[str | tuple[str, ...]]) -> Any:
    """Pytree shaped like ``params`` with a boolean scalar per leaf (True = frozen).

    Args:
        params: the parameters pytree (``variables["params"]``).
        frozen_paths: label paths to freeze; each must resolve in ``params``.

    Returns:
        A pytree of boolean scalars, suitable as a traced argument.

    Raises:
        LabelPathError: a path does not resolve (the message names the nearest labels).

    Example:
        >>> m = frozen_mask({"enc": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(1)}}, ["enc"])
        >>> bool(m["enc"]["w"]), bool(m["head"]["w"])
        (True, False)
    """
    # numpy scalars: no device dispatch per leaf; jit traces them like any bool array
    return path_mask(params, list(frozen_paths), leaf_fn=lambda b: np.bool_(b))


def _resolve_learning_rate(value: Any, *, owner: str) -> Any:
    """A float, an optax schedule callable, or a JSON spec ``{"schedule": name, ...}``."""
    if isinstance(value, Mapping):
        spec = dict(value)
        name = spec.pop("schedule", None)
        if name not in _SCHEDULES:
            raise ConfigError(
                f"{owner}: learning-rate schedule {name!r} is not a known optax schedule; "
                f"expected one of {closest_names(str(name), _SCHEDULES)} (all: {list(_SCHEDULES)})")
        try:
            return getattr(optax, name)(**spec)
        except TypeError as e:
            raise ConfigError(f"{owner}: bad arguments for optax.{name}: {e}") from e
    if callable(value):
        return value
    # refuse "fast" or None now, not at the first training step
    if isinstance(value, bool) or not (
            np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)
            and np.isfinite(value)):
        raise ConfigError(f"{owner}: learning rate {value!r} must be a finite number, an optax "
                          "schedule or a {'schedule': name, ...} spec")
    return value


def _keep_frozen_state(tx: Any, old: Any, new: Any, frozen: Any, params: Any) -> Any:
    """``new`` optimizer state with the frozen leaves' per-parameter entries from ``old``."""
    pairs = jax.tree.map(_Pair, old, new)

    def select(pair: _Pair, f: Any) -> Any:
        if not hasattr(pair.new, "shape"):
            return pair.new
        return jnp.where(f, pair.old, pair.new)

    try:
        return optax.tree_map_params(tx, select, pairs, frozen,
                                     transform_non_params=lambda p: p.new,
                                     is_leaf=lambda x: isinstance(x, _Pair))
    except Exception:  # a custom transform whose init cannot run on placeholders
        pass
    # fallback: every state subtree with exactly the params' structure is per-parameter
    pdef = jax.tree.structure(params)

    def is_pair(x: Any) -> bool:
        return isinstance(x, _Pair)

    def is_param_tree(x: Any) -> bool:
        return not is_pair(x) and jax.tree.structure(x, is_leaf=is_pair) == pdef

    def pick(sub: Any) -> Any:
        if is_pair(sub):
            return sub.new
        return jax.tree.map(select, sub, frozen, is_leaf=is_pair)

    return jax.tree.map(pick, pairs, is_leaf=lambda x: is_pair(x) or is_param_tree(x))


def freezable(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap any optax transformation so that ``update(..., frozen=mask)`` freezes leaves.

    ``frozen`` is a traced extra argument (a pytree of boolean scalars from
    :func:`frozen_mask`), so changing what is frozen changes values, not the program.
    For frozen leaves the wrapped chain sees a zero gradient (it does not count in a
    global-norm clip), the returned update is ``-0.0`` (``p + -0.0`` is ``p`` bit for
    bit, signed zeros included, so decoupled weight decay cannot move them) and their
    optimizer state keeps its old values, so unfreezing resumes with the moments it had.
    Without ``frozen`` it is the wrapped transformation unchanged.

    Args:
        tx: any optax ``GradientTransformation`` (a chain, ``inject_hyperparams``, ...).

    Returns:
        A ``GradientTransformationExtraArgs``.

    Example:
        >>> tx = freezable(optax.adamw(0.1, weight_decay=0.5))
        >>> params = {"a": jnp.ones(2), "b": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> grads = jax.tree.map(jnp.ones_like, params)
        >>> upd, state = tx.update(grads, state, params, frozen={"a": True, "b": False})
        >>> new = optax.apply_updates(params, upd)
        >>> bool((new["a"] == 1).all()), bool((new["b"] < 1).all())
        (True, True)
    """
    inner = optax.with_extra_args_support(tx)

    def update(updates: Any, state: Any, params: Any = None, *, frozen: Any = None,
               **extra: Any) -> tuple[Any, Any]:
        if frozen is None:
            return inner.update(updates, state, params, **extra)
        zeroed = jax.tree.map(lambda g, f: jnp.where(f, jnp.zeros_like(g), g), updates, frozen)
        stepped, new_state = inner.update(zeroed, state, params, **extra)
        kept = jax.tree.map(lambda f, u: jnp.where(f, -jnp.zeros_like(u), u), frozen, stepped)
        return kept, _keep_frozen_state(tx, state, new_state, frozen, params)

    return optax.GradientTransformationExtraArgs(inner.init, update)


@register("Optimizer")
class Optimizer:
    """An optax optimizer by name (with kwargs) or instance, plus gradient clipping.

    Args:
        opt: an optax constructor name (``"adam"``, ``"adamw"``, ``"sgd"``,
            ``"rmsprop"``, ``"lion"``, ...) or an ``optax.GradientTransformation``.
        opt_kwargs: keyword arguments for the constructor. ``lr`` is an alias of
            ``learning_rate``; the rate may be a float, an optax schedule, or a JSON
            spec such as ``{"schedule": "cosine_decay_schedule", "init_value": 1e-3,
            "decay_steps": 1000}``.
        factory: a zero-argument callable returning a GradientTransformation
            (mutually exclusive with ``opt``).
        clip_norm: clip gradients by global norm before the optimizer.
        clip_value: clip each gradient element to ``[-clip_value, clip_value]``.
        backend: ModularML's framework choice; accepted and ignored (one-time note).

    ModularML's torch spellings (``Optimizer(torch.optim.AdamW, opt_kwargs={...})``,
    ``factory=lambda params: torch.optim.SGD(params, ...)``) run as the optax optimizer
    with the same update rule where one exists (``modjax.train.torch_optim``).

    Example:
        >>> opt = Optimizer("adamw", opt_kwargs={"lr": 1e-2, "weight_decay": 0.1})
        >>> params = {"a": {"w": jnp.ones(2)}, "b": {"w": jnp.ones(2)}}
        >>> state = opt.init(params)
        >>> grads = jax.tree.map(jnp.ones_like, params)
        >>> new, state = opt.update(grads, state, params, frozen=frozen_mask(params, ["a"]))
        >>> bool((new["a"]["w"] == params["a"]["w"]).all()), bool((new["b"]["w"] < 1).all())
        (True, True)
    """

    def __init__(self, opt: str | optax.GradientTransformation | None = None, *,
                 opt_kwargs: dict[str, Any] | None = None, factory: Callable[[], Any] | None = None,
                 clip_norm: float | None = None, clip_value: float | None = None,
                 backend: Any = None) -> None:
        from modjax.backend_note import note_backend
        note_backend("Optimizer", backend)
        from modjax.train.torch_optim import map_torch_optimizer
        torch_spec = map_torch_optimizer(opt, opt_kwargs, factory)
        #: the torch optimizer class a ModularML spelling named (None otherwise)
        self.cls = None if torch_spec is None else torch_spec.torch_class
        if torch_spec is not None:  # same update rule in optax (said once per class)
            factory = None
            opt, opt_kwargs = ((torch_spec.transformation(), None) if torch_spec.weight_decay
                               else (torch_spec.name, torch_spec.kwargs))
        if (opt is None) == (factory is None):
            raise ValueError("Optimizer needs exactly one of `opt` (a name or an optax "
                             "GradientTransformation) or `factory`")
        kwargs = dict(opt_kwargs or {})
        if "lr" in kwargs:
            if "learning_rate" in kwargs:
                raise ValueError("Optimizer: pass `lr` or `learning_rate`, not both")
            kwargs["learning_rate"] = kwargs.pop("lr")
        self.name: str | None = None
        if isinstance(opt, str):
            self.name = opt.lower()
            fn = getattr(optax, self.name, None)
            if self.name not in OPTIMIZER_NAMES and not (
                    callable(fn) and self.name.islower() and not self.name.startswith("_")):
                raise ValueError(
                    f"unknown optimizer {opt!r}; did you mean {closest_names(self.name, OPTIMIZER_NAMES)}? "
                    f"(any optax optimizer constructor name, e.g. {list(OPTIMIZER_NAMES[:5])})")
            if "learning_rate" not in kwargs and self.name not in ("adafactor", "polyak_sgd"):
                kwargs["learning_rate"] = 1e-3
        elif opt is not None and not isinstance(opt, optax.GradientTransformation):
            raise TypeError(f"Optimizer: `opt` must be an optax optimizer name or a "
                            f"GradientTransformation, got {type(opt).__name__}")
        elif opt is not None and kwargs:
            raise ValueError("Optimizer: opt_kwargs only apply when `opt` is a name")
        for what, v in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if v is not None and not v > 0:
                raise ValueError(f"Optimizer: {what} must be > 0, got {v}")
        self._opt = opt
        self.kwargs = kwargs
        self.factory = factory
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.tx: optax.GradientTransformation = self._build()
        self._transform: optax.GradientTransformationExtraArgs | None = None
        self.state: Any = None

    def _build(self) -> optax.GradientTransformation:
        if self.name is not None:
            kwargs = dict(self.kwargs)
            if "learning_rate" in kwargs:
                kwargs["learning_rate"] = _resolve_learning_rate(
                    kwargs["learning_rate"], owner=f"Optimizer({self.name!r})")
            try:
                base = getattr(optax, self.name)(**kwargs)
            except TypeError as e:
                raise ValueError(f"Optimizer({self.name!r}): bad opt_kwargs {sorted(self.kwargs)}: {e}") from e
        elif self.factory is not None:
            base = self.factory()
            if not isinstance(base, optax.GradientTransformation):
                raise TypeError(f"Optimizer factory returned {type(base).__name__}, expected an "
                                "optax.GradientTransformation")
        else:
            base = self._opt
        parts = []
        if self.clip_value is not None:
            parts.append(optax.clip(self.clip_value))
        if self.clip_norm is not None:
            parts.append(optax.clip_by_global_norm(self.clip_norm))
        return optax.chain(*parts, base) if parts else base

    # ----- pure core ---------------------------------------------------------------
    def init(self, params: Any) -> Any:
        """Optimizer state for ``params`` (pure; does not touch ``self.state``)."""
        return self.tx.init(params)

    def update(self, grads: Any, opt_state: Any, params: Any, frozen: Any = None) -> tuple[Any, Any]:
        """One optimizer step; frozen leaves keep params and state exactly (pure, jittable).

        Args:
            grads: gradients shaped like ``params``.
            opt_state: state from :meth:`init`.
            params: current parameters.
            frozen: optional pytree of boolean scalars from :func:`frozen_mask`.

        Returns:
            ``(new_params, new_opt_state)``.
        """
        updates, new_state = self.transform.update(grads, opt_state, params, frozen=frozen)
        return optax.apply_updates(params, updates), new_state

    @property
    def transform(self) -> optax.GradientTransformationExtraArgs:
        """The whole chain as one optax transformation taking ``frozen=`` as an extra
        argument (see :func:`freezable`)."""
        if self._transform is None:
            self._transform = freezable(self.tx)
        return self._transform

    @property
    def spec(self) -> tuple[Any, ...]:
        """A hashable value describing what this optimizer computes.

        Two optimizers built by name from equal arguments have equal specs, so programs
        compiled for one are reused for the other; an optax instance or factory is
        compared by identity (its closures are opaque).
        """
        from modjax.graph.definition import freeze_value, ident

        what = (self.name, freeze_value(self.kwargs)) if self.name is not None else (
            ident(self._opt if self._opt is not None else self.factory),)
        return ("Optimizer", *what, self.clip_norm, self.clip_value)

    # ----- shell -------------------------------------------------------------------
    def build(self, params: Any, *, force: bool = False) -> Any:
        """Initialise and keep ``self.state`` for ``params`` (once unless ``force``)."""
        if self.state is None or force:
            self.state = self.init(params)
        return self.state

    def get_config(self) -> dict[str, Any]:
        """JSON config; an instance/factory/callable schedule is not serialisable."""
        if self.name is None:
            raise ConfigError("Optimizer built from an optax instance or factory has no JSON "
                              "config; construct it by name (Optimizer('adam', opt_kwargs=...)) "
                              "to save it")
        for k, v in self.kwargs.items():
            if callable(v):
                raise ConfigError(f"Optimizer({self.name!r}): opt_kwargs[{k!r}] is a callable; use "
                                  "a JSON schedule spec {'schedule': 'cosine_decay_schedule', ...} "
                                  "to make it serialisable")
        return {"opt": self.name, "opt_kwargs": copy.deepcopy(self.kwargs),
                "clip_norm": self.clip_norm, "clip_value": self.clip_value}

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> Optimizer:
        """Rebuild from :meth:`get_config` output."""
        return cls(config["opt"], opt_kwargs=config.get("opt_kwargs"),
                   clip_norm=config.get("clip_norm"), clip_value=config.get("clip_value"))

    def get_state(self) -> dict[str, Any]:
        """``{"opt_state": pytree or None}``."""
        return {"opt_state": self.state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`get_state` (structure checked when a state exists)."""
        new = state.get("opt_state") if isinstance(state, Mapping) else None
        if new is not None and self.state is not None:
            if jax.tree.structure(new) != jax.tree.structure(self.state):
                raise ValueError(f"Optimizer({self.name!r}).set_state: state structure does not "
                                 "match this optimizer's state")
        self.state = new

    def __repr__(self) -> str:
        what = self.name or type(self._opt).__name__ if self._opt is not None else "factory"
        return f"Optimizer({what!r}, opt_kwargs={self.kwargs})"
