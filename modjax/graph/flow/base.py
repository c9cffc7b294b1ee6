"""FlowModule: the small base shared by the flow primitives (merges, routers, halts).

Flow primitives follow the model protocol of docs/architecture.md, with one extension:
a primitive that takes several inputs (a merge, a router wired with ``using``) receives
them as a tuple, and its ``init``/``build`` receive a tuple of per-sample shapes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ConfigError

__all__ = ["FlowModule", "as_inputs", "sum_inputs"]

Shape = tuple[int, ...]


def as_inputs(x: Any) -> tuple[Any, ...]:
    """A single input becomes a 1-tuple; a tuple/list of inputs passes through.

    Example:
        >>> len(as_inputs(1.0)), len(as_inputs((1.0, 2.0)))
        (1, 2)
    """
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def sum_inputs(x: Any) -> jax.Array:
    """Element-wise sum of one or several inputs (how routers see ``using`` refs).

    Example:
        >>> import jax.numpy as jnp
        >>> sum_inputs((jnp.ones(2), jnp.ones(2))).tolist()
        [2.0, 2.0]
    """
    xs = as_inputs(x)
    out = xs[0]
    for other in xs[1:]:
        out = out + other
    return out


class FlowModule:
    """Base of the flow primitives: shape bookkeeping and config from constructor args.

    Subclasses call ``super().__init__(**ctor_args)`` with JSON-only constructor
    arguments so :meth:`get_config` can rebuild them, and override :meth:`apply`
    (and :meth:`init` when they own parameters).
    """

    def __init__(self, **ctor_args: Any) -> None:
        self._ctor_args = dict(ctor_args)
        self.input_shape: Any = None
        self.output_shape: Shape | None = None

    def build(self, input_shape: Any, output_shape: Any = None) -> None:
        """Record the per-sample input shape(s) and infer the output shape."""
        self.input_shape = input_shape
        specs = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2, *s), jnp.float32),
                             input_shape, is_leaf=_is_shape)
        params, state = jax.eval_shape(lambda k: self.init(k, input_shape), jax.random.key(0))
        y = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, specs)
        self.output_shape = tuple(y.shape[1:])

    def init(self, key: Any, input_shape: Any) -> tuple[Any, Any]:
        """No parameters and no state by default."""
        return {}, {}

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must implement apply")

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON only)."""
        return dict(self._ctor_args)

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> FlowModule:
        """Rebuild from :meth:`get_config` output."""
        try:
            return cls(**config)
        except TypeError as e:
            raise ConfigError(f"bad config for {cls.__name__}: {e}") from e

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._ctor_args.items())
        return f"{type(self).__name__}({args})"


def _is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(isinstance(d, int) for d in s)
