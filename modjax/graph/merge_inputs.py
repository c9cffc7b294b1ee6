"""MergeInputsMixin: how a merge node routes its upstream inputs and merges targets/tags.

A mixin of :class:`~modjax.graph.nodes.MergeNode`: placing each input by its upstream
(node, reference or label), the ``forward`` of one batch, and the strategies that combine
targets and tags (an int axis, ``"first"``/``"last"``/``"mean"``, or the input from one
upstream node). It is kept apart from the node classes, which hold structure and config;
the host supplies ``label``, ``_upstream_refs``, ``upstream_labels``, ``merge``,
``_concat`` and the two strategies. The node classes are imported inside the methods
because :mod:`modjax.graph.nodes` imports this module while it loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from modjax.errors import GraphStructureError

__all__ = ["MergeInputsMixin"]


class MergeInputsMixin:
    """Input routing, ``forward`` and target/tag strategies of a merge node."""

    label: str
    target_strategy: Any
    tags_strategy: Any
    _upstream_refs: list[Any]

    def _input_position(self, key: Any) -> int:
        from modjax.graph.nodes import GraphNode, NodeReference, UpstreamKey

        if isinstance(key, GraphNode):
            key = key.reference()
        if isinstance(key, str) and not isinstance(key, UpstreamKey):
            key = NodeReference(key)
        if isinstance(key, UpstreamKey):
            key = key.ref
        return self._strategy_index(key)

    def _ordered(self, inputs: Mapping[Any, Any], what: str) -> list[Any]:
        slots: list[Any] = [None] * len(self._upstream_refs)
        for k, v in inputs.items():
            slots[self._input_position(k)] = v
        missing = [lab for lab, v in zip(self.upstream_labels, slots) if v is None]
        if missing:
            raise KeyError(f"merge node {self.label!r}: {what} has no entry for upstream "
                           f"{missing}; it needs one per input {self.upstream_labels}")
        return slots

    def forward(self, inputs: Mapping[Any, Any]) -> Any:
        """Merge one batch from each upstream.

        Args:
            inputs: ``{upstream node / reference / label: SampleData or array}``.

        Returns:
            SampleData with merged features, and targets/tags merged by the strategies
            (an array when the inputs are arrays; torch tensors when they came as torch).
        """
        from modjax.graph.sample_data import SampleData, as_jax_array, like_caller

        values = self._ordered(inputs, "inputs")
        samples = [SampleData.of(v) for v in values]
        feats = self.merge([as_jax_array(v.features) for v in samples])
        first = samples[0].features  # torch in, torch out
        if not any(isinstance(v, SampleData) for v in values):
            return like_caller(feats, first)
        targets = self.merge_targets([as_jax_array(v.targets) for v in samples])
        tags = self.merge_tags([as_jax_array(v.tags) for v in samples])
        return like_caller(SampleData(features=feats, targets=targets, tags=tags), first)

    def _merge_domain(self, values: list[Any], strategy: Any, domain: str) -> Any:
        present = [v for v in values if v is not None]
        if not present:
            return None
        if isinstance(strategy, int):
            if len(present) != len(values):
                raise ValueError(f"merge node {self.label!r}: cannot concatenate {domain} when "
                                 "some upstream inputs have none")
            return jax.tree.map(lambda *xs: self._concat(list(xs), strategy), *values)
        if strategy == "first":
            return values[0]
        if strategy == "last":
            return values[-1]
        if strategy == "mean":
            return jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *present)
        idx = self._strategy_index(strategy)
        return values[idx]

    def _strategy_index(self, ref: Any) -> int:
        from modjax.graph.nodes import NodeReference, ref_label

        for i, r in enumerate(self._upstream_refs):
            if isinstance(ref, NodeReference) and isinstance(r, NodeReference):
                if (ref.node_id and ref.node_id == r.node_id) or ref.node_label == r.node_label:
                    return i
            elif not isinstance(ref, NodeReference) and not isinstance(r, NodeReference):
                if ref_label(ref) == ref_label(r):
                    return i
        raise GraphStructureError(
            f"merge node {self.label!r} takes targets/tags from {ref_label(ref)!r}, which is not "
            f"one of its upstream inputs {self.upstream_labels}")

    def merge_targets(self, values: list[Any]) -> Any:
        """Combine the upstream targets with ``target_strategy``."""
        return self._merge_domain(values, self.target_strategy, "targets")

    def merge_tags(self, values: list[Any]) -> Any:
        """Combine the upstream tags with ``tags_strategy``."""
        return self._merge_domain(values, self.tags_strategy, "tags")

    def _check_strategies(self) -> None:
        for s in (self.target_strategy, self.tags_strategy):
            if not isinstance(s, (int, str)):
                self._strategy_index(s)
