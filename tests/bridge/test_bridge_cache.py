"""graph_has_bridges is cached per graph definition: a mutated graph is walked again."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from bridge_helpers import make_featureset  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

from modjax import Linear, ModelGraph, ModelNode  # noqa: E402
from modjax.bridge import ScikitModelWrapper  # noqa: E402
from modjax.train.phases import graph_has_bridges as has_bridges  # noqa: E402


def test_replacing_a_node_by_a_bridged_one_changes_the_answer_both_ways():
    fs = make_featureset(n=40)
    ref = fs.reference(features=[f"x{i}" for i in range(4)])
    graph = ModelGraph([ModelNode("m", Linear(1), upstream_ref=ref)]).build(key=0)
    assert has_bridges(graph) is False
    assert has_bridges(graph) is False  # the cached answer
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    est = Ridge().fit(x, x.sum(axis=1))
    graph.replace_node("m", ModelNode("m", ScikitModelWrapper(est), upstream_ref=ref))
    assert has_bridges(graph) is True
    graph.replace_node("m", ModelNode("m", Linear(1), upstream_ref=ref))
    assert has_bridges(graph) is False
