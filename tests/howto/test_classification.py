"""Classification written the way a ModularML user writes a regression workflow: a
``SequentialMLP(output_shape=(1, C))`` head, integer or one-hot targets in the FeatureSet,
cross-entropy losses, accuracy as a metric (in training, in an ``Evaluation`` and in an
``EvalPhase``), and class probabilities from an ``EvalPhase``'s outputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    AppliedMetric,
    EvalMetric,
    EvalPhase,
    Evaluation,
    Experiment,
    FeatureSet,
    Loss,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ShapeMismatchError
from modjax.train import probabilities

C = 3


def _blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, C, size=240)
    x = rng.normal(scale=3.0, size=(C, 4))[y] + rng.normal(size=(240, 4))
    fs = FeatureSet.from_dict(label="Blobs", data={
        "x": list(x), "label": y.tolist(), "onehot": list(np.eye(C)[y])},
        feature_keys="x", target_keys=["label", "onehot"])
    fs.split_random(ratios={"train": 0.7, "test": 0.3}, seed=0)
    return fs


def _train(fs, target, loss_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the backend= notes
        ref = fs.reference(features="x", targets=target)
        node = ModelNode(label="clf", upstream_ref=ref,
                         model=SequentialMLP(output_shape=(1, C), n_layers=2, hidden_dim=16))
        graph = ModelGraph(nodes=[node], optimizer=Optimizer(
            "adam", opt_kwargs={"lr": 1e-2}, backend="torch"))
        graph.build(key=0)
        loss = AppliedLoss(loss=Loss(loss_name, backend="torch"), on=node,
                           inputs=["outputs", "targets"])
    acc = AppliedMetric("accuracy", on=node)
    val = Evaluation.from_split(label="val", split="test", losses=[loss],
                                metrics=[EvalMetric(metric=acc)])
    train = TrainPhase.from_split(label="train", split="train", losses=[loss], n_epochs=8,
                                  sampler=SimpleSampler(batch_size=32, shuffle=True, seed=0),
                                  metrics=[acc], callbacks=[val])
    return node, loss, acc, train


def test_integer_and_one_hot_targets_train_alike_with_accuracy_and_probabilities():
    fs = _blobs()
    runs = {}
    for target, loss_name in (("label", "sparse_cross_entropy"), ("onehot", "cross_entropy")):
        exp = Experiment(label=f"clf_{target}", registration_policy="overwrite")
        node, loss, acc, train = _train(fs, target, loss_name)
        tr = exp.run_phase(train, show_training_progress=False)
        ev = exp.run_phase(EvalPhase.from_split(label="test", split="test", losses=[loss],
                                                metrics=[acc]))
        runs[target] = (tr, ev)
    (tr_i, ev_i), (tr_o, ev_o) = runs["label"], runs["onehot"]
    # the same cross-entropy from integer labels and from one-hot rows
    np.testing.assert_allclose(tr_i.metrics.series("train_loss"),
                               tr_o.metrics.series("train_loss"), rtol=1e-5)
    assert len(tr_i.metrics.series("val_accuracy")) == 8
    logits = np.asarray(ev_i.stacked_tensors("clf", "outputs"))
    assert logits.shape == (72, 1, C)
    y_test = fs.get_split("test").get_targets(fmt="dict_numpy", targets="label")["label"]
    want = float(np.mean(logits[:, 0].argmax(-1) == np.asarray(y_test).reshape(-1)))
    assert ev_i.metrics.last("clf.accuracy") == pytest.approx(want, abs=1e-6)
    assert ev_o.metrics.last("clf.accuracy") == pytest.approx(want, abs=1e-6)
    assert want > 0.9 and tr_i.metrics.series("val_accuracy")[-1] == pytest.approx(want, abs=1e-6)
    # class probabilities out of the EvalPhase's outputs
    probs = np.asarray(probabilities(logits))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert (probs.argmax(-1) == logits.argmax(-1)).all()


def test_one_hot_loss_on_integer_labels_is_a_shape_error_naming_the_loss():
    fs = _blobs()
    exp = Experiment(label="clf_bad", registration_policy="overwrite")
    _, _, _, train = _train(fs, "label", "cross_entropy")
    with pytest.raises(ShapeMismatchError, match=r"'clf\.cross_entropy'.*\(32, 1, 3\).*\(32, 1\)"):
        exp.run_phase(train, show_training_progress=False)
