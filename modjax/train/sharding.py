"""Parameter sharding by label-path rules (tensor-parallel / FSDP style placement).

Rules map glob patterns over dotted parameter paths (``"encoder.*"``,
``"*.kernel"``) to ``PartitionSpec``s on a mesh, typically ``("data", "model")``. The
first matching rule wins; unmatched parameters are replicated. Optimizer-state leaves
that mirror a parameter (Adam's ``mu``/``nu``...) get that parameter's sharding; the
rest (step counts) are replicated. XLA's SPMD partitioner then inserts the collectives
the sharded matmuls need, so the training step itself is unchanged.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from modjax.errors import ShapeMismatchError, closest_names

__all__ = ["param_shardings", "carry_shardings", "dotted_paths"]


def _key_name(k: Any) -> str:
    return str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))


def dotted_paths(tree: Any) -> list[str]:
    """Dotted label paths of a tree's leaves, in leaf order.

    Example:
        >>> dotted_paths({"enc": {"w": 1, "b": 2}})
        ['enc.b', 'enc.w']
    """
    return [".".join(_key_name(k) for k in kp)
            for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _check_spec(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh,
                pattern: str) -> None:
    if len(spec) > len(shape):
        raise ShapeMismatchError(f"shard_params rule {pattern!r}: parameter {path!r} of shape "
                                 f"{shape} has fewer dimensions than {spec}")
    for dim, axes in zip(shape, spec):
        names = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        size = 1
        for a in names:
            if a not in mesh.axis_names:
                raise ValueError(f"shard_params rule {pattern!r}: mesh has no axis {a!r} "
                                 f"(axes: {mesh.axis_names})")
            size *= int(mesh.shape[a])
        if dim % size:
            raise ShapeMismatchError(
                f"shard_params rule {pattern!r}: parameter {path!r} of shape {shape} cannot be "
                f"split by {spec} on mesh {dict(mesh.shape)} ({dim} is not a multiple of {size})")


def param_shardings(params: Any, rules: Mapping[str, Any], mesh: Mesh) -> Any:
    """A ``NamedSharding`` per parameter from glob rules over dotted paths.

    Args:
        params: the parameter tree (arrays or ShapeDtypeStructs).
        rules: ``{pattern: PartitionSpec}``; first match wins, the rest is replicated.
        mesh: the mesh the specs name axes of.

    Returns:
        A tree of shardings matching ``params``.

    Raises:
        ValueError: a rule matches no parameter (the closest paths are named) or names a
            missing mesh axis.
        ShapeMismatchError: a matched dimension is not divisible by its axes' size.

    Example:
        >>> import numpy as np
        >>> mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
        >>> s = param_shardings({"enc": {"w": np.zeros((2, 4))}}, {"enc.*": PartitionSpec(None, "model")}, mesh)
        >>> tuple(s["enc"]["w"].spec)
        (None, 'model')
    """
    paths = dotted_paths(params)
    leaves, treedef = jax.tree.flatten(params)
    used = dict.fromkeys(rules, False)
    out = []
    for path, leaf in zip(paths, leaves):
        spec = PartitionSpec()
        for pattern, rule in rules.items():
            if fnmatch.fnmatchcase(path, pattern):
                spec = rule if isinstance(rule, PartitionSpec) else PartitionSpec(*rule)
                _check_spec(path, tuple(leaf.shape), spec, mesh, pattern)
                used[pattern] = True
                break
        out.append(NamedSharding(mesh, spec))
    unused = [p for p, u in used.items() if not u]
    if unused:
        raise ValueError(f"shard_params rule {unused[0]!r} matches no parameter; parameter paths "
                         f"like it: {closest_names(unused[0], paths)}")
    return jax.tree.unflatten(treedef, out)


def carry_shardings(carry: Mapping[str, Any], rules: Mapping[str, Any] | None,
                    mesh: Mesh) -> Any:
    """Shardings for a training carry: parameters (and the optimizer-state leaves that
    mirror them) by ``rules``, everything else replicated.

    Args:
        carry: ``{"variables", "opt_state", "key", "step", "frozen"}``.
        rules: ``shard_params`` rules, or None (all replicated).
        mesh: the mesh.

    Returns:
        A tree of shardings matching ``carry``.

    Example:
        >>> import numpy as np
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> s = carry_shardings({"variables": {"params": {"w": np.ones(2)}}}, None, mesh)
        >>> s["variables"]["params"]["w"].spec == PartitionSpec()
        True
    """
    rep = NamedSharding(mesh, PartitionSpec())
    if not rules:
        return jax.tree.map(lambda _: rep, carry)
    params = carry["variables"]["params"]
    by_path = dict(zip(dotted_paths(params), jax.tree.leaves(param_shardings(params, rules,
                                                                             mesh))))
    shapes = dict(zip(dotted_paths(params), (tuple(x.shape) for x in jax.tree.leaves(params))))

    def pick(kp: Any, leaf: Any) -> Any:
        path = ".".join(_key_name(k) for k in kp)
        for p, sh in by_path.items():
            if (path == p or path.endswith("." + p)) and tuple(getattr(leaf, "shape", ())) \
                    == shapes[p] and sh.spec != PartitionSpec():
                return sh
        return rep
    return jax.tree_util.tree_map_with_path(pick, carry)
