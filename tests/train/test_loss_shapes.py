"""The loss shape rule: size-1 axes are squeezed, anything else is a trace-time error.

A ``(B, 1, 1)`` prediction against ``(B, 1)`` targets used to broadcast to ``(B, B, 1)``
and train towards the target mean without any error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import make_featureset, mse_on, train_phase

from modjax import AppliedLoss, EvalPhase, Loss, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.errors import ShapeMismatchError


def _graph(fs, output_shape):
    node = ModelNode("mlp", SequentialMLP(output_shape=output_shape, n_layers=2, hidden_dim=8),
                     upstream_ref=fs.reference(), register=False)
    return ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2}),
                      register=False).build(key=0)


def test_trailing_one_output_trains_like_matching_output():
    """ModularML's spelling output_shape=(1, 1) on scalar targets trains exactly like (1,)."""
    fs = make_featureset(seed=0, register=False)
    g11, g1 = _graph(fs, (1, 1)), _graph(fs, (1,))
    # same initial weights: only the output's shape differs
    for a, b in zip(jax.tree.leaves(g11.variables), jax.tree.leaves(g1.variables)):
        np.testing.assert_array_equal(a, b)
    r11 = train_phase(n_epochs=4).execute(g11, show_training_progress=False)
    r1 = train_phase(n_epochs=4).execute(g1, show_training_progress=False)
    l11, l1 = r11.metrics.series("train_loss"), r1.metrics.series("train_loss")
    np.testing.assert_allclose(l11, l1, rtol=1e-5)
    # the broadcast bug kept the loss near the targets' variance (0.35 here); trained: < 0.1
    assert l11[-1] < 0.1
    ev = EvalPhase.from_split("e", split="val", losses=[mse_on("mlp")])
    v11 = ev.execute(g11).aggregated_losses("mlp")["mlp.mse"]
    v1 = ev.execute(g1).aggregated_losses("mlp")["mlp.mse"]
    assert v11 == pytest.approx(v1, rel=1e-5)


def test_mismatched_output_is_an_error_at_trace_time_naming_loss_node_and_shapes():
    fs = make_featureset(seed=0, register=False)
    g = _graph(fs, (2,))
    before = g.variables
    with pytest.raises(ShapeMismatchError, match=r"AppliedLoss 'mlp\.mse' \(Loss\('mse'\)\) on node "
                       r"'mlp': 'outputs' has shape \(32, 2\) but 'targets' has shape \(32, 1\)"):
        train_phase(n_epochs=1).execute(g, show_training_progress=False)
    assert g.variables is before
    with pytest.raises(ShapeMismatchError, match=r"on node 'mlp'.*\(64, 2\).*\(64, 1\)"):
        EvalPhase.from_split("e", split="val", losses=[mse_on("mlp")]).execute(g)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "bce", "bce_with_logits",
                                  "cross_entropy", "cosine"])
def test_every_elementwise_builtin_squeezes_or_refuses(name):
    p, t = jnp.full((4, 1, 1), 0.3), jnp.full((4, 1), 0.6)
    al = AppliedLoss(name, on="head")
    np.testing.assert_allclose(al.compute([p, t]), al.compute([p.reshape(4, 1), t]), rtol=1e-6)
    assert al.compute([p, t]).shape == (4,)
    with pytest.raises(ShapeMismatchError, match=rf"'head\.{name}'.*on node 'head'.*\(4, 3\)"):
        al.compute([jnp.zeros((4, 3)), t])
    kw = AppliedLoss(name, on="head", inputs={"target": "targets", "pred": "outputs"}
                     if name not in ("bce_with_logits", "cross_entropy")
                     else {"target": "targets", "logits": "outputs"})
    np.testing.assert_allclose(kw.compute([t, p]), al.compute([p, t]), rtol=1e-6)


def test_metric_learning_and_sparse_losses():
    a = jnp.arange(8.0).reshape(4, 2)
    trip = AppliedLoss("triplet", on="enc", inputs=["anchor.outputs", "positive.outputs",
                                                     "negative.outputs"])
    np.testing.assert_allclose(trip.compute([a, a[:, None, :], a + 1]), trip.compute([a, a, a + 1]))
    with pytest.raises(ShapeMismatchError, match=r"'negative\.outputs' has shape \(4, 3\)"):
        trip.compute([a, a, jnp.zeros((4, 3))])
    sce = AppliedLoss("sparse_cross_entropy", on="clf")
    logits, labels = jnp.array([[2.0, 0.0, -1.0]] * 4), jnp.array([0, 1, 2, 0])
    expect = sce.compute([logits, labels])
    np.testing.assert_allclose(sce.compute([logits, labels[:, None]]), expect)
    np.testing.assert_allclose(sce.compute([logits[:, None], labels]), expect)
    with pytest.raises(ShapeMismatchError, match=r"without its class axis has shape \(4,\) but "
                                                 r"'targets' has shape \(4, 2\)"):
        sce.compute([logits, jnp.zeros((4, 2))])


def test_custom_loss_is_squeezed_and_broadcasting_output_refused():
    sq = AppliedLoss(Loss(lambda p, t: (p - t) ** 2), on="head", label="sq")
    out = sq.compute([jnp.ones((4, 1, 1)), jnp.zeros((4, 1))])
    np.testing.assert_array_equal(out, np.ones(4))
    # different per-sample sizes are the callable's business (logits vs labels) ...
    ok = AppliedLoss(lambda lg, y: -jnp.take_along_axis(lg, y[:, None], 1)[:, 0], on="c",
                     label="nll")
    assert ok.compute([jnp.zeros((4, 3)), jnp.array([0, 1, 2, 0])]).shape == (4,)
    # ... but an output bigger per sample than any input is broadcasting
    bad = AppliedLoss(lambda p, t: (p[:, None, :] - t[None, :, :]), on="head", label="outer")
    with pytest.raises(ShapeMismatchError, match=r"AppliedLoss 'outer'.*on node 'head' returned "
                                                 r"shape \(4, 4, 2\)"):
        bad.compute([jnp.ones((4, 2)), jnp.zeros((4, 2))])
