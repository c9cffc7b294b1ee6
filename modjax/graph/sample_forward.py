"""``ModelGraph.forward`` in ModularML's form: ``{(node_id, featureset_ref): SampleData}``.

modjax keys forward inputs by head-node label (or FeatureSet label) and returns arrays by
node label. ModularML code keys them by ``(head node id, FeatureSetReference)`` pairs and
gets ``{node_id: SampleData}`` back, targets and tags routed beside the features. When the
inputs use either ModularML spelling (a tuple key or a SampleData value), the graph answers
in that form; the computation is the same compiled forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modjax.errors import GraphStructureError
from modjax.graph.sample_data import SampleData, as_jax_array

__all__ = ["is_sample_form", "sample_forward"]


def is_sample_form(inputs: Mapping[Any, Any]) -> bool:
    """Whether forward inputs use ModularML's tuple keys or SampleData values.

    Example:
        >>> is_sample_form({"Head": [[1.0]]}), is_sample_form({("id", "ref"): [[1.0]]})
        (False, True)
    """
    return any(isinstance(k, tuple) for k in inputs) or any(
        isinstance(v, SampleData) for v in inputs.values())


def _label_of(graph: Any, key: Any) -> str:
    if not isinstance(key, tuple):
        return key
    if len(key) != 2:
        raise KeyError(f"graph {graph.label!r}: a forward key is a head label or a "
                       f"(node_id, FeatureSetReference) pair, got {key!r:.120}")
    node = graph._get(key[0], what="forward input node")
    ref = key[1]
    reads = [r for r in node.get_upstream_refs() if hasattr(r, "featureset_label")]
    label = getattr(ref, "featureset_label", None)
    if not any(r.featureset_label == label for r in reads):
        raise GraphStructureError(
            f"forward input ({key[0]!r}, {label!r}): node {node.label!r} reads "
            f"{[r.featureset_label for r in reads] or 'no FeatureSet'}")
    return node.label


def sample_forward(graph: Any, inputs: Mapping[Any, Any],
                   active_nodes: Iterable[Any] | None) -> dict[str, SampleData]:
    """Run ``graph.forward`` on ModularML-form inputs.

    Args:
        graph: a built ModelGraph.
        inputs: ``{(head node id, FeatureSetReference) or label: SampleData or array}``.
        active_nodes: as for ``ModelGraph.forward``.

    Returns:
        ``{node_id: SampleData}`` for every executed node: its output as features, and
        the targets/tags that reach it (merge nodes combine them by their strategies).
    """
    feats: dict[str, Any] = {}
    domains: dict[str, Any] = {}
    for key, value in inputs.items():
        label = _label_of(graph, key)
        sample = SampleData.of(value)
        feats[label] = as_jax_array(sample.features)
        domains[label] = {"targets": as_jax_array(sample.targets),
                          "tags": as_jax_array(sample.tags)}
    out = graph.forward(feats, active_nodes=active_nodes)
    targets = graph.route_targets(domains, active_nodes=active_nodes)
    tags = graph.route_tags(domains, active_nodes=active_nodes)
    ids = {n.label: nid for nid, n in graph.nodes.items()}
    return {ids[lab]: SampleData(features=y, targets=targets.get(lab), tags=tags.get(lab))
            for lab, y in out.items()}
