"""ModularML's training-side spellings: the results query layer (losses/metrics/where/
collapse/callbacks/artifacts), Evaluation.from_split(every_n_epochs=), exec_ctx hooks,
short loss names, Experiment.preview_run and CrossValidation's fold accessors."""

import jax
import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    Callback,
    CrossValidation,
    CVBinding,
    EvalLossMetric,
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
from modjax.train.query import AxisSeries


class EpochLog(Callback):
    """Written the ModularML way: keyword-only hook taking exec_ctx, no **kw."""

    def __init__(self) -> None:
        super().__init__(label="EpochLog")
        self.seen = []

    def on_epoch_end(self, *, experiment, phase, exec_ctx, results=None):
        self.seen.append((exec_ctx.phase_label, exec_ctx.epoch_idx, exec_ctx.batch_idx))


@pytest.fixture()
def setup():
    exp = Experiment(label="query", registration_policy="overwrite")
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict("Q", {"x": rng.standard_normal((40, 3)).astype(np.float32),
                                    "y": rng.standard_normal((40, 1)).astype(np.float32)},
                              "x", "y")
    fs.split_random(ratios={"train": 0.8, "val": 0.2}, seed=1)
    node = ModelNode("Head", SequentialMLP(output_shape=(1, 1), n_layers=1), fs.reference())
    graph = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build()
    loss = AppliedLoss(loss=Loss("mse"), on=node, inputs=["outputs", "targets"])
    return exp, fs, node, graph, loss


def test_query_layer_over_a_training_run(setup):
    exp, _, node, _, loss = setup
    ev = Evaluation.from_split(label="val", split="val", losses=[loss], every_n_epochs=2,
                               metrics=[EvalLossMetric(loss=loss)])
    log = EpochLog()
    phase = TrainPhase.from_split("train", split="train", losses=[loss], n_epochs=3,
                                  sampler=SimpleSampler(batch_size=8, shuffle=True, seed=0),
                                  callbacks=[ev, log])
    res = exp.run_phase(phase)
    assert log.seen == [("train", 0, None), ("train", 1, None), ("train", 2, None)]
    losses = res.losses(node)
    assert losses.axes == ("epoch", "batch", "label") and losses.shape == {
        "epoch": 3, "batch": 4, "label": 1}
    per_epoch = losses.collapse("batch", "mean").collapse("label", "first")
    np.testing.assert_allclose([per_epoch[e] for e in range(3)], res.train_loss, rtol=1e-6)
    assert losses.where(label="mse").shape == losses.where(label="Head.mse").shape
    assert losses.where(epoch=[0, 2], batch=lambda b: b < 2).shape == {
        "epoch": 2, "batch": 2, "label": 1}
    val = res.metrics().where(name="val_loss")
    assert val.axis_values("epoch") == [1, 2]  # every 2nd epoch and the last one
    cb = res.callbacks().where(kind="Evaluation")
    assert cb.axis_values("epoch") == [1, 2]
    arts = res.artifacts().where(name="val")
    ev_last = arts.at(name="val", epoch=2, batch=None).value
    assert ev_last.aggregated_losses(node)["mse"] == pytest.approx(val.at(
        name="val_loss", epoch=2, batch=None), rel=1e-6)
    assert cb.where(epoch=2).one()["losses"]["Head.mse"] == pytest.approx(
        ev_last.aggregated_losses(node)["Head.mse"])
    with pytest.raises(KeyError, match="unknown axis 'epochs'"):
        losses.where(epochs=1)
    with pytest.raises(KeyError, match="no loss 'mae'"):
        ev_last.aggregated_losses(node)["mae"]


def test_short_loss_name_ambiguity_and_evaluation_arguments(setup):
    exp, fs, node, graph, loss = setup
    with pytest.raises(ValueError, match="every_n=3 and every_n_epochs=2 disagree"):
        Evaluation.from_split(label="v", split="val").__class__(
            eval_phase=Evaluation.from_split(label="v", split="val").eval_phase,
            every_n=3, every_n_epochs=2)
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        Evaluation.from_split(label="v", split="val", every_n_epochs=0)
    from modjax.train.results import LossAliases
    aliases = LossAliases({"A.mse": "A", "B.mse": "B", "B.mae": "B"})
    assert aliases.resolve("mae") == "B.mae"
    with pytest.raises(KeyError, match="'mse' is ambiguous"):
        aliases.resolve("mse")
    assert loss.node_id == node.node_id


def test_preview_run_changes_nothing(setup):
    exp, _, node, graph, loss = setup
    exp.execution_plan.add_phase(TrainPhase.from_split(
        "train", split="train", losses=[loss], n_epochs=2,
        sampler=SimpleSampler(batch_size=8, shuffle=True, seed=0)))
    before = jax.tree.map(np.asarray, graph.variables)
    res = exp.preview_run()
    assert res.get_train_result("train").n_epochs == 2 and exp.history == []
    after = jax.tree.map(np.asarray, graph.variables)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before),
                                                     jax.tree.leaves(after)))
    with pytest.raises(TypeError, match="preview_run\\(\\) got an unexpected keyword"):
        exp.preview_run(show_progres=False)


def test_cross_validation_fold_accessors(setup):
    exp, fs, node, _, loss = setup
    phase = TrainPhase.from_split("train", split="train", losses=[loss], n_epochs=2,
                                  sampler=SimpleSampler(batch_size=8, shuffle=False))
    cv = CrossValidation(label="CV", bindings=CVBinding(fs, ["train", "val"]), n_folds=3,
                         seed=0, phase=phase, experiment=exp)
    assert [p.label for p in cv.phase_template.all] == ["train"]
    out = cv.run(show_fold_progress=False)
    assert out.fold_labels == ["CV_fold0", "CV_fold1", "CV_fold2"]
    assert out.get_fold(1) is out.folds[1] and out.get_fold("CV_fold2") is out.folds[2]
    with pytest.raises(IndexError, match="3 folds, no fold 3"):
        out.get_fold(3)
    series = out.losses(node)
    assert series.axes == ("fold", "epoch", "batch", "label")
    assert series.axis_values("fold") == out.fold_labels
    last = out.collect(lambda f: f.get_train_result("train").train_loss[-1])
    assert isinstance(last, AxisSeries) and last.axes == ("fold",)
    assert [last[f] for f in out.fold_labels] == [
        f.get_train_result("train").train_loss[-1] for f in out.folds]
    # plain batch mean (the last, short batch counts as much as a full one here)
    means = out.epoch_losses(node).where(epoch=1).collapse("label", "first")
    for f in out.folds:
        raw = f.get_train_result("train").batch_losses(1)["Head.mse"]
        assert means[(f.label, 1)] == pytest.approx(float(np.mean(raw)), rel=1e-6)
