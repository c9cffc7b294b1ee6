"""An EvalPhase reuses its resolved feeds, plans and program between executes, and
re-resolves them whenever the graph, the data, a split or the phase's settings change."""

from __future__ import annotations

import numpy as np

from modjax import AppliedLoss, EvalPhase, InputBinding
from tests.train.train_helpers import make_featureset, make_mlp_graph


def _eval(split: str = "val", **kw) -> EvalPhase:
    return EvalPhase("ev", input_sources=[InputBinding.for_evaluation(node="mlp", split=split)],
                     losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])], **kw)


def _outputs(res) -> np.ndarray:
    return np.asarray(res.stacked_tensors("mlp", "outputs")).reshape(-1)


def _fresh(graph, split: str = "val", **kw):
    return _eval(split, **kw).execute(graph)


def test_a_second_execute_reuses_the_resolved_pass_and_gives_identical_results(fresh_context):
    fs = make_featureset(n=96)
    graph = make_mlp_graph(fs)
    phase = _eval()
    first = phase.execute(graph)
    memo = phase._memo
    second = phase.execute(graph)
    assert phase._memo is memo
    np.testing.assert_array_equal(_outputs(first), _outputs(second))
    assert first.metrics.last("mlp.mse") == second.metrics.last("mlp.mse")
    # other variables go through the same memo and give the other model's outputs
    v = graph.variables
    scaled = {**v, "params": __import__("jax").tree.map(lambda a: a * 2.0, v["params"])}
    third = phase.execute(graph, variables=scaled)
    assert phase._memo is memo
    assert not np.allclose(_outputs(third), _outputs(first))


def test_a_transform_of_the_data_is_seen_by_the_next_execute(fresh_context):
    fs = make_featureset(n=96)
    graph = make_mlp_graph(fs)
    phase = _eval()
    before = _outputs(phase.execute(graph))
    fs.fit_transform("StandardScaler", domain="features", fit_to_split="train")
    after = _outputs(phase.execute(graph))
    np.testing.assert_array_equal(after, _outputs(_fresh(graph)))
    assert not np.allclose(after, before)


def test_a_redefined_split_is_seen_by_the_next_execute(fresh_context):
    fs = make_featureset(n=96)
    graph = make_mlp_graph(fs)
    phase = _eval()
    assert _outputs(phase.execute(graph)).shape == (24,)
    fs.remove_split("val")
    fs.add_split(fs.take(np.arange(10)), "val")
    out = _outputs(phase.execute(graph))
    assert out.shape == (10,)
    np.testing.assert_array_equal(out, _outputs(_fresh(graph)))


def test_a_changed_batch_size_loss_list_or_graph_is_seen(fresh_context):
    fs = make_featureset(n=96)
    graph = make_mlp_graph(fs)
    phase = _eval()
    phase.execute(graph)
    memo = phase._memo
    phase.batch_size = 5
    res = phase.execute(graph)
    assert phase._memo is not memo
    assert res.epochs[0].loss.shape == (5,)  # 24 rows in 5 batches of 5
    phase.losses = []
    assert "mlp.mse" not in phase.execute(graph).metrics.names
    other = make_mlp_graph(fs, hidden=4, register=False)
    np.testing.assert_array_equal(_outputs(phase.execute(other)),
                                  _outputs(_fresh(other, batch_size=5)))
