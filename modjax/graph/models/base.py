"""BaseModel: shared shape bookkeeping and config for the built-in models."""

from __future__ import annotations

import math
from typing import Any

from modjax.errors import ConfigError, ShapeMismatchError

__all__ = ["BaseModel", "ShapePreservingModel", "as_shape"]

Shape = tuple[int, ...]


def as_shape(shape: Any, *, what: str = "shape") -> Shape | None:
    """Normalise an int / sequence / None into a tuple of ints (or None).

    Example:
        >>> as_shape([1, 8]), as_shape(4), as_shape(None)
        ((1, 8), (4,), None)
    """
    if shape is None:
        return None
    if isinstance(shape, int):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"{what} must be non-negative, got {out}")
    return out


class BaseModel:
    """Base of the built-in models: lazy shapes and config from constructor args.

    A subclass calls ``super().__init__(input_shape=..., output_shape=..., **args)``
    with all its constructor arguments so that :meth:`get_config` can rebuild it.
    The declared shapes are what the user gave; the resolved shapes are set by
    :meth:`build` (the graph calls it during shape inference).

    Example:
        >>> from modjax import SequentialMLP
        >>> m = SequentialMLP(n_layers=1)
        >>> m.build((4,), (2,))
        >>> m.input_shape, m.output_shape
        ((4,), (2,))
    """

    backend = "jax"
    #: The config fully determines init/apply, so identical nodes share traced work.
    _config_determines_model = True
    #: ``init`` ignores its key (constant initial values).
    _key_free_init = False

    def __init__(self, *, input_shape: Any = None, output_shape: Any = None,
                 **init_args: Any) -> None:
        self._declared_input = as_shape(input_shape, what="input_shape")
        self._declared_output = as_shape(output_shape, what="output_shape")
        self._input_shape = self._declared_input
        self._output_shape = self._declared_output
        self._init_args = dict(init_args)

    # ---------------------------------------------------------------- shapes
    @property
    def input_shape(self) -> Shape | None:
        """Per-sample input shape: declared, or resolved by :meth:`build`."""
        return self._input_shape

    @property
    def output_shape(self) -> Shape | None:
        """Per-sample output shape: declared, or resolved by :meth:`build`."""
        return self._output_shape

    @property
    def is_built(self) -> bool:
        """Whether both per-sample shapes are known (declared or resolved by :meth:`build`)."""
        return self._input_shape is not None and self._output_shape is not None

    @property
    def declared_output_shape(self) -> Shape | None:
        """The output shape given at construction (None when left to inference)."""
        return self._declared_output

    def build(self, input_shape: Any, output_shape: Any = None) -> None:
        """Resolve shapes before ``init``.

        Args:
            input_shape: per-sample input shape.
            output_shape: shape requested by the graph (a tail's target shape); ignored
                when the model declared its own output shape.

        Raises:
            ShapeMismatchError: ``input_shape`` contradicts the declared one.
        """
        input_shape = as_shape(input_shape, what="input_shape")
        if self._declared_input is not None and input_shape != self._declared_input:
            raise ShapeMismatchError(
                f"{type(self).__name__} was declared with input_shape {self._declared_input} "
                f"but receives {input_shape}")
        self._input_shape = input_shape
        self._output_shape = self._declared_output or as_shape(output_shape)
        self._resolve(input_shape)

    def _resolve(self, input_shape: Shape) -> None:
        """Hook: derive the output shape when it can be computed from the input."""

    def _require_output_shape(self) -> Shape:
        if self._output_shape is None:
            raise ValueError(
                f"{type(self).__name__} needs an output_shape: pass output_shape=... or use it "
                "as a tail node whose FeatureSet reference has targets")
        return self._output_shape

    @staticmethod
    def _flat(shape: Shape) -> int:
        return math.prod(shape)

    # ---------------------------------------------------------------- protocol
    def init(self, key: Any, input_shape: Shape) -> tuple[Any, Any]:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must implement init")

    def apply(self, params: Any, state: Any, x: Any, *, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must implement apply")

    def init_draws(self, input_shape: Shape) -> int | None:
        """How many float32 draws from ``U[-1, 1)`` :meth:`init` consumes, or None.

        A model that answers an int promises ``init(key, s) ==
        init_from_draws(jax.random.uniform(key, (init_draws(s),), float32, -1, 1), s)``
        bit for bit. The graph then draws the randomness of many nodes in one program
        (what keeps building hundreds of nodes cheap to compile). None (the default for
        models whose init draws other distributions) makes the graph call :meth:`init`.

        Example:
            >>> from modjax import Conv1D
            >>> from modjax import BatchNorm
            >>> BatchNorm().init_draws((3,)), Conv1D(2).init_draws((1, 8))
            (0, None)
        """
        return 0 if self._key_free_init else None

    def init_from_draws(self, u: Any, input_shape: Shape) -> tuple[Any, Any]:
        """:meth:`init` with its randomness given as ``init_draws`` uniform draws ``u``.

        Example:
            >>> import jax.numpy as jnp
            >>> from modjax import LayerNorm
            >>> LayerNorm().init_from_draws(jnp.zeros(0), (2,))[0]["scale"].tolist()
            [1.0, 1.0]
        """
        if not self._key_free_init:
            raise TypeError(f"{type(self).__name__} draws its own randomness; call init(key, ...)")
        return self.init(None, input_shape)

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON only) that rebuild this model."""
        cfg = dict(self._init_args)
        if self._declared_input is not None:
            cfg["input_shape"] = list(self._declared_input)
        cfg["output_shape"] = None if self._declared_output is None else list(
            self._declared_output)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *,
                    allow_packaged_code: bool = False) -> BaseModel:
        """Rebuild from :meth:`get_config` output."""
        try:
            return cls(**config)
        except TypeError as e:
            raise ConfigError(f"bad config for {cls.__name__}: {e}") from e

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({args})"


class ShapePreservingModel(BaseModel):
    """A model whose output has its input's per-sample shape and whose initial
    values are constants (Dropout, Identity, the norms): no ``output_shape`` argument.

    Example:
        >>> from modjax import Identity
        >>> m = Identity()
        >>> m.build((3, 2), None)
        >>> m.output_shape, "output_shape" in m.get_config()
        ((3, 2), False)
    """

    _key_free_init = True  # constant initial values

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.pop("output_shape", None)
        return cfg

    def _resolve(self, input_shape: Shape) -> None:
        self._output_shape = tuple(input_shape)
