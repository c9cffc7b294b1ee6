"""Small built-in layers: Linear, Conv1D, Dropout, Identity."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.models.activations import get_activation
from modjax.graph.models.base import BaseModel, Shape, ShapePreservingModel
from modjax.graph.models.dtypes import cast_tree, compute_cast, dtype_args, float_dtype
from modjax.io.registry import register

__all__ = ["Linear", "Conv1D", "Dropout", "Identity", "dropout"]

_kernel_init = jax.nn.initializers.lecun_normal()


def dropout(x: jax.Array, rate: float, key: Any) -> jax.Array:
    """Inverted dropout: zero with probability ``rate``, scale the rest by 1/(1-rate).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = dropout(jnp.ones((1000,)), 0.5, jax.random.key(0))
        >>> sorted(set(y.tolist()))
        [0.0, 2.0]
    """
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


@register("Linear")
class Linear(BaseModel):
    """Dense map on the last axis: ``(..., d_in) -> (..., features)``.

    Args:
        features: output width; ``None`` takes the last axis of the requested output
            shape (a tail node's target shape).
        use_bias: add a bias.
        input_shape: optional declared per-sample input shape.
        dtype: compute dtype (e.g. ``"bfloat16"``); None: the promoted input dtype.
        param_dtype: dtype the parameters are stored in (default float32).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> lin = Linear(3)
        >>> lin.build((1, 4))
        >>> params, state = lin.init(jax.random.key(0), (1, 4))
        >>> lin.apply(params, state, jnp.ones((2, 1, 4)))[0].shape
        (2, 1, 3)
    """

    def __init__(self, features: int | None = None, use_bias: bool = True, *,
                 input_shape: Any = None, dtype: Any = None, param_dtype: Any = None) -> None:
        self.dtype = float_dtype(dtype, what="Linear dtype")
        self.param_dtype = float_dtype(param_dtype, what="Linear param_dtype")
        super().__init__(input_shape=input_shape, features=features, use_bias=bool(use_bias),
                         **dtype_args(self.dtype, self.param_dtype))
        self.features = None if features is None else int(features)
        self.use_bias = bool(use_bias)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.pop("output_shape", None)
        return cfg

    def _resolve(self, input_shape: Shape) -> None:
        if not input_shape:
            raise ShapeMismatchError("Linear needs inputs with at least one per-sample axis")
        feats = self.features
        if feats is None:
            req = self._output_shape
            if req is None:
                raise ValueError("Linear(features=None) needs features=... or a target shape")
            if tuple(req[:-1]) != tuple(input_shape[:-1]):
                raise ShapeMismatchError(
                    f"Linear maps the last axis only: cannot turn input {input_shape} into "
                    f"requested output {req}; give features=... or use SequentialMLP")
            feats = req[-1]
        self._features = feats
        self._output_shape = (*input_shape[:-1], feats)

    def _width(self) -> int:
        feats = getattr(self, "_features", None) or self.features
        if feats is None:
            raise ValueError("Linear(features=None) is not built: its width is unknown")
        return feats

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        from modjax.graph.models.mlp import linear_draws

        u = jax.random.uniform(key, (linear_draws(self._dims(input_shape)),), jnp.float32,
                               -1.0, 1.0)
        return self.init_from_draws(u, input_shape)

    def _dims(self, input_shape: Shape) -> list[tuple[int, int]]:
        return [(int(input_shape[-1]), self._width())]

    def init_draws(self, input_shape: Shape) -> int:
        from modjax.graph.models.mlp import linear_draws

        return linear_draws(self._dims(input_shape))

    def init_from_draws(self, u: jax.Array, input_shape: Shape) -> tuple[dict, dict]:
        from modjax.graph.models.mlp import torch_linear_from_uniform

        params = torch_linear_from_uniform(u, self._dims(input_shape))[0]
        if not self.use_bias:
            del params["bias"]
        return cast_tree(params, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        x, params = compute_cast(x, params, self.dtype)
        y = x @ params["kernel"]
        if "bias" in params:
            y = y + params["bias"]
        return y, state


@register("Conv1D")
class Conv1D(BaseModel):
    """1-D convolution over channels-first samples ``(channels, length)``.

    The data layout stacks feature keys on axis 1, so a FeatureSet with one 10-point
    curve per sample gives ``(1, 10)``: one channel of length 10.

    Args:
        features: output channels; ``None`` takes axis 0 of the requested output shape.
        kernel_size: window length.
        strides: step between windows.
        padding: ``"SAME"``, ``"VALID"`` or an int (symmetric zero padding).
        use_bias: add a per-channel bias.
        activation: activation name applied to the output (``None``: linear).
        input_shape: optional declared per-sample input shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> conv = Conv1D(4, kernel_size=3)
        >>> conv.build((1, 10))
        >>> conv.output_shape
        (4, 10)
        >>> p, s = conv.init(jax.random.key(0), (1, 10))
        >>> conv.apply(p, s, jnp.ones((2, 1, 10)))[0].shape
        (2, 4, 10)
    """

    def __init__(self, features: int | None = None, kernel_size: int = 3, strides: int = 1,
                 padding: str | int = "SAME", use_bias: bool = True,
                 activation: str | None = None, *, input_shape: Any = None, dtype: Any = None,
                 param_dtype: Any = None) -> None:
        self.dtype = float_dtype(dtype, what="Conv1D dtype")
        self.param_dtype = float_dtype(param_dtype, what="Conv1D param_dtype")
        if isinstance(padding, str) and padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"Conv1D padding must be 'SAME', 'VALID' or an int, got {padding!r}")
        get_activation(activation)
        super().__init__(input_shape=input_shape, features=features,
                         kernel_size=int(kernel_size), strides=int(strides),
                         padding=padding.upper() if isinstance(padding, str) else int(padding),
                         use_bias=bool(use_bias), activation=activation,
                         **dtype_args(self.dtype, self.param_dtype))
        self.features = None if features is None else int(features)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding.upper() if isinstance(padding, str) else int(padding)
        self.use_bias = bool(use_bias)
        self.activation = activation

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.pop("output_shape", None)
        return cfg

    def _pad(self) -> Any:
        return self.padding if isinstance(self.padding, str) else [(self.padding, self.padding)]

    def _resolve(self, input_shape: Shape) -> None:
        if len(input_shape) != 2:
            raise ShapeMismatchError(
                f"Conv1D takes per-sample (channels, length) inputs, got shape {input_shape}")
        feats = self.features
        if feats is None:
            if self._output_shape is None:
                raise ValueError("Conv1D(features=None) needs features=... or a target shape")
            feats = self._output_shape[0]
        self._features = feats
        out = jax.eval_shape(
            lambda x, w: jax.lax.conv_general_dilated(
                x, w, (self.strides,), self._pad(), dimension_numbers=("NCH", "OIH", "NCH")),
            jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
            jax.ShapeDtypeStruct((feats, input_shape[0], self.kernel_size), jnp.float32))
        self._output_shape = tuple(out.shape[1:])

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        feats = getattr(self, "_features", None) or self.features
        if feats is None:
            raise ValueError("Conv1D(features=None) is not built: its width is unknown")
        init = jax.nn.initializers.lecun_normal(in_axis=(1, 2), out_axis=0)
        params = {"kernel": init(key, (feats, int(input_shape[0]), self.kernel_size),
                                 jnp.float32)}
        if self.use_bias:
            params["bias"] = jnp.zeros((feats,), jnp.float32)
        return cast_tree(params, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        x, params = compute_cast(x, params, self.dtype)
        x = x.astype(jnp.result_type(x, params["kernel"]))  # conv needs one dtype
        y = jax.lax.conv_general_dilated(
            x, params["kernel"], (self.strides,), self._pad(),
            dimension_numbers=("NCH", "OIH", "NCH"))
        if "bias" in params:
            y = y + params["bias"][:, None]
        return get_activation(self.activation)(y), state


@register("Dropout")
class Dropout(ShapePreservingModel):
    """Inverted dropout at ``rate`` when ``train=True`` (draws from the apply key).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> d = Dropout(0.5)
        >>> y, _ = d.apply({}, {}, jnp.ones((4, 3)), key=jax.random.key(1), train=True)
        >>> bool(((y == 0) | (y == 2)).all()), d.apply({}, {}, jnp.ones((1,)))[0].tolist()
        (True, [1.0])
    """

    def __init__(self, rate: float = 0.5, *, input_shape: Any = None) -> None:
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        super().__init__(input_shape=input_shape, rate=float(rate))
        self.rate = float(rate)

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        return {}, {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        if not train or self.rate == 0.0:
            return x, state
        if key is None:
            raise ValueError(f"Dropout(rate={self.rate}) needs a key when train=True")
        return dropout(x, self.rate, key), state


@register("Identity")
class Identity(ShapePreservingModel):
    """Returns its input unchanged (no parameters).

    Example:
        >>> import jax.numpy as jnp
        >>> Identity().apply({}, {}, jnp.arange(3.0))[0].tolist()
        [0.0, 1.0, 2.0]
    """

    def __init__(self, *, input_shape: Any = None) -> None:
        super().__init__(input_shape=input_shape)

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        return {}, {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        return x, state
