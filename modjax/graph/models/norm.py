"""Normalisation layers: LayerNorm (stateless) and BatchNorm (running stats in state)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.models.base import Shape, ShapePreservingModel
from modjax.graph.models.dtypes import compute_cast, dtype_args, float_dtype
from modjax.io.registry import register

__all__ = ["LayerNorm", "BatchNorm"]


def _axes(axis: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return (int(axis),) if isinstance(axis, int) else tuple(int(a) for a in axis)


def _per_sample_axes(axes: tuple[int, ...], input_shape: Shape, who: str) -> tuple[int, ...]:
    """Normalise per-sample axes (no batch axis) to non-negative positions."""
    nd = len(input_shape)
    out = []
    for a in axes:
        if not -nd <= a < nd:
            raise ShapeMismatchError(f"{who} axis {a} is out of range for per-sample shape "
                                     f"{input_shape}")
        out.append(a % nd)
    return tuple(sorted(set(out)))


class _Norm(ShapePreservingModel):
    """What LayerNorm and BatchNorm share: per-sample axes, optional affine params."""

    def _set_dtypes(self, who: str, dtype: Any, param_dtype: Any) -> None:
        self.dtype = float_dtype(dtype, what=f"{who} dtype")
        self.param_dtype = float_dtype(param_dtype, what=f"{who} param_dtype")

    def _set_common(self, axes: tuple[int, ...], epsilon: float, use_scale: bool,
                    use_bias: bool) -> None:
        self.axes = axes
        self.epsilon = float(epsilon)
        self.use_scale = bool(use_scale)
        self.use_bias = bool(use_bias)

    def _resolve(self, input_shape: Shape) -> None:
        _per_sample_axes(self.axes, input_shape, type(self).__name__)
        super()._resolve(input_shape)

    def _affine(self, input_shape: Shape) -> tuple[dict, tuple[int, ...]]:
        """Initial scale/bias params and the normalised axes' shape."""
        axes = _per_sample_axes(self.axes, tuple(input_shape), type(self).__name__)
        fshape = tuple(input_shape[a] for a in axes)
        params = {}
        if self.use_scale:
            params["scale"] = jnp.ones(fshape, self.param_dtype or jnp.float32)
        if self.use_bias:
            params["bias"] = jnp.zeros(fshape, self.param_dtype or jnp.float32)
        return params, fshape

    @staticmethod
    def _scale_shift(y: jax.Array, params: dict, bshape: list[int]) -> jax.Array:
        if "scale" in params:
            y = y * params["scale"].reshape(bshape)
        if "bias" in params:
            y = y + params["bias"].reshape(bshape)
        return y


@register("LayerNorm")
class LayerNorm(_Norm):
    """Normalise each sample over ``axis`` (per-sample axes), then scale and shift.

    Args:
        axis: per-sample axis or axes normalised over (``-1``: the last).
        epsilon: added to the variance.
        use_scale: learn a scale (init 1).
        use_bias: learn a bias (init 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> ln = LayerNorm()
        >>> p, s = ln.init(jax.random.key(0), (4,))
        >>> y, _ = ln.apply(p, s, jnp.array([[1.0, 2.0, 3.0, 4.0]]))
        >>> round(float(y.mean()), 5), round(float(y.std()), 3)
        (0.0, 1.0)
    """

    def __init__(self, axis: int | tuple[int, ...] = -1, epsilon: float = 1e-5,
                 use_scale: bool = True, use_bias: bool = True, *,
                 input_shape: Any = None, dtype: Any = None, param_dtype: Any = None) -> None:
        axes = _axes(axis)
        self._set_dtypes("LayerNorm", dtype, param_dtype)
        super().__init__(input_shape=input_shape,
                         axis=list(axes) if len(axes) > 1 else axes[0],
                         epsilon=float(epsilon), use_scale=bool(use_scale),
                         use_bias=bool(use_bias), **dtype_args(self.dtype, self.param_dtype))
        self._set_common(axes, epsilon, use_scale, use_bias)

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        return self._affine(input_shape)[0], {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        x, params = compute_cast(x, params, self.dtype)
        sample_shape = x.shape[1:]
        axes = _per_sample_axes(self.axes, sample_shape, "LayerNorm")
        red = tuple(a + 1 for a in axes)
        mean = x.mean(axis=red, keepdims=True)
        var = jnp.square(x - mean).mean(axis=red, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        bshape = [1] * x.ndim
        for a in axes:
            bshape[a + 1] = sample_shape[a]
        return self._scale_shift(y, params, bshape), state


@register("BatchNorm")
class BatchNorm(_Norm):
    """Batch normalisation with running statistics in ``variables["state"]``.

    Training (``train=True``) normalises with the batch statistics and returns updated
    running averages ``new = momentum * old + (1 - momentum) * batch``; evaluation uses
    the running averages and leaves the state unchanged.

    Args:
        axis: per-sample feature axis or axes that keep their own statistics; all other
            axes (and the batch axis) are reduced over.
        momentum: running-average decay.
        epsilon: added to the variance.
        use_scale: learn a scale (init 1).
        use_bias: learn a bias (init 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> bn = BatchNorm(momentum=0.5)
        >>> p, s = bn.init(jax.random.key(0), (2,))
        >>> y, s2 = bn.apply(p, s, jnp.array([[0.0, 2.0], [2.0, 4.0]]), train=True)
        >>> s2["mean"].tolist(), y[:, 0].round(3).tolist()
        ([0.5, 1.5], [-1.0, 1.0])
    """

    def __init__(self, axis: int | tuple[int, ...] = -1, momentum: float = 0.99,
                 epsilon: float = 1e-5, use_scale: bool = True, use_bias: bool = True, *,
                 input_shape: Any = None, dtype: Any = None, param_dtype: Any = None) -> None:
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
        axes = _axes(axis)
        self._set_dtypes("BatchNorm", dtype, param_dtype)
        super().__init__(input_shape=input_shape,
                         axis=list(axes) if len(axes) > 1 else axes[0],
                         momentum=float(momentum), epsilon=float(epsilon),
                         use_scale=bool(use_scale), use_bias=bool(use_bias),
                         **dtype_args(self.dtype, self.param_dtype))
        self._set_common(axes, epsilon, use_scale, use_bias)
        self.momentum = float(momentum)

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        params, fshape = self._affine(input_shape)
        sd = self.param_dtype or jnp.float32
        state = {"mean": jnp.zeros(fshape, sd), "var": jnp.ones(fshape, sd)}
        return params, state

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        x, params = compute_cast(x, params, self.dtype)
        sample_shape = x.shape[1:]
        axes = _per_sample_axes(self.axes, sample_shape, "BatchNorm")
        red = (0,) + tuple(a + 1 for a in range(len(sample_shape)) if a not in axes)
        bshape = [1] * x.ndim
        for a in axes:
            bshape[a + 1] = sample_shape[a]
        if train:
            mean = x.mean(axis=red)
            var = jnp.square(x - mean.reshape(bshape)).mean(axis=red)
            m = self.momentum
            # running statistics keep their stored dtype whatever the compute dtype
            new_state = {"mean": (m * state["mean"] + (1.0 - m) * mean).astype(state["mean"].dtype),
                         "var": (m * state["var"] + (1.0 - m) * var).astype(state["var"].dtype)}
        else:
            mean, var, new_state = state["mean"], state["var"], state
        y = (x - mean.reshape(bshape)) * jax.lax.rsqrt(var.reshape(bshape) + self.epsilon)
        return self._scale_shift(y, params, bshape), new_state
