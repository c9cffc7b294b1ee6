"""Mixed precision: run the graph in a compute dtype, keep float32 master parameters.

:func:`compute_graph` wraps a graph so its ``apply`` casts floating parameters, state
and inputs to the compute dtype (``bfloat16``) and casts outputs and new state back to
float32. The training step differentiates through the casts, so gradients, the
optimizer state and the parameters it updates stay float32, and losses are computed
in float32 from the upcast outputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["compute_graph", "MixedPrecisionGraph", "cast_floating"]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast floating-point leaves of ``tree`` to ``dtype`` (others unchanged).

    Example:
        >>> t = cast_floating({"w": jnp.ones(2), "n": jnp.arange(2)}, jnp.bfloat16)
        >>> str(t["w"].dtype), str(t["n"].dtype)
        ('bfloat16', 'int32')
    """
    def leaf(x: Any) -> Any:
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x
    return jax.tree.map(leaf, tree)


class MixedPrecisionGraph:
    """A graph whose forward pass runs in ``compute_dtype`` (everything else delegated).

    Args:
        graph: the graph (a ``ModelGraph`` or anything with ``apply``).
        compute_dtype: the forward dtype, e.g. ``jnp.bfloat16``.

    Example:
        >>> class G:
        ...     def apply(self, v, x, **kw):
        ...         return {"n": x["n"] * v["params"]["w"]}, v["state"]
        >>> g = MixedPrecisionGraph(G(), jnp.bfloat16)
        >>> out, _ = g.apply({"params": {"w": jnp.float32(3)}, "state": {}}, {"n": jnp.ones(2)})
        >>> str(out["n"].dtype), out["n"].tolist()
        ('float32', [3.0, 3.0])
    """

    #: a step traces this wrapper (its apply casts), not the wrapped graph's definition
    definition = None

    def __init__(self, graph: Any, compute_dtype: Any) -> None:
        self._graph = graph
        # the immutable definition when there is one: the traced program must not read
        # the live graph, which may be mutated after the program was made
        core = getattr(graph, "definition", None)
        self._core = graph if core is None else core
        self.compute_dtype = jnp.dtype(compute_dtype)

    def apply(self, variables: Any, inputs: Any, **kwargs: Any) -> tuple[Any, Any]:
        low = self.compute_dtype
        out, state = self._core.apply(cast_floating(variables, low),
                                       cast_floating(inputs, low), **kwargs)
        return cast_floating(out, jnp.float32), cast_floating(state, jnp.float32)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_graph", "_core"):
            raise AttributeError(name)
        try:
            return getattr(self._core, name)
        except AttributeError:
            return getattr(self._graph, name)


def compute_graph(graph: Any, compute_dtype: Any = None) -> Any:
    """``graph`` itself (no compute dtype, or float32) or its mixed-precision wrapper.

    Example:
        >>> compute_graph("g") == "g"
        True
    """
    if compute_dtype is None or jnp.dtype(compute_dtype) == jnp.float32:
        return graph
    if not jnp.issubdtype(jnp.dtype(compute_dtype), jnp.floating):
        raise ValueError(f"compute_dtype must be a floating dtype, got {compute_dtype!r}")
    return MixedPrecisionGraph(graph, compute_dtype)
