"""A wrong head width is caught before training, naming the node, the loss and shapes."""

from __future__ import annotations

import numpy as np
import pytest
from ux_helpers import classifier, regression

from modjax import (
    AppliedLoss,
    AppliedMetric,
    EvalPhase,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError


def test_classifier_head_narrower_than_the_classes():
    fs, graph = classifier(n_classes=5, width=3)
    before = np.asarray(graph.variables["params"]["clf"]["layer_0"]["kernel"]).copy()
    phase = TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                  losses=[AppliedLoss("sparse_cross_entropy", on="clf")])
    with pytest.raises(ShapeMismatchError,
                       match=r"'clf.sparse_cross_entropy'.*node 'clf'.*\(3,\).*0\.\.4.*"
                             r"output_shape=\(5,\)"):
        phase.execute(graph, show_training_progress=False)
    assert phase.n_traces == 0 and phase.epochs_run == 0
    np.testing.assert_array_equal(graph.variables["params"]["clf"]["layer_0"]["kernel"], before)
    ev = EvalPhase.from_split("t", split="test", metrics=[AppliedMetric("accuracy", on="clf")])
    with pytest.raises(ShapeMismatchError, match=r"AppliedMetric 'clf.accuracy'"):
        ev.execute(graph)


def test_encoder_used_as_regression_tail():
    fs, _ = regression()
    enc = ModelNode("enc", SequentialMLP(output_shape=(8,), n_layers=2, hidden_dim=16),
                    upstream_ref=fs.reference())
    graph = ModelGraph([enc], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    phase = TrainPhase.from_split("train", split="train", sampler=SimpleSampler(32, seed=0),
                                  losses=[AppliedLoss("mse", on="enc")])
    with pytest.raises(ShapeMismatchError,
                       match=r"'enc.mse'.*node 'enc'.*\(32, 8\).*\(32, 1\)"):
        phase.execute(graph, show_training_progress=False)
    assert phase.epochs_run == 0
