"""Shape inference for ModelGraph.build: ``jax.eval_shape`` per node, no data.

Seed 000 "Shape Inference Details": a head takes its FeatureSet reference's feature
shape; an intermediate node takes its upstream's output shape; a tail whose model has
no output shape takes the target shape routed to it; merge nodes find their output
(and target) shapes by evaluating the merge on abstract arrays.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import ModjaxError, ShapeMismatchError
from modjax.graph.nodes import MergeNode, ModelNode, ref_label
from modjax.graph.topology import Topology

__all__ = ["NodeShapes", "infer_shapes", "label_seed", "featureset_target_shape",
           "model_cache_key"]

_BATCH = 2  # abstract batch size: >1 so a model that squeezes axis 0 is caught


@dataclass(frozen=True)
class NodeShapes:
    """Inferred per-sample shapes of one node (no batch axis)."""

    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    target_shape: Any  # tuple, a pytree of tuples, or None when no targets reach it
    abstract_params: Any = None
    abstract_state: Any = None


def label_seed(label: str) -> int:
    """Stable 31-bit integer for a label: the per-node ``fold_in`` of the root key.

    Example:
        >>> label_seed("Encoder") == label_seed("Encoder")
        True
    """
    return zlib.crc32(label.encode()) & 0x7FFFFFFF


def featureset_target_shape(ref: Any) -> Any:
    """The per-sample target shape of a FeatureSet reference, None if it has no targets."""
    if not getattr(ref, "targets", True):
        return None
    try:
        shape = ref.target_shape
    except (ValueError, KeyError, AttributeError, ModjaxError):
        return None
    return None if shape is None else tuple(int(s) for s in shape)


def _sds(shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((_BATCH, *shape), jnp.float32)


def _describe(item: Any, nodes: Mapping[str, Any]) -> str:
    return repr(nodes[item].label) if isinstance(item, str) else \
        f"FeatureSet {ref_label(item)!r}"


def _declared_input(model: Any) -> Any:
    if hasattr(model, "_declared_input"):
        return model._declared_input
    return getattr(model, "input_shape", None)


def _declared_output(model: Any) -> Any:
    if hasattr(model, "_declared_output"):
        return model._declared_output
    return getattr(model, "output_shape", None)


def model_cache_key(model: Any, in_shape: tuple[int, ...]) -> Any:
    """Key under which models of identical config and input share traced work, or None.

    Only classes that declare ``_config_determines_model = True`` (the built-ins: their
    config fully determines init and apply) are shared; adapters and user models that
    carry code or captured values never are.
    """
    cls = type(model)
    if not (getattr(cls, "_config_determines_model", False)
            and cls.__module__.startswith("modjax.")):  # user subclasses may hold more
        return None
    try:
        cfg = json.dumps(model.get_config(), sort_keys=True)
    except (TypeError, ValueError):
        return None
    return (type(model), cfg, in_shape, getattr(model, "output_shape", None))


_SHAPE_CACHE: dict[Any, tuple[Any, Any, Any]] = {}


def _model_node_shapes(node: ModelNode, src: str, in_shape: tuple[int, ...],
                       target: Any, is_tail: bool) -> NodeShapes:
    model = node.model
    declared = _declared_input(model)
    if declared is not None and tuple(declared) != in_shape:
        raise ShapeMismatchError(
            f"node {node.label!r} expects input shape {tuple(declared)} but its upstream {src} "
            f"produces {in_shape}")
    requested = target if is_tail and isinstance(target, tuple) else None
    try:
        if callable(getattr(model, "build", None)):
            model.build(in_shape, requested)
        ckey = model_cache_key(model, in_shape)
        if ckey is not None and ckey in _SHAPE_CACHE:
            params, state, y = _SHAPE_CACHE[ckey]
        else:
            key = jax.random.key(0)
            params, state = jax.eval_shape(lambda k: model.init(k, in_shape), key)
            y = jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, state,
                               _sds(in_shape))
            if ckey is not None:
                if len(_SHAPE_CACHE) > 4096:
                    _SHAPE_CACHE.clear()
                _SHAPE_CACHE[ckey] = (params, state, y)
    except ShapeMismatchError as e:
        raise ShapeMismatchError(f"node {node.label!r} (input {in_shape} from {src}): {e}") from e
    except Exception as e:  # any tracing failure is reported against the node
        raise ShapeMismatchError(
            f"node {node.label!r} ({type(model).__name__}) cannot take input of shape "
            f"{in_shape} from {src}: {type(e).__name__}: {e}") from e
    if not hasattr(y, "shape") or y.shape[:1] != (_BATCH,):
        raise ShapeMismatchError(
            f"node {node.label!r}: its model must return a batched array (batch axis first); "
            f"got {getattr(y, 'shape', type(y).__name__)} for a batch of {_BATCH}")
    out = tuple(y.shape[1:])
    declared_out = _declared_output(model)
    if declared_out is not None and tuple(declared_out) != out:
        raise ShapeMismatchError(
            f"node {node.label!r} declares output shape {tuple(declared_out)} but its model "
            f"produces {out} from input {in_shape}")
    return NodeShapes((in_shape,), out, target, params, state)


def _merge_node_shapes(node: MergeNode, srcs: list[str], in_shapes: list[tuple[int, ...]],
                       targets: list[Any]) -> NodeShapes:
    try:
        y = jax.eval_shape(lambda xs: node.merge(xs), [_sds(s) for s in in_shapes])
    except Exception as e:
        detail = ", ".join(f"{s} {sh}" for s, sh in zip(srcs, in_shapes))
        if isinstance(e, ShapeMismatchError):
            raise
        raise ShapeMismatchError(
            f"{type(node).__name__} {node.label!r} cannot merge {detail}: "
            f"{type(e).__name__}: {e}") from e
    target = None
    if any(t is not None for t in targets):
        abstract = [None if t is None else jax.tree.map(_sds, t, is_leaf=lambda v: isinstance(
            v, tuple)) for t in targets]
        try:
            t_out = jax.eval_shape(lambda ts: node.merge_targets(ts), abstract)
        except Exception as e:
            detail = ", ".join(f"{s} {t}" for s, t in zip(srcs, targets))
            raise ShapeMismatchError(
                f"{type(node).__name__} {node.label!r} cannot merge the targets {detail} with "
                f"strategy {node.target_strategy!r}: {e}") from e
        target = None if t_out is None else jax.tree.map(lambda a: tuple(a.shape[1:]), t_out)
    return NodeShapes(tuple(in_shapes), tuple(y.shape[1:]), target)


def _offer_target_source(nid: str, nodes: Mapping[str, Any], topo: Topology) -> None:
    """Give a model that asks for it (``bind_target_source``) the FeatureSet reference
    whose targets reach it through model nodes, before it is built: a classifier counts
    its classes there. Nothing is offered through merge nodes."""
    bind = getattr(nodes[nid].model, "bind_target_source", None)
    if not callable(bind):
        return
    item = topo.inputs[nid][0]
    while isinstance(item, str):
        if not isinstance(nodes[item], ModelNode):
            return
        item = topo.inputs[item][0]
    bind(item)


def infer_shapes(nodes: Mapping[str, Any], topo: Topology) -> dict[str, NodeShapes]:
    """Shapes of every node, in topological order.

    Raises:
        ShapeMismatchError: naming the node, its upstream and both shapes.
    """
    shapes: dict[str, NodeShapes] = {}
    for nid in topo.order:
        node = nodes[nid]
        in_shapes, targets, srcs = [], [], []
        for item in topo.inputs[nid]:
            srcs.append(_describe(item, nodes))
            if isinstance(item, str):
                in_shapes.append(shapes[item].output_shape)
                targets.append(shapes[item].target_shape)
            else:
                in_shapes.append(tuple(int(s) for s in item.feature_shape))
                targets.append(featureset_target_shape(item))
        if isinstance(node, ModelNode):
            _offer_target_source(nid, nodes, topo)
            shapes[nid] = _model_node_shapes(node, srcs[0], in_shapes[0], targets[0],
                                             not topo.downstream[nid])
        else:
            shapes[nid] = _merge_node_shapes(node, srcs, in_shapes, targets)
    return shapes
