"""RidgeRegression: a linear model with a pure closed-form ``fit``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ShapeMismatchError
from modjax.graph.models.base import BaseModel, Shape
from modjax.io.registry import register

__all__ = ["RidgeRegression"]


@register("RidgeRegression")
class RidgeRegression(BaseModel):
    """L2-regularised least squares on the flattened input, solved in closed form.

    ``apply`` is ``x @ kernel + bias`` reshaped to ``output_shape``. ``fit`` solves
    ``(Xc^T W Xc + alpha I) K = Xc^T W Yc`` for the (optionally weighted, centred)
    data and returns new params: it is pure and jittable, so ``FitPhase`` can run it on
    the device. The intercept is not penalised.

    Args:
        alpha: L2 penalty (>= 0).
        fit_intercept: learn a bias from the data means.
        output_shape: per-sample output shape (``None``: the tail's target shape).
        input_shape: optional declared per-sample input shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> r = RidgeRegression(alpha=0.0, output_shape=(1,))
        >>> x = jnp.array([[0.0], [1.0], [2.0]]); y = 3 * x + 1
        >>> p, s = r.init(jax.random.key(0), (1,))
        >>> p, s = r.fit(p, s, x, y)
        >>> r.apply(p, s, jnp.array([[4.0]]))[0].round(4).tolist()
        [[13.0]]
    """

    _key_free_init = True  # constant initial values

    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True, output_shape: Any = None,
                 *, input_shape: Any = None) -> None:
        if float(alpha) < 0:
            raise ValueError(f"RidgeRegression alpha must be >= 0, got {alpha}")
        super().__init__(input_shape=input_shape, output_shape=output_shape,
                         alpha=float(alpha), fit_intercept=bool(fit_intercept))
        self.alpha = float(alpha)
        self.fit_intercept = bool(fit_intercept)

    def init(self, key: Any, input_shape: Shape) -> tuple[dict, dict]:
        d_in, d_out = self._flat(tuple(input_shape)), self._flat(self._require_output_shape())
        return {"kernel": jnp.zeros((d_in, d_out), jnp.float32),
                "bias": jnp.zeros((d_out,), jnp.float32)}, {}

    def apply(self, params: dict, state: dict, x: jax.Array, *, key: Any = None,
              train: bool = False) -> tuple[jax.Array, dict]:
        y = x.reshape(x.shape[0], -1) @ params["kernel"] + params["bias"]
        out_shape = self._output_shape or (y.shape[-1],)
        return y.reshape((x.shape[0], *out_shape)), state

    def fit(self, params: dict, state: dict, x: jax.Array, y: jax.Array, *,
            weights: jax.Array | None = None) -> tuple[dict, dict]:
        """Closed-form ridge fit.

        Args:
            params: current params (only their shapes matter).
            state: current state (returned unchanged).
            x: ``(n, *input_shape)`` inputs.
            y: ``(n, *output_shape)`` targets.
            weights: optional ``(n,)`` sample weights (0 drops padded rows).

        Returns:
            ``(params, state)`` with the fitted kernel and bias.
        """
        n = x.shape[0]
        X = x.reshape(n, -1).astype(jnp.float32)
        Y = y.reshape(n, -1).astype(jnp.float32)
        if Y.shape[1] != params["kernel"].shape[1] or X.shape[1] != params["kernel"].shape[0]:
            raise ShapeMismatchError(
                f"RidgeRegression.fit: x {x.shape[1:]} / y {y.shape[1:]} do not match the "
                f"model's kernel {params['kernel'].shape} (flattened input, output)")
        w = jnp.ones((n,), jnp.float32) if weights is None else weights.reshape(n).astype(
            jnp.float32)
        total = jnp.maximum(w.sum(), 1e-12)
        if self.fit_intercept:
            x_mean = (w[:, None] * X).sum(0) / total
            y_mean = (w[:, None] * Y).sum(0) / total
        else:
            x_mean = jnp.zeros((X.shape[1],), jnp.float32)
            y_mean = jnp.zeros((Y.shape[1],), jnp.float32)
        Xc, Yc = X - x_mean, Y - y_mean
        gram = (Xc * w[:, None]).T @ Xc + self.alpha * jnp.eye(X.shape[1], dtype=jnp.float32)
        kernel = jnp.linalg.solve(gram, (Xc * w[:, None]).T @ Yc)
        bias = y_mean - x_mean @ kernel
        return {"kernel": kernel.astype(params["kernel"].dtype),
                "bias": bias.astype(params["bias"].dtype)}, state
