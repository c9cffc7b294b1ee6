"""What feeds a phase: InputBinding (which data, sampler and stream reach a head node)
and Feed (a binding resolved against a graph: its device store and batch key).

A Feed's store is shared with every phase and evaluation reading the same rows and
columns (``modjax.data.device.shared_store``), so data goes to the device once per
FeatureSet version, not once per execute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.data.device import shared_store
from modjax.data.plan import IndexPlan
from modjax.data.references import FeatureSetReference
from modjax.errors import GraphStructureError, closest_names
from modjax.io.registry import register, serialize
from modjax.train.results import BindingRecord, EpochRecord
from modjax.train.step import DEFAULT_ROLE

__all__ = ["InputBinding", "Feed", "stack_feeds", "binding_records", "single_pass_record"]


def _graph_node(graph: Any, node: Any) -> Any:
    label = getattr(node, "label", node)
    for n in graph.nodes.values():
        if n.label == label or getattr(n, "node_id", None) == label:
            return n
    raise GraphStructureError(f"node {label!r} is not in graph {graph.label!r}; nodes like it: "
                              f"{closest_names(str(label), graph.node_labels)}")


def _fs_refs(node: Any) -> list[Any]:
    # by class: probing ``feature_shape`` would compute it (it resolves the FeatureSet)
    return [r for r in node.get_upstream_refs() if isinstance(r, FeatureSetReference)]


@register("InputBinding")
class InputBinding:
    """Which data (FeatureSet/split, sampler, stream) feeds a head node in one phase.

    Use :meth:`for_training` (with a sampler) or :meth:`for_evaluation` (all rows).
    ``upstream`` may be a FeatureSet, a FeatureSetView (fed as-is), a FeatureSet label,
    or None when the node reads a single FeatureSet.
    """

    def __init__(self, node: Any, *, upstream: Any = None, split: str | None = None,
                 sampler: Any = None, stream: str = DEFAULT_ROLE) -> None:
        self.node = getattr(node, "label", node)
        if not isinstance(self.node, str):
            raise TypeError(f"InputBinding: node must be a node or label, got {node!r}")
        self.upstream = upstream
        self.split = split
        self.sampler = sampler
        self.stream = stream

    @property
    def node_id(self) -> str:
        """Id of the node (ModularML's spelling), looked up by label in the active context."""
        from modjax.context import ExperimentContext

        return ExperimentContext.get_active().get_node(label=self.node).node_id

    @classmethod
    def for_training(cls, *, node: Any, sampler: Any, upstream: Any = None,
                     split: str | None = None, stream: str = DEFAULT_ROLE) -> InputBinding:
        """A binding that batches the data with ``sampler`` (required)."""
        if sampler is None:
            raise ValueError(f"InputBinding.for_training(node={getattr(node, 'label', node)!r}) "
                             "needs a sampler")
        return cls(node, upstream=upstream, split=split, sampler=sampler, stream=stream)

    @classmethod
    def for_evaluation(cls, *, node: Any, upstream: Any = None, split: str | None = None
                       ) -> InputBinding:
        """A binding that feeds every row of the FeatureSet/split, in order."""
        return cls(node, upstream=upstream, split=split)

    # ----------------------------------------------------------------- resolution
    def resolve(self, graph: Any, *, owner: str) -> tuple[Any, Any, Any, str]:
        """``(node, reference, view, batch_key)`` against ``graph``."""
        node = _graph_node(graph, self.node)
        refs = _fs_refs(node)
        if not refs:
            raise GraphStructureError(
                f"{owner}: InputBinding targets node {node.label!r}, which is not a head node (it "
                f"reads no FeatureSet; it is fed by {graph.upstream_of(node.label)}); bind one of "
                f"the head nodes {[n.label for n in graph.input_nodes.values()]}")
        up = self.upstream
        view = None
        if up is None:
            if len(refs) != 1:
                raise ValueError(f"{owner}: node {node.label!r} reads several FeatureSets "
                                 f"{[r.featureset_label for r in refs]}; pass upstream=")
            ref = refs[0]
        else:
            if hasattr(up, "indices") and hasattr(up, "source") and not hasattr(up, "splits"):
                view, fs_label = up, up.source.label
            else:
                fs_label = getattr(up, "label", up)
            match = [r for r in refs if r.featureset_label == fs_label]
            if not match:
                raise ValueError(f"{owner}: node {node.label!r} does not read FeatureSet "
                                 f"{fs_label!r}; it reads {[r.featureset_label for r in refs]}")
            ref = match[0]
        if view is None:
            fs = ref.resolve()
            if self.split is not None and self.split not in fs.available_splits:
                raise KeyError(f"{owner}: FeatureSet {fs.label!r} has no split {self.split!r}; "
                               f"splits: {fs.available_splits}")
            view = ref.to_view(self.split)
        key = node.label if len(refs) == 1 else ref.featureset_label
        return node, ref, view, key

    def get_config(self) -> dict[str, Any]:
        up = self.upstream
        up_cfg = None if up is None else getattr(getattr(up, "source", up), "label", up)
        return {"node": self.node, "upstream": up_cfg, "split": self.split,
                "sampler": None if self.sampler is None else serialize(self.sampler),
                "stream": self.stream}

    @classmethod
    def from_config(cls, config: dict[str, Any], **kw: Any) -> InputBinding:
        from modjax.io.registry import deserialize
        s = config.get("sampler")
        return cls(config["node"], upstream=config.get("upstream"), split=config.get("split"),
                   sampler=None if s is None else deserialize(s, **kw),
                   stream=config.get("stream", DEFAULT_ROLE))

    def __repr__(self) -> str:
        return (f"InputBinding(node={self.node!r}, split={self.split!r}, "
                f"sampler={type(self.sampler).__name__ if self.sampler else None})")


class Feed:
    """A resolved binding: device store + how to turn plans into its batch entry.

    Args:
        binding: the InputBinding.
        graph: the graph it is resolved against.
        owner: the phase, for error messages.
        mesh: device mesh of the store (None: one device).
        tags: tag columns the phase's losses read (those the view has are stored).
        byte_budget: device bytes allowed for the data (larger: streamed in chunks).
        shard_rows: with a mesh, give each device only the rows its slots read.
    """

    def __init__(self, binding: InputBinding, graph: Any, *, owner: str, mesh: Any,
                 tags: Sequence[str], byte_budget: int | None = None,
                 shard_rows: bool | None = None) -> None:
        self.binding = binding
        self.node, self.ref, self.view, self.key = binding.resolve(graph, owner=owner)
        tag_keys = [t for t in tags if t in self.view.tag_keys]
        # shared with every phase/evaluation reading the same rows and columns: the data
        # goes to the device once per FeatureSet version, not once per execute
        self.store = shared_store(self.view, features=list(self.ref.features),
                                  targets=list(self.ref.targets), tags=tag_keys,
                                  rep=self.ref.rep, mesh=mesh, byte_budget=byte_budget,
                                  shard_rows=shard_rows)
        self.sampler = binding.sampler
        if self.sampler is not None:
            src = getattr(self.sampler, "source", None)
            same = src is not None and src.source is self.view.source and np.array_equal(
                np.asarray(src.indices), np.asarray(self.view.indices))
            if not same:
                self.sampler.bind(self.view)
            streams = tuple(getattr(self.sampler, "roles", (DEFAULT_ROLE,)))
            if binding.stream != DEFAULT_ROLE and binding.stream not in streams:
                raise KeyError(f"{owner}: InputBinding of node {self.node.label!r} asks for stream "
                               f"{binding.stream!r}, but the sampler's streams are {list(streams)}")

    def select_stream(self, plan: IndexPlan) -> IndexPlan:
        s = self.binding.stream
        if s == DEFAULT_ROLE or s not in plan.indices or len(plan.indices) == 1:
            return plan
        return IndexPlan({DEFAULT_ROLE: plan.indices[s]}, {DEFAULT_ROLE: plan.mask[s]},
                         {DEFAULT_ROLE: plan.weights[s]})


def stack_feeds(feeds: Sequence[Feed], plans: Sequence[IndexPlan]) -> tuple[dict, dict]:
    """``(stores, device_plans)`` keyed by feed: one epoch's inputs of a compiled scan."""
    # without a mesh the numpy plan goes straight into the jitted call (its own transfer
    # is cheaper than an explicit device_put); with one it is padded and sharded
    pairs = {f.key: f.store.epoch_arrays(p) for f, p in zip(feeds, plans)}
    return {k: a for k, (a, _) in pairs.items()}, {k: p for k, (_, p) in pairs.items()}


def binding_records(feeds: Sequence[Feed], plans: Sequence[IndexPlan]
                     ) -> dict[str, BindingRecord]:
    """What each binding fed this epoch (host index/mask arrays, for the results)."""
    return {f.key: BindingRecord(f.key, f.node.label, f.view, f.ref, *_host_plan(p))
            for f, p in zip(feeds, plans)}


def single_pass_record(metrics: Mapping[str, Any], feeds: Sequence[Feed],
                        plans: Sequence[IndexPlan]) -> EpochRecord:
    """The one "epoch" of an EvalPhase/FitPhase pass."""
    return EpochRecord(0, np.asarray(metrics["loss"]),
                       {k: np.asarray(v) for k, v in metrics["losses"].items()},
                       metrics["records"], binding_records(feeds, plans))


def _host_plan(plan: IndexPlan) -> tuple[dict, dict]:
    return ({r: np.asarray(v) for r, v in plan.indices.items()},
            {r: np.asarray(v) for r, v in plan.mask.items()})
