"""SequentialMLP: ModularML's reference multi-layer perceptron."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from modjax.graph.models.activations import get_activation
from modjax.graph.models.base import BaseModel, Shape
from modjax.graph.models.dtypes import cast_tree, compute_cast, dtype_args, float_dtype
from modjax.graph.models.layers import dropout
from modjax.io.registry import register

__all__ = ["SequentialMLP"]



def linear_draws(dims: list[tuple[int, int]]) -> int:
    """Number of uniform draws :func:`torch_linear_init` uses for these layers.

    Example:
        >>> linear_draws([(4, 3), (3, 1)])
        19
    """
    return sum(d_in * d_out + d_out for d_in, d_out in dims)


def torch_linear_from_uniform(u: jax.Array, dims: list[tuple[int, int]]
                              ) -> list[dict[str, jax.Array]]:
    """Dense layers cut from ``linear_draws(dims)`` uniform draws in ``[-1, 1)``.

    Each kernel and bias is scaled to ``[-1/sqrt(d_in), 1/sqrt(d_in))``.

    Example:
        >>> import jax.numpy as jnp
        >>> layer = torch_linear_from_uniform(jnp.ones(5), [(4, 1)])[0]
        >>> layer["kernel"].tolist(), layer["bias"].tolist()
        ([[0.5], [0.5], [0.5], [0.5]], [0.5])
    """
    out, off = [], 0
    for d_in, d_out in dims:
        bound = 1.0 / math.sqrt(max(d_in, 1))
        kernel = u[off: off + d_in * d_out].reshape(d_in, d_out) * bound
        off += d_in * d_out
        bias = u[off: off + d_out] * bound
        off += d_out
        out.append({"kernel": kernel, "bias": bias})
    return out


def torch_linear_init(key: Any, dims: list[tuple[int, int]]) -> list[dict[str, jax.Array]]:
    """Dense layers ``[{"kernel": (d_in, d_out), "bias": (d_out,)}]`` drawn like
    ``torch.nn.Linear`` (what ModularML's torch ``SequentialMLP`` starts from).

    Kernel and bias of a layer are uniform in ``[-1/sqrt(d_in), 1/sqrt(d_in))``. All
    layers come from a single uniform draw that is cut up and scaled: one random-bits
    call per model keeps the compiled init small, which matters when a graph
    initialises hundreds of nodes.

    Example:
        >>> [p["kernel"].shape for p in torch_linear_init(jax.random.key(0), [(4, 3), (3, 1)])]
        [(4, 3), (3, 1)]
    """
    u = jax.random.uniform(key, (linear_draws(dims),), jnp.float32, -1.0, 1.0)
    return torch_linear_from_uniform(u, dims)


@register("SequentialMLP")
class SequentialMLP(BaseModel):
    """``n_layers`` Dense layers on the flattened input, reshaped to ``output_shape``.

    Hidden layers have ``hidden_dim`` units and are followed by ``activation`` (and
    dropout at ``dropout`` rate when training); the last layer is linear and has
    ``prod(output_shape)`` units. With ``n_layers=1`` it is a single linear map.

    Args:
        output_shape: per-sample output shape; ``None`` lets the graph infer it (a tail
            node takes its target shape).
        n_layers: number of Dense layers (>= 1).
        hidden_dim: width of the hidden layers.
        activation: activation name (``"relu"``, ``"gelu"``, ``"tanh"``, ...).
        dropout: dropout rate after each hidden activation (uses the apply ``key``).
        input_shape: optional declared per-sample input shape.
        dtype: compute dtype (e.g. ``"bfloat16"``); None: the promoted input dtype.
        param_dtype: dtype the parameters are stored in (default float32).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mlp = SequentialMLP(output_shape=(1, 2), n_layers=2, hidden_dim=8)
        >>> params, state = mlp.init(jax.random.key(0), (1, 10))
        >>> y, _ = mlp.apply(params, state, jnp.ones((5, 1, 10)))
        >>> y.shape
        (5, 1, 2)
    """

    def __init__(self, output_shape: Any = None, n_layers: int = 2, hidden_dim: int = 32,
                 activation: str = "relu", dropout: float = 0.0, *,
                 input_shape: Any = None, dtype: Any = None, param_dtype: Any = None) -> None:
        self.dtype = float_dtype(dtype, what="SequentialMLP dtype")
        self.param_dtype = float_dtype(param_dtype, what="SequentialMLP param_dtype")
        if int(n_layers) < 1:
            raise ValueError(f"SequentialMLP needs n_layers >= 1, got {n_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"SequentialMLP dropout must be in [0, 1), got {dropout}")
        get_activation(activation)
        super().__init__(input_shape=input_shape, output_shape=output_shape,
                         n_layers=int(n_layers), hidden_dim=int(hidden_dim),
                         activation=activation, dropout=float(dropout),
                         **dtype_args(self.dtype, self.param_dtype))
        self.n_layers = int(n_layers)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.dropout = float(dropout)

    def _widths(self, input_shape: Shape) -> list[tuple[int, int]]:
        out = self._flat(self._require_output_shape())
        dims = [self._flat(input_shape)] + [self.hidden_dim] * (self.n_layers - 1) + [out]
        return list(zip(dims[:-1], dims[1:]))

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        """``{"layer_i": {"kernel", "bias"}}``, initialised like ``torch.nn.Linear``."""
        layers = torch_linear_init(key, self._widths(tuple(input_shape)))
        return cast_tree({f"layer_{i}": p for i, p in enumerate(layers)}, self.param_dtype), {}

    def init_draws(self, input_shape: Shape) -> int:
        return linear_draws(self._widths(tuple(input_shape)))

    def init_from_draws(self, u: jax.Array, input_shape: Shape) -> tuple[dict, dict]:
        layers = torch_linear_from_uniform(u, self._widths(tuple(input_shape)))
        return cast_tree({f"layer_{i}": p for i, p in enumerate(layers)}, self.param_dtype), {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        act = get_activation(self.activation)
        x, params = compute_cast(x, params, self.dtype)
        n = len(params)
        h = x.reshape(x.shape[0], -1)
        use_dropout = train and self.dropout > 0.0
        keys = None
        if use_dropout:
            if key is None:
                raise ValueError(
                    f"SequentialMLP(dropout={self.dropout}) needs a key when train=True")
            keys = jax.random.split(key, max(n - 1, 1))
        for i in range(n):
            layer = params[f"layer_{i}"]
            h = h @ layer["kernel"] + layer["bias"]
            if i < n - 1:
                h = act(h)
                if use_dropout:
                    h = dropout(h, self.dropout, keys[i])
        out_shape = self._output_shape or (h.shape[-1],)
        return h.reshape((x.shape[0], *out_shape)), state
