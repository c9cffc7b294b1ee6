"""Predict on new raw data: scale like training, run jitted in chunks, unscale the outputs.

:func:`predict` (``ModelGraph.predict`` / ``Experiment.predict``) takes data in the
units it was recorded in (before any scaler) as

* an array, for a graph whose heads read one FeatureSet key set: ``(n, *s)`` for one
  key, or the stacked ``(n, n_keys, *s)``,
* a dict of feature keys (``{"voltage": (n, 10), "temperature": (n,)}``; nest it by
  FeatureSet label, ``{"cells": {...}}``, when several FeatureSets share a key name), or
  a pandas DataFrame with those columns,
* a FeatureSet or FeatureSetView with the same feature keys (targets not needed): its
  ``raw`` columns are read.

Each head's features are transformed by the scalers recorded on the graph's
FeatureSet (the same fitted statistics, in the same order), the graph runs in
fixed-size chunks through one compiled program keyed on its definition (the last chunk
is padded, so any number of rows compiles once), and outputs whose shape is the
routed target's are mapped back through the target scalers into the target's units.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.errors import ShapeMismatchError, closest_names
from modjax.graph.definition import GraphDef, apply

__all__ = ["predict"]

DEFAULT_BATCH = 1024


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run(definition: GraphDef, active: tuple[str, ...], wanted: tuple[str, ...],
         variables: Any, inputs: Any) -> dict[str, Any]:
    # keyed on the definition (structure), the active and returned labels, and shapes
    out, _ = apply(definition, variables, inputs, active_nodes=active)
    return {k: out[k] for k in wanted}


def _head_refs(graph: Any, plan_labels: Iterable[str]) -> list[tuple[Any, Any, str]]:
    """``(node, reference, input key)`` of every FeatureSet read by the active nodes."""
    out = []
    for label in plan_labels:
        node = graph.nodes[label] if label in graph.nodes else next(
            n for n in graph.nodes.values() if n.label == label)
        refs = [r for r in node.get_upstream_refs()
                if hasattr(r, "featureset_label") and hasattr(r, "features")]
        for r in refs:
            out.append((node, r, node.label if len(refs) == 1 else r.featureset_label))
    return out


def _raw_columns(data: Any, fs_label: str, keys: Sequence[str], owner: str,
                 n_refs: int) -> dict[str, np.ndarray]:
    """Raw per-key arrays for ``keys`` of FeatureSet ``fs_label`` from user data."""
    if hasattr(data, "get_features") and hasattr(data, "feature_keys"):
        missing = [k for k in keys if k not in data.feature_keys]
        if missing:
            raise KeyError(f"{owner}: the given FeatureSet has no feature keys {missing} "
                           f"(it has {data.feature_keys})")
        return {k: np.asarray(v) for k, v in
                data.get_features(list(keys), rep="raw", fmt="dict").items()}
    if hasattr(data, "columns") and hasattr(data, "to_numpy") and not isinstance(data, Mapping):
        data = {str(c): np.stack(list(data[c].to_numpy())) if data[c].dtype == object
                else data[c].to_numpy() for c in data.columns}
    if isinstance(data, Mapping):
        src = data.get(fs_label) if isinstance(data.get(fs_label), Mapping) else data
        missing = [k for k in keys if k not in src]
        if missing:
            raise KeyError(f"{owner}: no data for feature keys {missing} of FeatureSet "
                           f"{fs_label!r}; got keys {sorted(src)} (closest to {missing[0]!r}: "
                           f"{closest_names(missing[0], list(src))})")
        return {k: np.asarray(src[k]) for k in keys}
    arr = np.asarray(data)
    if n_refs != 1:
        raise TypeError(f"{owner}: the graph reads several feature sets of keys; pass a dict "
                        "of feature keys (or a FeatureSet) instead of one array")
    if arr.ndim == 0:
        raise ShapeMismatchError(f"{owner}: expected an array with a sample axis, got a scalar")
    if len(keys) == 1:
        return {keys[0]: arr}
    if arr.ndim < 2 or arr.shape[1] != len(keys):
        raise ShapeMismatchError(f"{owner}: an array for feature keys {list(keys)} must be "
                                 f"stacked (n, {len(keys)}, ...), got shape {arr.shape}")
    return {k: arr[:, i] for i, k in enumerate(keys)}


def _check_shape(fs: Any, key: str, arr: np.ndarray, owner: str) -> np.ndarray:
    want = tuple(fs.get_shape("features", key))
    if tuple(arr.shape[1:]) == want:
        return arr
    if arr.ndim >= 2 and arr.shape[1] == 1 and tuple(arr.shape[2:]) == want:
        return arr[:, 0]  # already stacked as (n, 1, *s)
    raise ShapeMismatchError(f"{owner}: feature {key!r} of FeatureSet {fs.label!r} has "
                             f"per-sample shape {want}; got data of shape {arr.shape} "
                             "(samples first)")


def scale_features(fs: Any, raw: Mapping[str, np.ndarray], keys: Sequence[str], rep: Any,
                   owner: str = "predict") -> np.ndarray:
    """``(n, n_keys, *s)`` features of new raw data, transformed by ``fs``'s recorded
    feature scalers (none when ``rep == "raw"``), in the order they were fitted.

    Example:
        >>> from modjax import FeatureSet
        >>> fs = FeatureSet.from_dict("sf", {"x": [1.0, 3.0], "y": [0.0, 1.0]}, "x", "y",
        ...                           register=False)
        >>> _ = fs.fit_transform("StandardScaler", domain="features")
        >>> scale_features(fs, {"x": np.array([2.0, 5.0])}, ["x"], None)[:, 0].tolist()
        [0.0, 3.0]
    """
    from modjax.data.scaling import flatten, unflatten

    cols = {k: _check_shape(fs, k, np.asarray(v), owner) for k, v in raw.items()}
    n = {k: len(v) for k, v in cols.items()}
    if len(set(n.values())) > 1:
        raise ValueError(f"{owner}: feature arrays have different numbers of rows {n}")
    if rep != "raw":
        for rec in fs.scaler_records:
            if rec.domain != "features" or not set(rec.keys) & set(keys):
                continue
            missing = [k for k in rec.keys if k not in cols]
            if missing:
                raise KeyError(f"{owner}: {rec.scaler.name} of FeatureSet {fs.label!r} was "
                               f"fitted jointly on {list(rec.keys)}; give raw data for "
                               f"{missing} too")
            stacked = np.stack([cols[k] for k in rec.keys], axis=1).astype(np.float64)
            merged = rec.merged_axes or ()
            flat = np.asarray(rec.scaler.transform(flatten(stacked, merged)))
            out = unflatten(flat, stacked.shape, merged)
            for i, k in enumerate(rec.keys):
                cols[k] = out[:, i]
    stacked = np.stack([cols[k] for k in keys], axis=1)
    return stacked.astype(stacked.dtype if stacked.dtype.kind == "f" else np.float32)


def _target_ref(graph: Any, label: str, heads: Sequence[tuple[Any, Any, str]]) -> Any:
    """The head reference whose targets reach node ``label`` (first in input order)."""
    seen, stack = set(), [label]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(u for u in graph.upstream_of(n) if u in graph.node_labels)
    for node, ref, _ in heads:
        if node.label in seen and getattr(ref, "targets", ()):
            return ref
    return None


def _unscale(graph: Any, label: str, out: np.ndarray, heads: Sequence[tuple[Any, Any, str]]
             ) -> np.ndarray:
    ref = _target_ref(graph, label, heads)
    if ref is None:
        return out
    fs = ref.resolve()
    keys = list(ref.targets)
    scaled = any(r.domain == "targets" and set(r.keys) & set(keys) for r in fs.scaler_records)
    if not scaled:
        return out
    want = tuple(fs.stacked_shape("targets", keys))
    if tuple(out.shape[1:]) != want:
        raise ShapeMismatchError(
            f"predict: node {label!r} outputs per-sample shape {tuple(out.shape[1:])}, but its "
            f"targets {keys} of FeatureSet {fs.label!r} (shape {want}) are scaled; only outputs "
            "in the targets' shape can be unscaled (pass unscale=False for raw outputs)")
    return np.asarray(fs.unscale_data_for_cols(data=out, domain="targets", columns=keys))


def predict(graph: Any, data: Any, *, node: Any = None, batch_size: int = DEFAULT_BATCH,
            unscale: bool = True) -> np.ndarray | dict[str, np.ndarray]:
    """Predictions of a built graph for new raw data (see the module docstring).

    Args:
        graph: a built ModelGraph.
        data: an array, a dict of feature keys (optionally nested by FeatureSet label),
            a DataFrame, or a FeatureSet/FeatureSetView (its raw feature columns).
        node: the node (label or node) or nodes whose outputs to return (default: the
            tail nodes).
        batch_size: rows per compiled chunk.
        unscale: map outputs back through the target scalers (target units).

    Returns:
        One node: its outputs ``(n, *output_shape)`` as numpy; several: ``{label: array}``.

    Raises:
        KeyError: data for a needed feature key is missing (names it).
        ShapeMismatchError: a key's per-sample shape differs from the FeatureSet's, or
            scaled targets cannot be unscaled from this node's output shape.

    Example:
        >>> from modjax import FeatureSet
        >>> from modjax import ModelGraph
        >>> from modjax import SequentialMLP
        >>> from modjax import ModelNode
        >>> fs = FeatureSet.from_dict("pd", {"x": np.ones((8, 3)), "y": np.ones(8)}, "x", "y")
        >>> _ = fs.fit_transform("StandardScaler", domain="targets")
        >>> g = ModelGraph([ModelNode("m", SequentialMLP(n_layers=1),
        ...                           upstream_ref=fs.reference())]).build(key=0)
        >>> predict(g, np.zeros((5, 3)), batch_size=2).shape
        (5, 1)
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"predict: batch_size must be a positive int, got {batch_size!r}")
    if not graph.is_built:
        raise ValueError(f"predict: graph {graph.label!r} is not built; call build() first")
    single = node is not None and (isinstance(node, str) or hasattr(node, "label"))
    if node is None:
        wanted = list(graph.tail_nodes.values())
        single = len(wanted) == 1
    else:
        wanted = [node] if single else list(node)
    labels = tuple(getattr(n, "label", n) for n in wanted)
    for lab in labels:
        if lab not in graph.node_labels:
            raise KeyError(f"predict: no node {lab!r} in graph {graph.label!r}; nodes like it: "
                           f"{closest_names(lab, graph.node_labels)}")
    active = _active_labels(graph, labels)
    heads = _head_refs(graph, active)
    inputs, n_rows = {}, set()
    for _, ref, key in heads:
        fs = ref.resolve()
        keys = list(ref.features)
        raw = _raw_columns(data, fs.label, keys, f"predict (FeatureSet {fs.label!r})", len(heads))
        inputs[key] = scale_features(fs, raw, keys, ref.rep, f"predict (FeatureSet {fs.label!r})")
        n_rows.add(inputs[key].shape[0])
    if len(n_rows) != 1:
        raise ValueError(f"predict: heads got different numbers of rows {sorted(n_rows)}")
    n = n_rows.pop()
    if n == 0:
        raise ValueError("predict: the data has no rows")
    out = _chunked(graph, active, labels, inputs, n, batch_size)
    if unscale:
        out = {k: _unscale(graph, k, v, heads) for k, v in out.items()}
    return out[labels[0]] if single else out


def _active_labels(graph: Any, labels: Sequence[str]) -> tuple[str, ...]:
    need, stack = set(), list(labels)
    while stack:
        n = stack.pop()
        if n in need:
            continue
        need.add(n)
        stack.extend(u for u in graph.upstream_of(n) if u in graph.node_labels)
    return tuple(lab for lab in graph.node_labels if lab in need)


def _chunked(graph: Any, active: tuple[str, ...], labels: tuple[str, ...],
             inputs: Mapping[str, np.ndarray], n: int, batch_size: int) -> dict[str, np.ndarray]:
    size = min(batch_size, max(n, 1))
    definition, variables = graph.definition, graph.variables
    parts: list[dict[str, Any]] = []
    for start in range(0, n, size):
        chunk = {}
        for k, a in inputs.items():
            c = a[start:start + size]
            if len(c) < size:  # pad the last chunk: one program for every chunk
                c = np.concatenate([c, np.zeros((size - len(c), *c.shape[1:]), c.dtype)])
            chunk[k] = c
        parts.append(_run(definition, active, labels, variables, chunk))
    out = {k: jnp.concatenate([p[k] for p in parts])[:n] for k in labels}
    return {k: np.asarray(v) for k, v in out.items()}
