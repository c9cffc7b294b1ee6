"""EvalPhase's pass: one loss transfer, and checks that still run on a reused memo."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.linear_model import Ridge  # noqa: E402
from train_helpers import make_featureset  # noqa: E402

from modjax import (  # noqa: E402
    AppliedLoss,
    EvalPhase,
    FitPhase,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
)
from modjax.bridge import ScikitModelWrapper  # noqa: E402


def _graph(fs):
    enc = ModelNode("enc", SequentialMLP(output_shape=(5,), n_layers=1, hidden_dim=8),
                    upstream_ref=fs.reference())
    sk = ModelNode("sk", ScikitModelWrapper(Ridge(alpha=0.1)), upstream_ref=enc)
    return ModelGraph([enc, sk], optimizer=Optimizer("adam")).build(key=0)


def test_a_reused_eval_memo_still_refuses_an_unfitted_bridged_node(fresh_context):
    fs = make_featureset(n=160)
    g = _graph(fs)
    unfitted = g.variables
    FitPhase.from_split("fit", split="train").execute(g)
    ev = EvalPhase.from_split("ev", split="val",
                              losses=[AppliedLoss("mse", on="sk", inputs=["outputs", "targets"])])
    ev.execute(g)
    memo = ev._memo
    g.set_variables(unfitted)  # same graph object, same definition: the memo is reused
    with pytest.raises(ValueError, match="scikit-learn node 'sk' is not fitted"):
        ev.execute(g)
    assert ev._memo is memo


def test_losses_of_the_pass_equal_a_hand_computed_mean(fresh_context):
    fs = make_featureset(n=160)
    g = _graph(fs)
    FitPhase.from_split("fit", split="train").execute(g)
    ev = EvalPhase.from_split("ev", split="val", batch_size=16, losses=[
        AppliedLoss("mse", on="sk", inputs=["outputs", "targets"]),
        AppliedLoss("mae", on="sk", inputs=["outputs", "targets"])])
    res = ev.execute(g)
    val = fs.get_split("val")
    out = np.asarray(g.forward({"enc": val.get_features()})["sk"]).reshape(-1)
    y = val.get_targets()[:, 0]
    assert res.metrics.last("sk.mse") == pytest.approx(np.mean((out - y) ** 2), rel=1e-5)
    assert res.metrics.last("sk.mae") == pytest.approx(np.mean(np.abs(out - y)), rel=1e-5)
    assert res.epochs[0].loss.shape == (3,)  # 40 rows in batches of 16
