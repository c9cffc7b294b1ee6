"""EvalPhase slices consecutive rows out of resident data: same results as a gather."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from modjax import AppliedLoss, EvalPhase, InputBinding
from modjax.data import IndexPlan
from tests.train.train_helpers import make_featureset, make_mlp_graph


@pytest.mark.parametrize("batch_size", [None, 7, 64, 500])
def test_eval_outputs_and_loss_match_the_forward_on_every_row(fresh_context, batch_size):
    fs = make_featureset(n=50)
    graph = make_mlp_graph(fs)
    ev = EvalPhase("ev", input_sources=[InputBinding.for_evaluation(node="mlp")],
                   losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
                   batch_size=batch_size)
    res = ev.execute(graph)
    x = jnp.asarray(fs.get_features())
    want = np.asarray(graph.apply(graph.variables, {"mlp": x})[0]["mlp"])
    got = res.stacked_tensors("mlp", "outputs")
    y = fs.get_targets().reshape(want.shape)
    np.testing.assert_allclose(res.metrics.last("mlp.mse"), np.mean((want - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    assert list(res.stacked_tensors("mlp", "sample_uuids")) == list(fs.sample_uuids)


def test_contiguous_plan_covers_each_row_once():
    p = IndexPlan.contiguous(10, 4)
    rows = p.indices["default"][p.mask["default"]]
    assert sorted(rows.tolist()) == list(range(10))
    assert p.indices["default"].shape == (3, 4)
