"""SequentialCNN: a 1-D convolutional stack with ModularML's constructor arguments."""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.models.activations import get_activation
from modjax.graph.models.base import BaseModel, Shape, as_shape
from modjax.graph.models.layers import dropout as apply_dropout
from modjax.graph.models.mlp import torch_linear_from_uniform
from modjax.io.registry import register

__all__ = ["SequentialCNN"]


@register("SequentialCNN")
class SequentialCNN(BaseModel):
    """``n_layers`` Conv1d blocks (conv, activation, dropout, max-pool), then a linear
    projection of the flattened result to ``output_shape``.

    Samples are channels-first ``(channels, length)``; a per-sample shape ``(length,)``
    is read as one channel. Every block has ``hidden_dim`` output channels. A block
    max-pools (window and step ``pooling``) while the running length, divided by
    ``pooling`` once per pooled block, is at least ``pooling``. Kernels and biases start
    uniform in ``+-1/sqrt(fan_in)``, the way ``torch.nn.Conv1d``/``Linear`` start.

    Args:
        input_shape: per-sample ``(channels, length)``; inferred by the graph if None.
        output_shape: per-sample output shape. None with ``flatten_output`` gives
            ``(1, hidden_dim)`` (with a warning), unless the graph supplies a target
            shape.
        n_layers: number of conv blocks (>= 1).
        hidden_dim: output channels of every block.
        kernel_size: convolution window.
        padding: symmetric zero padding of each convolution.
        stride: convolution step.
        activation: activation name (``"relu"``, ``"gelu"``, ...).
        dropout: dropout rate after each activation when training (needs a key).
        pooling: max-pool window (1: no pooling).
        flatten_output: end with the linear projection; with False the output is the
            last block's ``(hidden_dim, length)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cnn = SequentialCNN(input_shape=(1, 10), output_shape=(1, 1), pooling=2)
        >>> cnn.is_built, cnn.output_shape
        (True, (1, 1))
        >>> p, s = cnn.init(jax.random.key(0), (1, 10))
        >>> [p[k]["kernel"].shape for k in p]
        [(16, 1, 3), (16, 16, 3), (32, 1)]
        >>> cnn.apply(p, s, jnp.ones((4, 1, 10)))[0].shape
        (4, 1, 1)
    """

    def __init__(self, *, input_shape: Any = None, output_shape: Any = None,
                 n_layers: int = 2, hidden_dim: int = 16, kernel_size: int = 3,
                 padding: int = 1, stride: int = 1, activation: str = "relu",
                 dropout: float = 0.0, pooling: int = 1, flatten_output: bool = True) -> None:
        for name, value, low in (("n_layers", n_layers, 1), ("hidden_dim", hidden_dim, 1),
                                 ("kernel_size", kernel_size, 1), ("padding", padding, 0),
                                 ("stride", stride, 1), ("pooling", pooling, 1)):
            if int(value) < low:
                raise ValueError(f"SequentialCNN needs {name} >= {low}, got {value}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"SequentialCNN dropout must be in [0, 1), got {dropout}")
        get_activation(activation)
        super().__init__(input_shape=self._channels_first(input_shape), output_shape=output_shape,
                         n_layers=int(n_layers), hidden_dim=int(hidden_dim),
                         kernel_size=int(kernel_size), padding=int(padding), stride=int(stride),
                         activation=activation, dropout=float(dropout), pooling=int(pooling),
                         flatten_output=bool(flatten_output))
        self.n_layers, self.hidden_dim = int(n_layers), int(hidden_dim)
        self.kernel_size, self.padding, self.stride = int(kernel_size), int(padding), int(stride)
        self.activation, self.dropout = activation, float(dropout)
        self.pooling, self.flatten_output = int(pooling), bool(flatten_output)
        if self._input_shape is not None and (self._output_shape is not None
                                              or not self.flatten_output):
            self.build(self._input_shape, self._output_shape)

    @staticmethod
    def _channels_first(shape: Any) -> Shape | None:
        shape = as_shape(shape, what="SequentialCNN input_shape")
        if shape is None or len(shape) == 2:
            return shape
        if len(shape) == 1:
            return (1, shape[0])
        raise ShapeMismatchError(
            f"SequentialCNN takes per-sample (channels, length) inputs, got shape {shape}")

    def build(self, input_shape: Any, output_shape: Any = None) -> None:
        """Resolve shapes (a 1-D per-sample shape is read as one channel)."""
        super().build(self._channels_first(input_shape), output_shape)

    # ------------------------------------------------------------ shapes
    def _blocks(self, input_shape: Shape) -> tuple[list[tuple[int, int, bool]], int]:
        """Per block ``(in_channels, conv_out_length, pools)``, and the final length."""
        channels, length = self._channels_first(input_shape)
        tracked, out = length, []
        for i in range(self.n_layers):
            conv_len = (length + 2 * self.padding - self.kernel_size) // self.stride + 1
            if conv_len < 1:
                raise ShapeMismatchError(
                    f"SequentialCNN block {i}: a length-{length} input is shorter than "
                    f"kernel_size={self.kernel_size} with padding={self.padding}")
            pools = self.pooling > 1 and tracked >= self.pooling
            if pools:
                tracked //= self.pooling
                if conv_len < self.pooling:
                    raise ShapeMismatchError(
                        f"SequentialCNN block {i}: cannot max-pool a length-{conv_len} "
                        f"output with pooling={self.pooling}")
            out.append((channels, conv_len, pools))
            length = conv_len // self.pooling if pools else conv_len
            channels = self.hidden_dim
        return out, length

    def _resolve(self, input_shape: Shape) -> None:
        _, length = self._blocks(input_shape)
        conv_out = (self.hidden_dim, length)
        if not self.flatten_output:
            if self._output_shape is not None and self._output_shape != conv_out:
                raise ShapeMismatchError(
                    f"SequentialCNN(flatten_output=False) outputs {conv_out}, but output_shape "
                    f"{self._output_shape} was requested")
            self._output_shape = conv_out
        elif self._output_shape is None:
            warnings.warn(f"SequentialCNN got no output_shape; using (1, {self.hidden_dim})",
                          UserWarning, stacklevel=3)
            self._output_shape = (1, self.hidden_dim)

    def _dims(self, input_shape: Shape) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
        blocks, length = self._blocks(input_shape)
        convs = [(c * self.kernel_size, self.hidden_dim) for c, _, _ in blocks]
        fc = None
        if self.flatten_output:
            fc = (self.hidden_dim * length, math.prod(self._require_output_shape()))
        return convs, fc

    # ------------------------------------------------------------ protocol
    def init_draws(self, input_shape: Shape) -> int:
        convs, fc = self._dims(tuple(input_shape))
        return sum(a * b + b for a, b in convs + ([fc] if fc else []))

    def init_from_draws(self, u: jax.Array, input_shape: Shape) -> tuple[dict, dict]:
        convs, fc = self._dims(tuple(input_shape))
        layers = torch_linear_from_uniform(u, convs + ([fc] if fc else []))
        params: dict[str, Any] = {}
        for i, layer in enumerate(layers[: len(convs)]):
            in_ch = convs[i][0] // self.kernel_size
            # (in*k, out) -> torch's (out, in, k) layout
            kernel = layer["kernel"].T.reshape(self.hidden_dim, in_ch, self.kernel_size)
            params[f"conv_{i}"] = {"kernel": kernel, "bias": layer["bias"]}
        if fc:
            params["fc"] = layers[-1]
        return params, {}

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        """Conv kernels ``(out, in, kernel)`` and the projection, torch-style uniform."""
        n = self.init_draws(input_shape)
        return self.init_from_draws(jax.random.uniform(key, (n,), jnp.float32, -1.0, 1.0),
                                    input_shape)

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        if x.ndim == 2:
            x = x[:, None, :]
        blocks, _ = self._blocks(tuple(x.shape[1:]))
        act = get_activation(self.activation)
        use_dropout = train and self.dropout > 0.0
        if use_dropout and key is None:
            raise ValueError(f"SequentialCNN(dropout={self.dropout}) needs a key when train=True")
        keys = jax.random.split(key, self.n_layers) if use_dropout else None
        h = x
        for i, (_, _, pools) in enumerate(blocks):
            p = params[f"conv_{i}"]
            h = jax.lax.conv_general_dilated(
                h, p["kernel"], (self.stride,), [(self.padding, self.padding)],
                dimension_numbers=("NCH", "OIH", "NCH")) + p["bias"][:, None]
            h = act(h)
            if use_dropout:
                h = apply_dropout(h, self.dropout, keys[i])
            if pools:
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, self.pooling),
                                          (1, 1, self.pooling), "VALID")
        if not self.flatten_output:
            return h, state
        fc = params["fc"]
        y = h.reshape(h.shape[0], -1) @ fc["kernel"] + fc["bias"]
        return y.reshape((x.shape[0], *self._require_output_shape())), state
