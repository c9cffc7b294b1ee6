"""Routers for ``gate``/``switch`` and halt conditions for ``loop(...).while_/until``.

* Gate routers return weights ``(..., n_experts)`` (soft mixture, differentiable).
* Switch selectors return one branch index (a scalar int): the whole batch takes
  that branch, so ``lax.switch`` runs only it.
* Halt conditions return one signal per sample: positive means "stop iterating".

Every router/halt that receives several inputs (``using`` refs) sums them first, so
it sees the stream and the references without changing widths (as in goDl).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.flow.base import FlowModule, as_inputs, sum_inputs
from modjax.io.registry import register

__all__ = [
    "SoftmaxRouter",
    "SigmoidRouter",
    "ArgmaxSelector",
    "FixedSelector",
    "LearnedHalt",
    "ThresholdHalt",
]

_kernel_init = jax.nn.initializers.lecun_normal()


class _Projection(FlowModule):
    """Learnable linear projection of the (summed) inputs' last axis to ``width``."""

    def __init__(self, input_dim: int | None, width: int, **ctor: Any) -> None:
        super().__init__(input_dim=None if input_dim is None else int(input_dim), **ctor)
        self.input_dim = None if input_dim is None else int(input_dim)
        self._width = int(width)

    def _last_dim(self, input_shape: Any) -> int:
        shapes = as_inputs(input_shape) if input_shape and isinstance(
            input_shape[0], (tuple, list)) else (tuple(input_shape),)
        dims = {tuple(s)[-1] if len(s) else None for s in shapes}
        if len(dims) != 1 or None in dims:
            raise ShapeMismatchError(
                f"{type(self).__name__} sums its inputs, which must share the last axis; got "
                f"shapes {[tuple(s) for s in shapes]}")
        d = dims.pop()
        if self.input_dim is not None and d != self.input_dim:
            raise ShapeMismatchError(
                f"{type(self).__name__} was declared with input_dim={self.input_dim} but "
                f"receives inputs whose last axis is {d}")
        return int(d)

    def init(self, key: Any, input_shape: Any) -> tuple[dict, dict]:
        d = self._last_dim(input_shape)
        return {"kernel": _kernel_init(key, (d, self._width), jnp.float32),
                "bias": jnp.zeros((self._width,), jnp.float32)}, {}

    def _project(self, params: dict, x: Any) -> jax.Array:
        return sum_inputs(x) @ params["kernel"] + params["bias"]


@register("SoftmaxRouter")
class SoftmaxRouter(_Projection):
    """Gate router: softmax-normalised weights over ``num_experts`` (they sum to 1).

    Args:
        input_dim: width of the last axis it reads (``None``: inferred at build).
        num_experts: number of experts (must match the gate's expert count).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> r = SoftmaxRouter(4, 3)
        >>> p, s = r.init(jax.random.key(0), (4,))
        >>> w, _ = r.apply(p, s, jnp.ones((2, 4)))
        >>> w.shape, [round(float(v), 5) for v in w.sum(-1)]
        ((2, 3), [1.0, 1.0])
    """

    def __init__(self, input_dim: int | None, num_experts: int) -> None:
        super().__init__(input_dim, num_experts, num_experts=int(num_experts))
        self.num_experts = int(num_experts)

    def apply(self, params: dict, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        return jax.nn.softmax(self._project(params, x), axis=-1), state


@register("SigmoidRouter")
class SigmoidRouter(_Projection):
    """Gate router: independent sigmoid weights in (0, 1) per expert.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> r = SigmoidRouter(4, 2)
        >>> p, s = r.init(jax.random.key(0), (4,))
        >>> w, _ = r.apply(p, s, jnp.ones((3, 4)))
        >>> w.shape, bool(((w > 0) & (w < 1)).all())
        ((3, 2), True)
    """

    def __init__(self, input_dim: int | None, num_experts: int) -> None:
        super().__init__(input_dim, num_experts, num_experts=int(num_experts))
        self.num_experts = int(num_experts)

    def apply(self, params: dict, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        return jax.nn.sigmoid(self._project(params, x)), state


@register("ArgmaxSelector")
class ArgmaxSelector(_Projection):
    """Switch selector: the branch with the highest (batch-averaged) logit.

    The choice is not differentiable; the projection is trainable by other means
    (e.g. policy gradients) and its parameters are part of the graph.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> sel = ArgmaxSelector(4, 3)
        >>> p, s = sel.init(jax.random.key(0), (4,))
        >>> i, _ = sel.apply(p, s, jnp.ones((2, 4)))
        >>> i.shape, i.dtype.name
        ((), 'int32')
    """

    def __init__(self, input_dim: int | None, num_branches: int) -> None:
        super().__init__(input_dim, num_branches, num_branches=int(num_branches))
        self.num_branches = int(num_branches)

    def apply(self, params: dict, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        logits = self._project(params, x)
        logits = logits.reshape(-1, self.num_branches).mean(axis=0)
        return jnp.argmax(logits).astype(jnp.int32), state


@register("FixedSelector")
class FixedSelector(FlowModule):
    """Switch selector that always picks branch ``index`` (tests, ablations).

    Example:
        >>> import jax.numpy as jnp
        >>> int(FixedSelector(1).apply({}, {}, jnp.ones((2, 4)))[0])
        1
    """

    def __init__(self, index: int) -> None:
        if int(index) < 0:
            raise ValueError(f"FixedSelector index must be >= 0, got {index}")
        super().__init__(index=int(index))
        self.index = int(index)

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        return jnp.asarray(self.index, jnp.int32), state


@register("LearnedHalt")
class LearnedHalt(_Projection):
    """Halt condition with a learnable linear probe (Adaptive Computation Time).

    Projects each sample's state to a scalar; positive means halt.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> h = LearnedHalt(4)
        >>> p, s = h.init(jax.random.key(0), (4,))
        >>> h.apply(p, s, jnp.ones((3, 4)))[0].shape
        (3,)
    """

    def __init__(self, input_dim: int | None) -> None:
        super().__init__(input_dim, 1)

    def apply(self, params: dict, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        score = self._project(params, x)[..., 0]
        return score.reshape(score.shape[0], -1).mean(axis=1), state


@register("ThresholdHalt")
class ThresholdHalt(FlowModule):
    """Halt when a sample's largest element exceeds ``threshold``.

    Returns ``max(x) - threshold`` per sample (positive = halt).

    Example:
        >>> import jax.numpy as jnp
        >>> ThresholdHalt(2.0).apply({}, {}, jnp.array([[1.0, 3.0], [0.0, 1.0]]))[0].tolist()
        [1.0, -1.0]
    """

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold=float(threshold))
        self.threshold = float(threshold)

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, Any]:
        x = sum_inputs(x)
        return x.reshape(x.shape[0], -1).max(axis=1) - self.threshold, state
