"""Graph nodes: ModelNode (wraps a model) and merge nodes (Concat, Add, Mean, Stack).

A node names its inputs with *upstream references*: a FeatureSet reference (the data
layer's ``FeatureSetReference``: the node is then a head and gets features from the
batch) or another node (held as a :class:`NodeReference` by label and id). Nodes carry
structure only; their variables live in the owning graph's ``variables`` pytree under
the node label.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from modjax.context import ExperimentNode
from modjax.errors import ConfigError, GraphStructureError, ShapeMismatchError
from modjax.graph.merge_inputs import MergeInputsMixin
from modjax.graph.merges import batched_axis, merge_concat, merge_mean, merge_stack, merge_sum
from modjax.graph.models.protocol import as_model
from modjax.graph.node_calls import ModelNodeCalls
from modjax.io.registry import deserialize, get_registered, register, serialize
from modjax.paths import validate_label

__all__ = [
    "NodeReference",
    "MergeStrategy",
    "GraphNode",
    "ModelNode",
    "MergeNode",
    "ConcatNode",
    "AddNode",
    "MeanNode",
    "StackNode",
    "is_featureset_ref",
    "ref_label",
]

MERGE_STRATEGIES = ("first", "last", "mean")


class MergeStrategy(enum.StrEnum):
    """How a merge node combines targets or tags (ModularML's ``MergeStrategy``).

    Members equal their lower-case names, so ``"first"`` and ``MergeStrategy.FIRST``
    are interchangeable. ``CONCAT`` means "along an axis": pass the int axis instead.

    Example:
        >>> MergeStrategy("mean") is MergeStrategy.MEAN, MergeStrategy.FIRST == "first"
        (True, True)
        >>> print(MergeStrategy.LAST)
        MergeStrategy.LAST
    """

    CONCAT = "concat"
    FIRST = "first"
    LAST = "last"
    MEAN = "mean"

    def __str__(self) -> str:
        return f"MergeStrategy.{self.name}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
             "circular": "wrap", "edge": "edge", "wrap": "wrap"}


@dataclasses.dataclass(frozen=True)
class NodeReference:
    """A pointer to another graph node, by label and (when known) id.

    Graphs resolve a reference by id first, then by label, so references survive
    a config round trip and still work when written by hand with a label only.

    Example:
        >>> NodeReference("Encoder").get_config()
        {'node_label': 'Encoder', 'node_id': None}
    """

    node_label: str
    node_id: str | None = None

    def get_config(self) -> dict[str, Any]:
        return {"node_label": self.node_label, "node_id": self.node_id}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NodeReference:
        return cls(config["node_label"], config.get("node_id"))

    def resolve(self, ctx: Any = None) -> Any:
        """The node this points at, from ``ctx`` (default: the active ExperimentContext),
        by id first, then by label."""
        from modjax.context import ExperimentContext

        ctx = ctx or ExperimentContext.get_active()
        if self.node_id is not None and ctx.has_node(node_id=self.node_id):
            return ctx.get_node(node_id=self.node_id)
        return ctx.get_node(label=self.node_label)


def is_featureset_ref(obj: Any) -> bool:
    """Whether ``obj`` is a FeatureSet reference (data layer contract, duck-typed)."""
    return hasattr(obj, "featureset_label") and hasattr(obj, "feature_shape")


def ref_label(ref: Any) -> str:
    """The label a reference points at (node label or FeatureSet label)."""
    return ref.node_label if isinstance(ref, NodeReference) else ref.featureset_label


def _as_ref(obj: Any, owner: str) -> Any:
    if isinstance(obj, NodeReference) or is_featureset_ref(obj):
        return obj
    if isinstance(obj, GraphNode):
        return NodeReference(obj.label, obj.node_id)
    if isinstance(obj, str):
        return NodeReference(obj)
    if callable(getattr(obj, "reference", None)):  # a FeatureSet: reference all its columns
        return obj.reference()
    raise TypeError(
        f"node {owner!r}: an upstream reference must be a GraphNode, a node label, a "
        f"NodeReference or a FeatureSetReference, got {type(obj).__name__}")


def _ref_config(ref: Any) -> dict[str, Any]:
    if isinstance(ref, NodeReference):
        return {"kind": "node", **ref.get_config()}
    return {"kind": "featureset", "ref": serialize(ref)}


def _ref_from_config(cfg: dict[str, Any]) -> Any:
    if cfg.get("kind") == "node":
        return NodeReference.from_config(cfg)
    if cfg.get("kind") == "featureset":
        return deserialize(cfg["ref"])
    raise ConfigError(f"unknown upstream reference config {cfg!r:.200}")


class GraphNode(ExperimentNode):
    """Base of every node in a ModelGraph: a label, an id and upstream references.

    Args:
        label: unique label (an identifier: it is also the node's key in ``variables``).
        upstream_refs: the node's inputs, in order.
        node_id: fixed id (used when loading).
        register: register in the active ExperimentContext.
    """

    #: Maximum number of upstream references (None: any number).
    max_upstream_refs: int | None = None

    def __init__(self, label: str, upstream_refs: Sequence[Any], *, node_id: str | None = None,
                 register: bool = True) -> None:
        validate_label(label, what="node label")
        refs = [_as_ref(r, label) for r in upstream_refs]
        if not refs:
            raise GraphStructureError(f"node {label!r} needs at least one upstream reference")
        super().__init__(label, node_id=node_id, register=register)
        self._upstream_refs = refs

    @ExperimentNode.label.setter
    def label(self, new_label: str) -> None:
        validate_label(new_label, what="node label")
        ExperimentNode.label.fset(self, new_label)

    def reference(self) -> NodeReference:
        """A :class:`NodeReference` to this node (label and id)."""
        return NodeReference(self.label, self.node_id)

    def get_upstream_refs(self) -> list[Any]:
        """The upstream references, in input order (a copy)."""
        return list(self._upstream_refs)

    @property
    def upstream_labels(self) -> list[str]:
        """Labels of the upstream nodes / FeatureSets, in input order."""
        return [ref_label(r) for r in self._upstream_refs]

    @property
    def backend(self) -> str:
        return "jax"

    def _set_upstream_refs(self, refs: Sequence[Any]) -> None:
        self._upstream_refs = list(refs)

    def get_config(self) -> dict[str, Any]:
        return {"label": self.label, "node_id": self.node_id,
                "upstream_refs": [_ref_config(r) for r in self._upstream_refs]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, upstream={self.upstream_labels})"


@register("ModelNode")
class ModelNode(ModelNodeCalls, GraphNode):
    """A node that runs one model on one input (ModularML's ``ModelNode``).

    Besides its place in a graph, a node can be built, called, frozen, read, written,
    saved and loaded on its own (see :class:`~modjax.graph.node_calls.ModelNodeCalls`).

    Args:
        label: unique node label (its key in ``variables["params"]``/``["state"]``).
        model: a model (see :mod:`modjax.graph.models`), a Flax module or an
            ``(init_fn, apply_fn)`` pair.
        upstream_ref: a FeatureSet reference (head node) or another node.
        optimizer: node-local optimizer for stage-wise training.
        node_id: fixed id (used when loading).
        register: register in the active ExperimentContext.

    Example:
        >>> from modjax import Identity
        >>> a = ModelNode("A", Identity(), upstream_ref=NodeReference("In"), register=False)
        >>> a.max_upstream_refs, a.upstream_labels, a.is_frozen
        (1, ['In'], False)
    """

    max_upstream_refs = 1

    def __init__(self, label: str, model: Any, upstream_ref: Any, optimizer: Any = None, *,
                 node_id: str | None = None, register: bool = True) -> None:
        if isinstance(upstream_ref, (list, tuple)):
            raise GraphStructureError(
                f"ModelNode {label!r} takes one upstream_ref, got {len(upstream_ref)}; merge "
                "several inputs with a ConcatNode/AddNode first")
        try:
            self._model = as_model(model)
        except TypeError as e:
            raise TypeError(f"ModelNode {label!r}: {e}") from None
        super().__init__(label, [upstream_ref], node_id=node_id, register=register)
        self._optimizer = optimizer
        self._frozen = False
        self._input_shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] | None = None

    @property
    def model(self) -> Any:
        return self._model

    @property
    def optimizer(self) -> Any:
        return self._optimizer

    @property
    def upstream_ref(self) -> Any:
        return self._upstream_refs[0]

    @property
    def is_frozen(self) -> bool:
        """Whether the whole node is frozen (set through ``ModelGraph.freeze``)."""
        return self._frozen

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape (known after the graph is built)."""
        return self._input_shape or getattr(self._model, "input_shape", None)

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-sample output shape (known after the graph is built)."""
        return self._output_shape or getattr(self._model, "output_shape", None)

    @property
    def backend(self) -> str:
        """``"jax"`` for native models; bridges report ``"torch"`` / ``"scikit"``."""
        return str(getattr(self._model, "backend", "jax"))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["model"] = serialize(self._model)
        opt = self._optimizer
        cfg["optimizer"] = None if opt is None else serialize(opt)
        cfg["frozen"] = self._frozen
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any], *, register: bool = True,
                    allow_packaged_code: bool = False) -> ModelNode:
        """Rebuild from :meth:`get_config` (structure only; values come with the graph)."""
        mcfg = config["model"]
        mcls = get_registered(mcfg["class"], module=mcfg.get("module"),
                              allow_packaged_code=allow_packaged_code)
        try:
            model = mcls.from_config(mcfg.get("config", {}),
                                     allow_packaged_code=allow_packaged_code)
        except TypeError:
            model = mcls.from_config(mcfg.get("config", {}))
        opt = None if config.get("optimizer") is None else deserialize(config["optimizer"])
        node = cls(config["label"], model, _ref_from_config(config["upstream_refs"][0]), opt,
                   node_id=config.get("node_id"), register=register)
        node._frozen = bool(config.get("frozen", False))
        return node


def _as_strategy(value: Any, owner: str, what: str) -> Any:
    if isinstance(value, bool):
        raise TypeError(f"node {owner!r}: {what} must be an int, a strategy or a node")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, MergeStrategy) and value is MergeStrategy.CONCAT:
        raise ValueError(f"node {owner!r}: {what} MergeStrategy.CONCAT needs an axis; pass "
                         "the int axis to concatenate along instead")
    if isinstance(value, str):
        if str.lower(value) in MERGE_STRATEGIES:
            return MergeStrategy(str.lower(value))
        raise ValueError(
            f"node {owner!r}: unknown {what} {value!r}; expected an int axis, one of "
            f"{list(MERGE_STRATEGIES)}, or a node instance / NodeReference to take it from")
    if isinstance(value, GraphNode):
        return NodeReference(value.label, value.node_id)
    if isinstance(value, NodeReference) or is_featureset_ref(value):
        return value
    raise TypeError(f"node {owner!r}: {what} must be an int, a strategy name or a node, "
                    f"got {type(value).__name__}")


def _strategy_config(s: Any) -> Any:
    if isinstance(s, MergeStrategy):
        return s.value
    if isinstance(s, (int, str)):
        return s
    return _ref_config(s)


def _strategy_from_config(c: Any) -> Any:
    return _ref_from_config(c) if isinstance(c, dict) else c


class UpstreamKey(str):
    """A merge input's label (a plain ``str`` for lookups) that also resolves to the
    upstream node or FeatureSet, as ModularML's reference keys do.

    Example:
        >>> k = UpstreamKey("EncoderA", NodeReference("EncoderA"))
        >>> k == "EncoderA", k.ref.node_label
        (True, 'EncoderA')
    """

    ref: Any

    def __new__(cls, label: str, ref: Any) -> UpstreamKey:
        obj = super().__new__(cls, label)
        obj.ref = ref
        return obj

    def resolve(self) -> Any:
        """The upstream node (or FeatureSet) this input comes from."""
        return self.ref.resolve()


_batched_axis = batched_axis


class MergeNode(MergeInputsMixin, GraphNode):
    """Base of nodes that combine several upstream outputs (no parameters).

    Subclasses implement :meth:`merge` on batched arrays. Targets and tags are merged
    by a strategy: an int concatenates along that per-sample axis, ``"first"`` /
    ``"last"`` pick one input, ``"mean"`` averages, and a node reference picks the
    input coming from that node.
    """

    def __init__(self, label: str, upstream_refs: Sequence[Any], *,
                 target_strategy: Any = "first", tags_strategy: Any = "first",
                 node_id: str | None = None, register: bool = True) -> None:
        if isinstance(upstream_refs, (str, GraphNode)) or not isinstance(upstream_refs, Sequence):
            raise TypeError(f"merge node {label!r}: upstream_refs must be a list of nodes/refs")
        self.target_strategy = _as_strategy(target_strategy, label, "target strategy")
        self.tags_strategy = _as_strategy(tags_strategy, label, "tags strategy")
        super().__init__(label, upstream_refs, node_id=node_id, register=register)
        #: Per-input shapes and output shape, filled in by ``ModelGraph.build``.
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.output_shape: tuple[int, ...] | None = None

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample input shapes by upstream label (keys also ``.resolve()``)."""
        return self._input_shapes

    @input_shapes.setter
    def input_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        refs = {ref_label(r): r for r in getattr(self, "_upstream_refs", [])}
        self._input_shapes = {UpstreamKey(str(k), refs[k]) if k in refs else k: v
                              for k, v in shapes.items()}

    @property
    def is_built(self) -> bool:
        """Whether the output shape is known (graph build or :meth:`build`)."""
        return self.output_shape is not None

    def build(self, input_shapes: Mapping[Any, Any], *, includes_batch_dim: bool = False,
              backend: Any = None) -> None:
        """Infer the output shape from the inputs' shapes (what a graph build does).

        Args:
            input_shapes: shape per upstream (node, reference or label).
            includes_batch_dim: the shapes start with a batch axis (dropped).
            backend: ModularML's backend argument (accepted and ignored).

        Raises:
            ShapeMismatchError: the shapes cannot be merged (a ``ValueError``).
        """
        from modjax.backend_note import note_backend

        note_backend(type(self).__name__, backend)
        shapes = [tuple(int(d) for d in s) for s in self._ordered(input_shapes, "input_shapes")]
        if includes_batch_dim:
            shapes = [s[1:] for s in shapes]
        try:
            out = jax.eval_shape(self.merge, [jax.ShapeDtypeStruct((1, *s), jnp.float32)
                                              for s in shapes])
        except ShapeMismatchError:
            raise
        except (TypeError, ValueError) as e:
            raise ShapeMismatchError(f"{type(self).__name__} {self.label!r} cannot merge "
                                     f"{shapes}: {e}") from e
        self._check_strategies()
        self.input_shapes = dict(zip(self.upstream_labels, shapes))
        self.output_shape = tuple(out.shape[1:])

    # ------------------------------------------------------------ merging
    def merge(self, values: list[jax.Array]) -> jax.Array:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must implement merge")

    def _concat(self, values: list[jax.Array], axis: int) -> jax.Array:
        return jnp.concatenate(values, axis=_batched_axis(axis))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["target_strategy"] = _strategy_config(self.target_strategy)
        cfg["tags_strategy"] = _strategy_config(self.tags_strategy)
        return cfg

    @classmethod
    def _config_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        kw = {k: v for k, v in config.items() if k not in ("label", "upstream_refs", "node_id")}
        for k in ("target_strategy", "tags_strategy", "concat_axis_targets", "concat_axis_tags"):
            if k in kw:
                kw[k] = _strategy_from_config(kw[k])
        return kw

    @classmethod
    def from_config(cls, config: dict[str, Any], *, register: bool = True,
                    **_: Any) -> MergeNode:
        refs = [_ref_from_config(r) for r in config["upstream_refs"]]
        return cls(config["label"], refs, node_id=config.get("node_id"), register=register,
                   **cls._config_kwargs(config))


@register("ConcatNode")
class ConcatNode(MergeNode):
    """Concatenate upstream outputs along a per-sample axis (ModularML's ``ConcatNode``).

    Args:
        label: unique node label.
        upstream_refs: the inputs, in concatenation order.
        concat_axis: per-sample axis (no batch axis): for ``(1, 16)`` inputs, ``0``
            gives ``(2, 16)`` and ``-1`` gives ``(1, 32)``.
        concat_axis_targets: targets strategy (int axis, ``"first"``, ``"last"``,
            ``"mean"`` or a node).
        concat_axis_tags: tags strategy (same choices).
        pad_inputs: pad the non-concatenated axes to the largest input first.
        pad_mode: ``"constant"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        pad_value: fill value for constant padding.

    Example:
        >>> import jax.numpy as jnp
        >>> c = ConcatNode("C", ["A", "B"], concat_axis=-1, register=False)
        >>> c.merge([jnp.ones((2, 1, 3)), jnp.zeros((2, 1, 2))]).shape
        (2, 1, 5)
    """

    def __init__(self, label: str, upstream_refs: Sequence[Any], concat_axis: int = 0, *,
                 concat_axis_targets: Any = -1, concat_axis_tags: Any = -1,
                 pad_inputs: bool = False, pad_mode: str = "constant", pad_value: float = 0.0,
                 node_id: str | None = None, register: bool = True) -> None:
        if str(pad_mode).lower() not in PAD_MODES:
            raise ValueError(f"ConcatNode {label!r}: unknown pad_mode {pad_mode!r}; expected "
                             "'constant', 'reflect', 'replicate' or 'circular'")
        self.concat_axis = int(concat_axis)
        self.pad_inputs = bool(pad_inputs)
        self.pad_mode = str(pad_mode).lower()
        self.pad_value = float(pad_value)
        super().__init__(label, upstream_refs, target_strategy=concat_axis_targets,
                         tags_strategy=concat_axis_tags, node_id=node_id, register=register)

    @property
    def target_axis(self) -> int:
        """Targets concatenation axis (only when the strategy is an int)."""
        if not isinstance(self.target_strategy, int):
            raise TypeError(f"ConcatNode {self.label!r} merges targets with "
                            f"{_strategy_config(self.target_strategy)!r}, not along an axis")
        return self.target_strategy

    @property
    def tags_axis(self) -> int:
        """Tags concatenation axis (only when the strategy is an int)."""
        if not isinstance(self.tags_strategy, int):
            raise TypeError(f"ConcatNode {self.label!r} merges tags with "
                            f"{_strategy_config(self.tags_strategy)!r}, not along an axis")
        return self.tags_strategy

    def _pad(self, values: list[jax.Array], axis: int) -> list[jax.Array]:
        ndim = values[0].ndim
        ax = _batched_axis(axis) % ndim
        target = [max(v.shape[d] for v in values) for d in range(ndim)]
        out = []
        for v in values:
            widths = [(0, 0 if d in (0, ax) else target[d] - v.shape[d]) for d in range(ndim)]
            mode = PAD_MODES[self.pad_mode]
            kw = {"constant_values": self.pad_value} if mode == "constant" else {}
            out.append(jnp.pad(v, widths, mode=mode, **kw) if any(w[1] for w in widths) else v)
        return out

    def _concat(self, values: list[jax.Array], axis: int) -> jax.Array:
        who, names = f"ConcatNode {self.label!r}", self.upstream_labels
        if self.pad_inputs and len({v.ndim for v in values}) == 1:
            values = self._pad(values, axis)
        return merge_concat(values, axis, who, names, hint="; set pad_inputs=True to pad them")

    def merge(self, values: list[jax.Array]) -> jax.Array:
        return self._concat(list(values), self.concat_axis)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["concat_axis_targets"] = cfg.pop("target_strategy")
        cfg["concat_axis_tags"] = cfg.pop("tags_strategy")
        cfg.update(concat_axis=self.concat_axis, pad_inputs=self.pad_inputs,
                   pad_mode=self.pad_mode, pad_value=self.pad_value)
        return cfg


@register("AddNode")
class AddNode(MergeNode):
    """Element-wise sum of equally shaped inputs (a residual join).

    Example:
        >>> import jax.numpy as jnp
        >>> AddNode("S", ["A", "B"], register=False).merge(
        ...     [jnp.ones((1, 2)), jnp.ones((1, 2))]).tolist()
        [[2.0, 2.0]]
    """

    def merge(self, values: list[jax.Array]) -> jax.Array:
        return merge_sum(values, f"AddNode {self.label!r}", self.upstream_labels)


@register("MeanNode")
class MeanNode(MergeNode):
    """Element-wise mean of equally shaped inputs (an ensemble average).

    Example:
        >>> import jax.numpy as jnp
        >>> MeanNode("M", ["A", "B"], register=False).merge(
        ...     [jnp.zeros((1, 2)), jnp.ones((1, 2))]).tolist()
        [[0.5, 0.5]]
    """

    def merge(self, values: list[jax.Array]) -> jax.Array:
        return merge_mean(values, f"MeanNode {self.label!r}", self.upstream_labels)


@register("StackNode")
class StackNode(MergeNode):
    """Stack equally shaped inputs along a new per-sample axis.

    Args:
        axis: position of the new per-sample axis (``0``: ``(n_inputs, *shape)``).

    Example:
        >>> import jax.numpy as jnp
        >>> StackNode("S", ["A", "B"], register=False).merge(
        ...     [jnp.zeros((4, 3)), jnp.ones((4, 3))]).shape
        (4, 2, 3)
    """

    def __init__(self, label: str, upstream_refs: Sequence[Any], axis: int = 0, *,
                 target_strategy: Any = "first", tags_strategy: Any = "first",
                 node_id: str | None = None, register: bool = True) -> None:
        self.axis = int(axis)
        super().__init__(label, upstream_refs, target_strategy=target_strategy,
                         tags_strategy=tags_strategy, node_id=node_id, register=register)

    def merge(self, values: list[jax.Array]) -> jax.Array:
        return merge_stack(values, self.axis, f"StackNode {self.label!r}", self.upstream_labels)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg
