"""``Loss`` (a per-sample loss function) and ``AppliedLoss`` (a loss bound to a node).

A :class:`Loss` maps arrays with a leading batch axis to one loss per sample; the
reduction over the batch happens in :meth:`AppliedLoss.reduce`, which honours the
sampler's sample weights and padding mask (padded rows never count). Everything is
``jnp`` and runs inside the jitted step.

References name what a loss compares. A reference is ``[role.][node.]domain[.key]``:

* ``"outputs"`` / ``"targets"``: the ``on`` node's outputs / routed targets,
* ``"Encoder.outputs"``: another node's outputs,
* ``"anchor.outputs"``: the ``on`` node's outputs for sampler role ``anchor``,
* ``"features"``, ``"tags.group"``: the head batch's features / a numeric tag column.

Whether a prefix is a role or a node is decided when the step is built, against the
graph's node labels and the sampler's roles; an unknown name is an error naming it.

**Shape rule** (checked when the step is traced, so before any training): the inputs a
built-in loss compares element-wise (``mse``, ``mae``, ``huber``, ``bce``,
``bce_with_logits``, ``cross_entropy``, ``cosine``, ``triplet``, the two embeddings of
``contrastive``) must have the same per-sample shape, or shapes that differ only by
size-1 axes (``(B, 1, 1)`` outputs against ``(B, 1)`` targets), which are squeezed to
the first input's shape. ``sparse_cross_entropy`` labels must match the logits without
their class axis (again up to size-1 axes). Anything else is a
:class:`~modjax.errors.ShapeMismatchError` naming the loss, its node and both shapes:
NumPy broadcasting of ``(B, 1, 1)`` against ``(B, 1)`` would silently compare every
prediction with every target. A custom callable gets the same squeeze between inputs of
equal per-sample size; whatever it returns must keep the batch axis first and must not
hold more values per sample than its largest input (a sign of broadcasting).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from modjax.errors import ConfigError, ShapeMismatchError, closest_names
from modjax.io.registry import register

__all__ = ["Loss", "AppliedLoss", "LossRef", "LOSS_NAMES"]

DOMAINS = ("outputs", "targets", "features", "tags")


def _per_sample(x: jax.Array) -> jax.Array:
    """Mean over every axis but the batch axis."""
    return x.reshape(x.shape[0], -1).mean(axis=1) if x.ndim > 1 else x


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _mse(pred, target):
    return _per_sample(optax.losses.squared_error(pred, target))


def _mae(pred, target):
    return _per_sample(jnp.abs(pred - target))


def _huber(pred, target, delta: float = 1.0):
    return _per_sample(optax.losses.huber_loss(pred, target, delta=delta))


def _bce(pred, target, eps: float = 1e-7):
    p = jnp.clip(pred, eps, 1.0 - eps)
    return _per_sample(-(target * jnp.log(p) + (1.0 - target) * jnp.log1p(-p)))


def _bce_logits(logits, target):
    return _per_sample(optax.losses.sigmoid_binary_cross_entropy(logits, target))


def _cross_entropy(logits, target):
    # class axis is the last one; extra axes (e.g. the key axis of size 1) are averaged
    return _per_sample(optax.losses.softmax_cross_entropy(logits, target))


def _sparse_cross_entropy(logits, labels):
    labels = labels.astype(jnp.int32)
    if labels.ndim == logits.ndim:  # (n, 1) integer targets against (n, C) logits
        labels = labels[..., 0]
    return _per_sample(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


def _cosine(pred, target, eps: float = 1e-8):
    return optax.losses.cosine_distance(_flat(pred), _flat(target), epsilon=eps)


def _dist(a, b):
    return jnp.sqrt(jnp.sum(jnp.square(_flat(a) - _flat(b)), axis=1) + 1e-12)


def _triplet(anchor, positive, negative, margin: float = 1.0):
    return optax.losses.triplet_margin_loss(_flat(anchor), _flat(positive), _flat(negative),
                                            margin=margin, eps=1e-12)


def _contrastive(x1, x2, similar, margin: float = 1.0):
    d = _dist(x1, x2)
    y = _flat(similar).mean(axis=1).astype(d.dtype)
    return y * jnp.square(d) + (1.0 - y) * jnp.square(jax.nn.relu(margin - d))


_BUILTINS: dict[str, Callable[..., jax.Array]] = {
    "mse": _mse, "mae": _mae, "l1": _mae, "huber": _huber, "bce": _bce,
    "bce_with_logits": _bce_logits, "cross_entropy": _cross_entropy,
    "sparse_cross_entropy": _sparse_cross_entropy, "cosine": _cosine,
    "triplet": _triplet, "contrastive": _contrastive,
}
LOSS_NAMES = tuple(_BUILTINS)
# Positional inputs of each built-in that are compared element-wise: same per-sample shape.
_SAME_SHAPE: dict[str, tuple[int, ...]] = {
    "mse": (0, 1), "mae": (0, 1), "l1": (0, 1), "huber": (0, 1), "bce": (0, 1),
    "bce_with_logits": (0, 1), "cross_entropy": (0, 1), "cosine": (0, 1),
    "triplet": (0, 1, 2), "contrastive": (0, 1),
}


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _fit_to(x: jax.Array, shape: tuple[int, ...], *, what: str, ref: str, other: str
            ) -> jax.Array:
    """``x`` reshaped to ``shape`` when the two differ only by size-1 axes (else an error).

    Example:
        >>> _fit_to(jnp.zeros((4, 1)), (4, 1, 1), what="mse", ref="outputs",
        ...         other="targets").shape
        (4, 1, 1)
    """
    if tuple(x.shape) == tuple(shape):
        return x
    if x.ndim and len(shape) and x.shape[0] == shape[0] and \
            _squeezed(x.shape[1:]) == _squeezed(tuple(shape[1:])):
        return x.reshape(shape)
    raise ShapeMismatchError(
        f"{what}: {ref} has shape {tuple(shape)} but {other} has shape {tuple(x.shape)}; "
        "the per-sample shapes must be equal or differ only by size-1 axes (broadcasting "
        "them would compare every sample with every other one). Give the node an "
        "output_shape matching the targets")
_REDUCTIONS = ("mean", "sum", "none")


@register("Loss")
class Loss:
    """A loss function returning one value per sample.

    Args:
        loss: a built-in name (``mse``, ``mae``, ``huber``, ``bce``, ``bce_with_logits``,
            ``cross_entropy``, ``sparse_cross_entropy``, ``cosine``, ``triplet``,
            ``contrastive``) or a jnp callable. A callable may return per-sample values
            ``(batch,)`` (or ``(batch, ...)``, averaged per sample) or a scalar.
        loss_kwargs: extra keyword arguments (``delta`` for huber, ``margin``, ...).
        reduction: how :class:`AppliedLoss` reduces over the batch: ``"mean"`` (weighted
            mean over unmasked samples), ``"sum"`` (weighted sum) or ``"none"``
            (accepted for seed compatibility: a step needs a scalar, so it reduces
            like ``"mean"``; per-sample values come from ``Loss.__call__``).
        factory: zero-argument callable returning the loss callable.
        backend: ModularML's framework choice; accepted and ignored (one-time note).

    Example:
        >>> Loss("mse")(jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [1.0]]))
        Array([1., 4.], dtype=float32)
    """

    def __init__(self, loss: str | Callable[..., Any] | None = None, *,
                 loss_kwargs: dict[str, Any] | None = None, reduction: str = "mean",
                 factory: Callable[[], Callable[..., Any]] | None = None,
                 backend: Any = None) -> None:
        from modjax.backend_note import note_backend
        note_backend("Loss", backend)
        if (loss is None) == (factory is None):
            raise ValueError("Loss needs exactly one of `loss` (a name or callable) or `factory`")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"Loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.name: str | None = None
        if isinstance(loss, str):
            self.name = loss.lower()
            if self.name not in _BUILTINS:
                raise ValueError(f"unknown loss {loss!r}; did you mean "
                                 f"{closest_names(self.name, LOSS_NAMES)}? (built-ins: {list(LOSS_NAMES)})")
            fn = _BUILTINS[self.name]
        elif loss is not None:
            if not callable(loss):
                raise TypeError(f"Loss: `loss` must be a name or a callable, got {type(loss).__name__}")
            fn = loss
        else:
            fn = factory()
            if not callable(fn):
                raise TypeError("Loss: factory must return a callable")
        self.fn = fn
        self.factory = factory
        self.kwargs = dict(loss_kwargs or {})
        self.reduction = reduction
        try:
            sig = inspect.signature(fn)
            self.allowed_keywords = [p.name for p in sig.parameters.values()
                                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            self.allowed_keywords = []

    def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
        """Per-sample loss values ``(batch,)``; a scalar-returning callable gives ``()``."""
        out = jnp.asarray(self.fn(*args, **kwargs, **self.kwargs))
        return _per_sample(out) if out.ndim >= 1 else out

    def get_config(self) -> dict[str, Any]:
        """JSON config (a custom callable is stored by its import path)."""
        if self.name is not None:
            loss: Any = self.name
        else:
            target = self.factory or self.fn
            mod, qual = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
            if not mod or "<" in qual:
                raise ConfigError(f"Loss({qual or target!r}) is a lambda/local function and has "
                                  "no JSON config; use a module-level function")
            loss = {"callable": f"{mod}:{qual}", "factory": self.factory is not None}
        return {"loss": loss, "loss_kwargs": dict(self.kwargs), "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, allow_packaged_code: bool = False,
                    **_: Any) -> Loss:
        """Rebuild; importing a custom callable needs ``allow_packaged_code=True``."""
        loss = config["loss"]
        kw = {"loss_kwargs": config.get("loss_kwargs"), "reduction": config.get("reduction", "mean")}
        if isinstance(loss, str):
            return cls(loss, **kw)
        if not allow_packaged_code:
            raise ConfigError(f"Loss config refers to user code {loss['callable']!r}; pass "
                              "allow_packaged_code=True to import it")
        import importlib
        mod, qual = loss["callable"].split(":")
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
        return cls(factory=obj, **kw) if loss.get("factory") else cls(obj, **kw)

    def __repr__(self) -> str:
        return f"Loss({self.name or getattr(self.fn, '__name__', self.fn)!r})"


@dataclass(frozen=True)
class LossRef:
    """A parsed reference: ``prefix`` names (role and/or node, resolved later), domain, key."""

    text: str
    prefix: tuple[str, ...]
    domain: str
    key: str | None = None

    @classmethod
    def parse(cls, text: str, *, owner: str) -> LossRef:
        """Parse ``[role.][node.]domain[.key]``."""
        if not isinstance(text, str) or not text:
            raise TypeError(f"{owner}: a loss input must be a reference string such as "
                            f"'outputs' or 'Encoder.outputs', got {text!r}")
        parts = text.split(".")
        idx = [i for i, p in enumerate(parts) if p in DOMAINS]
        if not idx:
            raise ValueError(f"{owner}: loss input {text!r} names no domain; expected one of "
                             f"{list(DOMAINS)} (e.g. 'outputs', 'Encoder.outputs', 'anchor.outputs')")
        i = idx[-1] if parts[-1] in DOMAINS else idx[0]
        prefix, domain, rest = tuple(parts[:i]), parts[i], parts[i + 1:]
        if domain == "tags":
            if len(rest) != 1:
                raise ValueError(f"{owner}: tag reference {text!r} must name one tag key, "
                                 "e.g. 'tags.group'")
            key = rest[0]
        elif rest:
            raise ValueError(f"{owner}: unexpected {'.'.join(rest)!r} after {domain!r} in {text!r}")
        else:
            key = None
        if len(prefix) > 2:
            raise ValueError(f"{owner}: loss input {text!r} has too many parts; expected "
                             "[role.][node.]domain")
        return cls(text, prefix, domain, key)


@register("AppliedLoss")
class AppliedLoss:
    """A :class:`Loss` attached to a graph node, with named inputs and a weight.

    Args:
        loss: the loss, a built-in name, or a per-sample jnp callable (wrapped in ``Loss``).
        on: the node (label or object with ``.label``) the loss belongs to; its outputs
            and targets are what ``"outputs"``/``"targets"`` refer to. In stage-wise
            training the loss trains this node.
        inputs: references (see the module docstring), positional (list) or keyword
            (dict mapping the loss function's argument names to references).
        weight: multiplier of this loss in the total.
        label: name in results (default ``"<node>.<loss>"``, e.g. ``"head.mse"``).

    Example:
        >>> al = AppliedLoss("mse", on="head", inputs=["outputs", "targets"])
        >>> al.label, [r.domain for r in al.refs]
        ('head.mse', ['outputs', 'targets'])
        >>> vals = jnp.array([1.0, 3.0, 100.0]); mask = jnp.array([True, True, False])
        >>> float(al.reduce(vals, weights=jnp.ones(3), mask=mask))
        2.0
    """

    def __init__(self, loss: Loss | str | Callable[..., Any], on: Any,
                 inputs: Sequence[str] | Mapping[str, str] = ("outputs", "targets"), *,
                 weight: float = 1.0, label: str | None = None) -> None:
        # a name or a bare per-sample jnp callable is wrapped in a Loss (mean reduction)
        self.loss = Loss(loss) if isinstance(loss, str) or (
            callable(loss) and not isinstance(loss, Loss)) else loss
        if not isinstance(self.loss, Loss):
            raise TypeError(f"AppliedLoss: `loss` must be a Loss, a loss name or a callable, got "
                            f"{type(loss).__name__}")
        node = getattr(on, "label", on)
        if not isinstance(node, str) or not node:
            raise TypeError(f"AppliedLoss: `on` must be a node or node label, got {on!r}")
        self.node = node
        lossname = self.loss.name or getattr(self.loss.fn, "__name__", "loss")
        self.label = label or f"{node}.{lossname}"
        owner = f"AppliedLoss {self.label!r}"
        if isinstance(inputs, Mapping):
            self.keyword = True
            self.input_names: tuple[str, ...] = tuple(inputs)
            self.refs = tuple(LossRef.parse(v, owner=owner) for v in inputs.values())
        elif isinstance(inputs, Sequence) and not isinstance(inputs, str):
            self.keyword = False
            self.input_names = ()
            self.refs = tuple(LossRef.parse(v, owner=owner) for v in inputs)
        else:
            raise TypeError(f"{owner}: `inputs` must be a list or dict of references, got "
                            f"{type(inputs).__name__}")
        if not self.refs:
            raise ValueError(f"{owner}: `inputs` is empty")
        self.weight = float(weight)

    @property
    def inputs(self) -> list[str] | dict[str, str]:
        """The references as given (list or dict)."""
        texts = [r.text for r in self.refs]
        return dict(zip(self.input_names, texts)) if self.keyword else texts

    def _positions(self) -> list[int | None]:
        """The loss function's argument position of each input (None: unknown name)."""
        if not self.keyword:
            return list(range(len(self.refs)))
        order = self.loss.allowed_keywords
        return [order.index(n) if n in order else None for n in self.input_names]

    def align(self, values: Sequence[jax.Array]) -> list[jax.Array]:
        """Apply the module's shape rule to resolved inputs (reference order).

        Raises:
            ShapeMismatchError: inputs that must match differ by more than size-1 axes
                (names the loss, its node and both shapes).

        Example:
            >>> al = AppliedLoss("mse", on="head")
            >>> [v.shape for v in al.align([jnp.zeros((8, 1, 1)), jnp.zeros((8, 1))])]
            [(8, 1, 1), (8, 1, 1)]
        """
        vals = [jnp.asarray(v) for v in values]
        what = f"AppliedLoss {self.label!r} ({self.loss!r}) on node {self.node!r}"
        pos = self._positions()
        at = {p: i for i, p in enumerate(pos) if p is not None}
        name = self.loss.name
        if name == "sparse_cross_entropy" and 0 in at and 1 in at:
            logits, labels = vals[at[0]], vals[at[1]]
            vals[at[1]] = _fit_to(labels, tuple(logits.shape[:-1]), what=what,
                                  ref=f"{self.refs[at[0]].text!r} without its class axis",
                                  other=f"{self.refs[at[1]].text!r}")
            return vals
        if name is not None:
            group = [at[p] for p in _SAME_SHAPE.get(name, ()) if p in at]
        else:  # a custom callable: only inputs of equal per-sample size are squeezed
            group = [i for i, v in enumerate(vals) if v.ndim and vals[0].ndim
                     and v.shape[0] == vals[0].shape[0] and v.size == vals[0].size]
        for i in group[1:]:
            vals[i] = _fit_to(vals[i], tuple(vals[group[0]].shape), what=what,
                              ref=repr(self.refs[group[0]].text), other=repr(self.refs[i].text))
        return vals

    def _check_output(self, out: jax.Array, vals: Sequence[jax.Array]) -> None:
        raw = [v for v in vals if v.ndim]
        if out.ndim == 0 or not raw:
            return
        batch = raw[0].shape[0]
        per_sample = max(int(v.size) // max(int(v.shape[0]), 1) for v in raw)
        if out.shape[0] != batch or int(out.size) // max(batch, 1) > per_sample:
            shapes = ", ".join(f"{r.text!r} {tuple(v.shape)}" for r, v in zip(self.refs, vals))
            raise ShapeMismatchError(
                f"AppliedLoss {self.label!r} ({self.loss!r}) on node {self.node!r} returned "
                f"shape {tuple(out.shape)} for inputs {shapes}: a loss must return one value "
                f"per sample ({batch},) (or a scalar); more values than its inputs hold per "
                "sample means the inputs were broadcast against each other")

    def compute(self, values: Sequence[jax.Array]) -> jax.Array:
        """Per-sample loss for resolved input arrays (in reference order).

        The inputs follow the shape rule of the module docstring (:meth:`align`).
        """
        vals = self.align(values)
        if self.keyword:
            raw = self.loss.fn(**dict(zip(self.input_names, vals)), **self.loss.kwargs)
        else:
            raw = self.loss.fn(*vals, **self.loss.kwargs)
        out = jnp.asarray(raw)
        self._check_output(out, vals)
        return _per_sample(out) if out.ndim >= 1 else out

    def reduce(self, per_sample: jax.Array, *, weights: jax.Array | None = None,
               mask: jax.Array | None = None) -> jax.Array:
        """Weighted scalar over unmasked samples (``reduction`` "sum" sums; else mean).

        A fully masked batch gives 0 (no gradient), which is how inactive samplers
        in alternating schedules contribute nothing.
        """
        if per_sample.ndim == 0:
            return per_sample * self.weight
        w = jnp.ones_like(per_sample) if weights is None else weights.astype(per_sample.dtype)
        if mask is not None:
            w = jnp.where(mask, w, 0.0)
        # where, not multiply: a NaN/inf in a padded row must not leak into the total
        total = jnp.sum(jnp.where(w != 0, per_sample * w, 0.0))
        if self.loss.reduction != "sum":
            total = total / jnp.maximum(jnp.sum(w), jnp.finfo(per_sample.dtype).tiny)
        return total * self.weight

    def get_config(self) -> dict[str, Any]:
        """JSON config."""
        from modjax.io.registry import serialize
        return {"loss": serialize(self.loss), "on": self.node, "inputs": self.inputs,
                "weight": self.weight, "label": self.label}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kwargs: Any) -> AppliedLoss:
        """Rebuild from :meth:`get_config` output."""
        from modjax.io.registry import deserialize
        lc = config["loss"]
        loss = Loss.from_config(lc["config"], **kwargs) if lc.get("class") == "Loss" else \
            deserialize(lc, **kwargs)
        return cls(loss, config["on"], config["inputs"],
                   weight=config.get("weight", 1.0), label=config.get("label"))

    def __repr__(self) -> str:
        return f"AppliedLoss({self.label!r}, on={self.node!r}, inputs={self.inputs!r})"

    @property
    def node_id(self) -> str:
        """Id of the node (ModularML's spelling), looked up by label in the active context."""
        from modjax.context import ExperimentContext

        return ExperimentContext.get_active().get_node(label=self.node).node_id

