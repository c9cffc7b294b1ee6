"""Write and read one pytree with Orbax plus a JSON description of its structure.

Orbax stores the array data (``arrays/<item>/``); the JSON *spec* stores what Orbax
cannot: the nesting (dicts, lists, tuples, ``None``, empty dicts), Python scalar leaves,
zero-size arrays, typed PRNG keys, and every leaf's dotted path, shape and dtype. The
spec alone rebuilds nested-dict trees; a *target* tree (current arrays or
``jax.ShapeDtypeStruct``s) gives the exact pytree types and the shardings to restore
onto, so a checkpoint written on 8 devices restores on 1 and vice versa.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.errors import CheckpointError
from modjax.paths import key_name


class _Orbax:
    """``orbax.checkpoint``, imported on first use (it takes a while to import)."""

    def __getattr__(self, name: str) -> Any:
        import orbax.checkpoint

        return getattr(orbax.checkpoint, name)


ocp = _Orbax()

__all__ = ["TreeSpec", "describe_tree", "structural_hash", "save_tree", "restore_tree",
           "ZERO_HASH"]

#: Hash written by ``migrate_checkpoint``: skip the architecture check, still check shapes.
ZERO_HASH = "0" * 64

TreeSpec = dict[str, Any]

# Leaf kinds whose value is fully described by the spec (Orbax stores nothing for them).
_NO_DATA = ("empty", "str")


def _is_prng_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_record(path: str, x: Any) -> dict[str, Any]:
    if x is None:
        raise AssertionError("None is structure, not a leaf")
    if isinstance(x, str):
        # Strings (phase labels, split names in a state) live in the JSON spec itself.
        return {"path": path, "kind": "str", "shape": [], "dtype": "str", "value": x}
    if isinstance(x, bool | np.bool_) and not isinstance(x, np.ndarray):
        return {"path": path, "kind": "bool", "shape": [], "dtype": "bool"}
    if isinstance(x, int) and not isinstance(x, np.ndarray):
        return {"path": path, "kind": "int", "shape": [], "dtype": "int64"}
    if isinstance(x, float):
        return {"path": path, "kind": "float", "shape": [], "dtype": "float64"}
    if _is_prng_key(x):
        data = jax.random.key_data(x)
        return {"path": path, "kind": "key", "shape": list(x.shape), "dtype": str(data.dtype),
                "key_impl": str(jax.random.key_impl(x)), "data_shape": list(data.shape)}
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise CheckpointError(
            f"cannot checkpoint leaf {path!r} of type {type(x).__name__}: leaves must be arrays "
            "or Python/NumPy scalars (put strings and other config in get_config())")
    kind = "empty" if int(np.prod(x.shape)) == 0 else "array"
    return {"path": path, "kind": kind, "shape": list(map(int, x.shape)), "dtype": str(x.dtype)}


def _describe(node: Any, path: tuple[str, ...], leaves: list[tuple[dict[str, Any], Any]]) -> Any:
    if node is None:
        return {"t": "none"}
    if isinstance(node, Mapping):
        out = {}
        # Sorted like jax.tree_util, so leaf order matches a target's treedef.
        for k in sorted(node, key=str):
            if not isinstance(k, str):
                raise CheckpointError(
                    f"cannot checkpoint dict key {k!r} at {'.'.join(path) or '<root>'!r}: "
                    "keys must be strings")
            out[k] = _describe(node[k], path + (k,), leaves)
        return {"t": "dict", "c": out}
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return {"t": "namedtuple", "name": type(node).__name__, "module": type(node).__module__,
                "qualname": type(node).__qualname__, "fields": list(node._fields),
                "c": [_describe(v, path + (f,), leaves) for f, v in zip(node._fields, node)]}
    if isinstance(node, list | tuple):
        return {"t": "list" if isinstance(node, list) else "tuple",
                "c": [_describe(v, path + (str(i),), leaves) for i, v in enumerate(node)]}
    flat, _ = jax.tree_util.tree_flatten_with_path(node)
    if len(flat) == 1 and flat[0][0] == ():
        rec = _leaf_record(".".join(path), node)
        rec["i"] = len(leaves)
        leaves.append((rec, node))
        return {"t": "leaf", "i": rec["i"]}
    # A custom pytree node (optax/flax containers): keep its leaves, rebuild needs a target.
    idx = []
    for kp, leaf in flat:
        names = [key_name(k) for k in kp]
        rec = _leaf_record(".".join(path + tuple(names)), leaf)
        rec["i"] = len(leaves)
        leaves.append((rec, leaf))
        idx.append(rec["i"])
    return {"t": "opaque", "type": type(node).__name__, "leaves": idx}


def describe_tree(tree: Any) -> tuple[TreeSpec, list[Any]]:
    """The JSON spec of a pytree and its leaves in spec order.

    Returns:
        ``(spec, leaves)``; ``spec = {"tree", "leaves": [{path, kind, shape, dtype}], "hash"}``.

    Example:
        >>> spec, leaves = describe_tree({"a": {"w": np.zeros((2, 3))}, "b": {}})
        >>> [(r["path"], r["shape"]) for r in spec["leaves"]]
        [('a.w', [2, 3])]
    """
    pairs: list[tuple[dict[str, Any], Any]] = []
    structure = _describe(tree, (), pairs)
    records = [r for r, _ in pairs]
    spec = {"tree": structure, "leaves": records, "hash": structural_hash(records)}
    return spec, [x for _, x in pairs]


def structural_hash(records: list[dict[str, Any]]) -> str:
    """sha256 of the sorted ``(path, shape, dtype)`` of every leaf.

    Two trees with the same hash have the same leaf names, shapes and dtypes, in their
    own namespace (a subtree hashes the same wherever it sits in a bigger graph).
    """
    canon = sorted((r["path"], list(r["shape"]), r["dtype"]) for r in records)
    return hashlib.sha256(json.dumps(canon).encode()).hexdigest()


def _to_storable(rec: dict[str, Any], x: Any) -> Any:
    if rec["kind"] == "key":
        return jax.random.key_data(x)
    if rec["kind"] in ("int", "float", "bool"):
        return np.asarray(x, dtype=rec["dtype"])
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def save_trees(directory: Path, trees: dict[str, Any]) -> dict[str, TreeSpec]:
    """Write several named trees as ONE Orbax checkpoint in ``directory``.

    One Orbax save per artifact (not per tree) keeps the fixed cost of a checkpoint low;
    each tree can still be read alone (:func:`restore_tree` restores partially).

    Returns:
        ``{name: spec}``; a spec's ``orbax`` entry says whether it has array data.
    """
    specs: dict[str, TreeSpec] = {}
    payload: dict[str, dict[str, Any]] = {}
    for name, tree in trees.items():
        spec, leaves = describe_tree(tree)
        data = {f"l{r['i']:06d}": _to_storable(r, x)
                for r, x in zip(spec["leaves"], leaves) if r["kind"] not in _NO_DATA}
        spec["orbax"] = bool(data)
        if data:
            payload[name] = data
        specs[name] = spec
    if payload:
        ocp.PyTreeCheckpointer().save(Path(directory).absolute(), payload)
    return specs


def save_tree(directory: Path, tree: Any, item: str = "tree") -> TreeSpec:
    """Write one tree with Orbax into ``directory`` (as item ``item``); return its spec."""
    return save_trees(directory, {item: tree})[item]


def _from_stored(rec: dict[str, Any], x: Any) -> Any:
    kind = rec["kind"]
    if kind == "empty":
        return np.zeros(rec["shape"], dtype=rec["dtype"])
    if kind == "str":
        return rec["value"]
    if kind == "int":
        return int(x)
    if kind == "float":
        return float(x)
    if kind == "bool":
        return bool(x)
    if kind == "key":
        return jax.random.wrap_key_data(jnp.asarray(x), impl=rec["key_impl"])
    return x


_MISSING = object()


def _child(template: Any, key: Any) -> Any:
    try:
        return template[key]
    except (KeyError, IndexError, TypeError):
        return _MISSING


def _loaded_namedtuple(node: dict[str, Any]) -> type | None:
    """The namedtuple class a spec names, if its module is ALREADY imported (never imports).

    Optimizer states (optax's ``ScaleByAdamState``...) then come back with their types
    even without a template, while no code is loaded because a checkpoint says so.
    """
    mod = sys.modules.get(node.get("module") or "")
    obj: Any = mod
    for part in (node.get("qualname") or "").split("."):
        obj = getattr(obj, part, None)
    if (isinstance(obj, type) and issubclass(obj, tuple)
            and list(getattr(obj, "_fields", ())) == node["fields"]):
        return obj
    return None


def _rebuild(node: dict[str, Any], values: list[Any], template: Any = _MISSING) -> Any:
    """Nested containers from the spec; ``template`` supplies custom node types.

    Where the template has a namedtuple or custom pytree node at the same place (and it
    fits), that type is rebuilt; elsewhere dicts/lists/tuples come from the spec, so the
    checkpoint may differ from the template (e.g. a longer history list).
    """
    t = node["t"]
    if t == "none":
        return None
    if t == "leaf":
        return values[node["i"]]
    if t == "dict":
        return {k: _rebuild(v, values, _child(template, k)) for k, v in node["c"].items()}
    if t == "list":
        return [_rebuild(v, values, _child(template, i)) for i, v in enumerate(node["c"])]
    if t == "tuple":
        return tuple(_rebuild(v, values, _child(template, i)) for i, v in enumerate(node["c"]))
    if t == "namedtuple":
        kids = [_rebuild(v, values, getattr(template, f, _MISSING))
                for f, v in zip(node["fields"], node["c"])]
        if (isinstance(template, tuple) and type(template).__name__ == node["name"]
                and list(getattr(template, "_fields", ())) == node["fields"]):
            return type(template)(*kids)
        cls = _loaded_namedtuple(node)
        return cls(*kids) if cls is not None else dict(zip(node["fields"], kids))
    if template is not _MISSING:
        leaves, treedef = jax.tree_util.tree_flatten(template)
        if type(template).__name__ == node.get("type") and len(leaves) == len(node["leaves"]):
            return jax.tree_util.tree_unflatten(treedef, [values[i] for i in node["leaves"]])
    raise CheckpointError(
        f"the checkpoint holds a {node.get('type')!r} pytree node; restoring it needs a target "
        "or template tree of that type (restore into an existing object)")


def _check_stored(rec: dict[str, Any], x: Any, where: str) -> None:
    """The array Orbax read has the shape and dtype the manifest recorded."""
    if rec["kind"] in _NO_DATA:
        return
    want_shape = rec.get("data_shape", rec["shape"]) if rec["kind"] == "key" else rec["shape"]
    shape, dtype = tuple(np.shape(x)), str(getattr(x, "dtype", np.asarray(x).dtype))
    if shape != tuple(want_shape) or dtype != rec["dtype"]:
        raise CheckpointError(
            f"{where}: the array data of leaf {rec['path']!r} is {dtype}{shape} but the manifest "
            f"records {rec['dtype']}{tuple(want_shape)} (edited or mismatched checkpoint)")


def _target_records(target: Any) -> tuple[list[dict[str, Any]], Any, list[Any]]:
    spec, leaves = describe_tree(target)
    _, treedef = jax.tree_util.tree_flatten(target)
    return spec["leaves"], treedef, leaves


def _match_target(records: list[dict[str, Any]], target: Any,
                  where: str) -> tuple[Any, dict[int, Any], set[int]]:
    """Check ``target`` against the stored leaves; ``(treedef, shardings, uncommitted)``:
    the target's shardings by leaf index, and the leaves jax placed by default."""
    t_records, treedef, t_leaves = _target_records(target)
    if [r["path"] for r in t_records] != [r["path"] for r in records]:
        have = {r["path"] for r in records}
        want = {r["path"] for r in t_records}
        raise CheckpointError(
            f"{where}: the tree structure does not match the target: missing in checkpoint "
            f"{sorted(want - have)[:8]}, unexpected in checkpoint {sorted(have - want)[:8]}")
    shardings: dict[int, Any] = {}
    uncommitted: set[int] = set()
    for r, tr, tl in zip(records, t_records, t_leaves):
        if r["shape"] != tr["shape"] or (r["kind"] != "key" and r["dtype"] != tr["dtype"]
                                         and tr["kind"] in ("array", "empty")):
            raise CheckpointError(
                f"{where}: leaf {r['path']!r} is {r['dtype']}{tuple(r['shape'])} in the "
                f"checkpoint but {tr['dtype']}{tuple(tr['shape'])} in the target")
        if r["kind"] != "array":
            continue
        if isinstance(tl, jax.Array) and not tl.committed:
            # a leaf jax placed by default stays uncommitted: a committed copy would
            # make every jitted function that takes it compile again
            uncommitted.add(r["i"])
        elif isinstance(tl, jax.Array | jax.ShapeDtypeStruct) and tl.sharding is not None:
            shardings[r["i"]] = tl.sharding
    return treedef, shardings, uncommitted


def _read_arrays(directory: Path, records: list[dict[str, Any]], item: str,
                 shardings: dict[int, Any], where: str) -> dict[str, Any]:
    """The stored arrays of ``item`` by leaf name, placed with ``shardings`` (NumPy
    elsewhere)."""
    names = {f"l{r['i']:06d}": r for r in records if r["kind"] not in _NO_DATA}
    args = {}
    for name, r in names.items():
        sh = shardings.get(r["i"])
        args[name] = (ocp.ArrayRestoreArgs(sharding=sh, global_shape=tuple(r["shape"]))
                      if sh is not None else ocp.RestoreArgs(restore_type=np.ndarray))
    try:
        return ocp.PyTreeCheckpointer().restore(
            Path(directory).absolute(), args=ocp.args.PyTreeRestore(
                item={item: dict.fromkeys(args, 0)}, restore_args={item: args},
                partial_restore=True))[item]
    except Exception as e:  # orbax raises many types for missing/corrupt data
        raise CheckpointError(
            f"{where}: cannot read the array data in {str(directory)!r} "
            f"(missing or truncated): {type(e).__name__}: {e}") from e


def restore_tree(directory: Path, spec: TreeSpec, target: Any = None, *, item: str = "tree",
                 template: Any = None, where: str = "checkpoint") -> Any:
    """Read a tree written by :func:`save_tree`.

    Args:
        directory: the Orbax directory given to ``save_tree``/``save_trees``.
        spec: the spec it returned (stored in the manifest).
        item: the tree's name in that directory (only it is read).
        target: optional tree of the same structure (arrays or ShapeDtypeStructs). Its
            pytree types are reproduced and array leaves are placed with its shardings.
            Without it the result is nested dicts/lists of NumPy arrays.
        template: a tree whose custom node types (optax namedtuples, ...) are reused
            where they fit, without requiring the same structure (used for states that
            grow, such as an experiment's history).
        where: names the checkpoint in error messages.

    Returns:
        The restored pytree.

    Raises:
        CheckpointError: the target's leaves differ from the checkpoint's (names the
            first differing paths), or the array data is missing/corrupt.
    """
    records = spec["leaves"]
    treedef, shardings, uncommitted = (None, {}, set()) if target is None else \
        _match_target(records, target, where)
    stored = _read_arrays(directory, records, item, shardings, where) if spec.get("orbax") else {}
    values = []
    for r in records:
        x = stored.get(f"l{r['i']:06d}")
        if x is None and r["kind"] not in _NO_DATA:
            raise CheckpointError(f"{where}: array data for leaf {r['path']!r} is missing")
        _check_stored(r, x, where)
        value = _from_stored(r, x)
        values.append(jnp.asarray(value) if r["i"] in uncommitted else value)
    if treedef is not None:
        return jax.tree_util.tree_unflatten(treedef, values)
    return _rebuild(spec["tree"], values, _MISSING if template is None else template)
