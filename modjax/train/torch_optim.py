"""torch.optim spellings mapped onto the optax optimizer with the same update rule.

ModularML code names its optimizers as torch classes (``Optimizer(torch.optim.AdamW,
opt_kwargs={...})``) or as factories of the parameters (``factory=lambda params:
torch.optim.SGD(params, lr=0.01, momentum=0.9)``). modjax's optimizers are optax
transformations, so such a spelling is accepted only when an optax optimizer applies
exactly the same update: Adam, AdamW, SGD (momentum, Nesterov) and RMSprop (momentum,
centered), with coupled ``weight_decay`` as ``optax.add_decayed_weights`` before the
step. Every hyperparameter is read from the torch optimizer itself (torch's defaults
included: ``AdamW`` decays by 0.01, optax's ``adamw`` by 1e-4), and the mapping is said
once per torch class. Anything else (AMSGrad, dampening, ``maximize``, several
parameter groups, other classes) is refused with the reason: an almost-equal optimizer
would train differently without saying so.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TorchOptimizerMapped", "TorchMapping", "map_torch_optimizer"]

#: how torch computes (kernels, graph capture), not what it computes
_IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")
_NOTED: set[str] = set()


class TorchOptimizerMapped(UserWarning):
    """Issued once per torch optimizer class mapped onto optax."""


@dataclass(frozen=True)
class TorchMapping:
    """The optax optimizer standing for a torch one.

    Attributes:
        name: the optax constructor name.
        kwargs: its keyword arguments.
        weight_decay: torch's coupled (L2) weight decay, added to the gradient before
            the step (0: none).
        torch_class: the torch optimizer class that was given.
    """

    name: str
    kwargs: dict[str, Any]
    weight_decay: float
    torch_class: type

    def transformation(self) -> Any:
        """The optax transformation (a chain when there is coupled weight decay)."""
        import optax

        base = getattr(optax, self.name)(**self.kwargs)
        if not self.weight_decay:
            return base
        return optax.chain(optax.add_decayed_weights(self.weight_decay), base)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        text = f"optax.{self.name}({args})"
        if self.weight_decay:
            text = f"optax.chain(optax.add_decayed_weights({self.weight_decay!r}), {text})"
        return text


def _is_torch_class(obj: Any) -> bool:
    return isinstance(obj, type) and str(getattr(obj, "__module__", "")).startswith("torch.optim")


def _takes_params(factory: Any) -> bool:
    """A ModularML-style factory ``f(params)``; modjax's own factories take nothing."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    required = [p for p in sig.parameters.values() if p.default is p.empty and p.kind in (
        p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1


def _instantiate(opt: Any, opt_kwargs: dict[str, Any] | None,
                 factory: Callable[..., Any] | None) -> Any:
    import torch

    dummy = [torch.nn.Parameter(torch.zeros(1))]
    if factory is not None:
        inst = factory(dummy)
        if not isinstance(inst, torch.optim.Optimizer):
            raise TypeError(
                f"Optimizer: factory(params) returned {type(inst).__name__}; a factory taking the "
                "parameters must return a torch.optim optimizer (mapped onto optax), and "
                "modjax's own factory takes no arguments and returns an optax "
                "GradientTransformation")
        return inst
    kwargs = dict(opt_kwargs or {})
    try:
        return opt(dummy, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Optimizer({opt.__name__}): bad opt_kwargs {sorted(kwargs)}: {e}") from e


def _refuse(cls: type, why: str) -> ValueError:
    return ValueError(
        f"Optimizer(torch.optim.{cls.__name__}): {why}, so no optax optimizer applies the "
        "same update; pass an optax name or GradientTransformation instead")


def _hyper(cls: type, group: dict[str, Any]) -> dict[str, Any]:
    h = {k: v for k, v in group.items() if k not in ("params", *_IMPLEMENTATION_FLAGS)}
    if h.pop("maximize", False):
        raise _refuse(cls, "maximize=True")
    if h.pop("amsgrad", False):
        raise _refuse(cls, "torch's AMSGrad keeps the maximum of the uncorrected second "
                      "moment (optax.amsgrad: of the bias-corrected one)")
    for k, v in h.items():
        if hasattr(v, "shape") and getattr(v, "ndim", 0) == 0:  # tensor lr / betas
            h[k] = float(v)
    return h


def _adam(cls: type, h: dict[str, Any]) -> tuple[str, dict[str, Any], float]:
    b1, b2 = (float(b) for b in h.pop("betas"))
    kwargs = {"learning_rate": float(h.pop("lr")), "b1": b1, "b2": b2,
              "eps": float(h.pop("eps"))}
    wd = float(h.pop("weight_decay"))
    if h.pop("decoupled_weight_decay", cls.__name__ == "AdamW"):
        return "adamw", {**kwargs, "weight_decay": wd}, 0.0
    return "adam", kwargs, wd


def _sgd(cls: type, h: dict[str, Any]) -> tuple[str, dict[str, Any], float]:
    if float(h.pop("dampening")):
        raise _refuse(cls, "dampening != 0")
    momentum = float(h.pop("momentum"))
    kwargs: dict[str, Any] = {"learning_rate": float(h.pop("lr")),
                              "momentum": momentum or None, "nesterov": bool(h.pop("nesterov"))}
    return "sgd", kwargs, float(h.pop("weight_decay"))


def _rmsprop(cls: type, h: dict[str, Any]) -> tuple[str, dict[str, Any], float]:
    momentum = float(h.pop("momentum"))
    kwargs = {"learning_rate": float(h.pop("lr")), "decay": float(h.pop("alpha")),
              "eps": float(h.pop("eps")), "eps_in_sqrt": False, "initial_scale": 0.0,
              "centered": bool(h.pop("centered")), "momentum": momentum or None}
    return "rmsprop", kwargs, float(h.pop("weight_decay"))


_MAPPERS = {"Adam": _adam, "AdamW": _adam, "SGD": _sgd, "RMSprop": _rmsprop}


def map_torch_optimizer(opt: Any, opt_kwargs: dict[str, Any] | None,
                        factory: Callable[..., Any] | None) -> TorchMapping | None:
    """The optax equivalent of a torch optimizer class or ``factory(params)``, or None
    when neither is a torch spelling (nothing is imported then).

    Args:
        opt: what was passed as ``Optimizer(opt)``.
        opt_kwargs: torch keyword arguments (``lr``, ``betas``, ``momentum`` ...).
        factory: what was passed as ``Optimizer(factory=...)``.

    Returns:
        A :class:`TorchMapping`, or None.

    Raises:
        ValueError: a torch optimizer or option with no exact optax equivalent.

    Example:
        >>> map_torch_optimizer("adam", None, None) is None
        True
    """
    if (opt is None) == (factory is None) or factory is not None and not _takes_params(factory):
        return None
    if factory is None and not _is_torch_class(opt):
        return None
    inst = _instantiate(opt, opt_kwargs, factory)
    cls = type(inst)
    import torch

    mapper = _MAPPERS.get(cls.__name__)
    if mapper is None or getattr(torch.optim, cls.__name__, None) is not cls:
        raise _refuse(cls, f"modjax maps only torch.optim.{{{', '.join(_MAPPERS)}}}")
    if len(inst.param_groups) != 1:
        raise _refuse(cls, f"{len(inst.param_groups)} parameter groups")
    h = _hyper(cls, dict(inst.param_groups[0]))
    name, kwargs, wd = mapper(cls, h)
    if h:
        raise _refuse(cls, f"options {sorted(h)} are not mapped")
    mapping = TorchMapping(name, kwargs, wd, cls)
    if cls.__name__ not in _NOTED:
        _NOTED.add(cls.__name__)
        warnings.warn(f"torch.optim.{cls.__name__} runs as {mapping.describe()} (the same update "
                      "rule); this note is shown once", TorchOptimizerMapped, stacklevel=3)
    return mapping
