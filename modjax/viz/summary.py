"""Text summaries of model graphs: nodes, shapes, parameter counts."""

from __future__ import annotations

import math
from typing import Any

import jax

__all__ = ["graph_summary", "count_params", "tree_bytes", "tree_dtypes"]


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> count_params({"w": jnp.ones((3, 2)), "b": jnp.ones(2)})
        8
    """
    return sum(math.prod(getattr(x, "shape", ())) for x in jax.tree.leaves(tree))


def tree_bytes(tree: Any) -> int:
    """Bytes held by the arrays of a pytree (``nbytes`` of each leaf).

    Example:
        >>> import jax.numpy as jnp
        >>> tree_bytes({"w": jnp.ones((3, 2)), "b": jnp.ones(2, jnp.bfloat16)})
        28
    """
    return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree))


def tree_dtypes(tree: Any) -> str:
    """The distinct dtypes of a pytree's leaves, joined with ``/`` (``-`` when empty).

    Example:
        >>> import jax.numpy as jnp
        >>> tree_dtypes({"w": jnp.ones(2), "n": jnp.zeros(1, jnp.int32)})
        'float32/int32'
    """
    names = sorted({str(x.dtype) for x in jax.tree.leaves(tree) if hasattr(x, "dtype")})
    return "/".join(names) or "-"


def _fmt(shape: Any) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in shape.items()) + "}"
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def graph_summary(graph: Any) -> str:
    """A fixed-width table of a ModelGraph: one row per node in topological order.

    Columns: label, node type, model, inputs (upstream labels), input shape(s), output
    shape, parameter count, dtypes of the node's variables, bytes of its variables
    (params and state), frozen. Ends with total / trainable parameter counts and bytes.
    """
    from modjax.graph.nodes import ModelNode

    built = graph.is_built
    params = graph.variables["params"] if built else {}
    states = graph.variables["state"] if built else {}
    frozen_mask = graph.frozen_mask() if built else None
    rows = [("node", "type", "model", "inputs", "in shape", "out shape", "params", "dtype",
             "bytes", "frozen")]
    total = trainable = total_bytes = 0
    for nid, node in graph.nodes.items():
        shapes = graph.node_shapes(nid) if built else None
        if isinstance(node, ModelNode):
            n = count_params(params.get(node.label, {})) if built else 0
            if built:
                leaves = zip(jax.tree.leaves(params.get(node.label, {})),
                             jax.tree.leaves(frozen_mask.get(node.label, {})))
                trainable += sum(math.prod(x.shape) for x, f in leaves if not f)
            total += n
            model = type(node.model).__name__
            frozen = "yes" if node.is_frozen else ("part" if any(
                p.startswith(node.label + ".") for p in graph.frozen_paths) else "")
        else:
            n, model, frozen = 0, "-", ""
        held = {"p": params.get(node.label, {}), "s": states.get(node.label, {})}
        nbytes = tree_bytes(held)
        total_bytes += nbytes
        in_shape = " + ".join(_fmt(s) for s in shapes.input_shapes) if shapes else "?"
        out_shape = _fmt(shapes.output_shape) if shapes else "?"
        rows.append((node.label, type(node).__name__, model,
                     ", ".join(graph.upstream_of(nid)), in_shape, out_shape,
                     f"{n:,}" if built else "?", tree_dtypes(held) if built else "?",
                     f"{nbytes:,}" if built else "?", frozen))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"ModelGraph {graph.label!r} ({'built' if built else 'not built'}, "
             f"{len(rows) - 1} nodes)"]
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    if built:
        lines.append(f"total params: {total:,}  trainable: {trainable:,}  frozen: "
                     f"{total - trainable:,}  bytes: {total_bytes:,}")
    return "\n".join(lines)
