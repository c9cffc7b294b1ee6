"""Experiment save/load and experiment checkpoints carry the execution history and the
recorded metrics: results answer the same accessors after a reload."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    EvalPhase,
    Experiment,
    FeatureSet,
    InputBinding,
    ModelGraph,
    ModelNode,
    Optimizer,
    PhaseGroup,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.context import ExperimentContext
from modjax.errors import CheckpointError, GraphStructureError
from modjax.train.experiment import ExperimentRun
from modjax.train.history_io import history_from_payload, history_payload
from modjax.train.io import HISTORY_FILE
from modjax.train.results import BindingRecord, EpochRecord, TrainResults


def _experiment(n_epochs: int = 2) -> Experiment:
    exp = Experiment("hist", registration_policy="overwrite")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    fs = FeatureSet.from_dict("data", {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                                       "y": np.tanh(x.sum(1))}, ["a", "b", "c"], "y")
    fs.add_split(fs.take(np.arange(30)), "train")
    fs.add_split(fs.take(np.arange(30, 40)), "val")
    node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=2, hidden_dim=8),
                     upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    loss = AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])
    train = TrainPhase("train", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(8, shuffle=True, seed=1), split="train")],
        losses=[loss], n_epochs=n_epochs)
    val = EvalPhase("val", input_sources=[InputBinding.for_evaluation(node="mlp", split="val")],
                    losses=[loss], batch_size=4)
    exp.execution_plan.add_phase(train)
    exp.execution_plan.add_phase(val)
    return exp


def _flat(results):
    return results.flatten() if hasattr(results, "flatten") else {results.label: results}


def _assert_same_history(a, b):
    assert [(r.label, r.status, r.started_at, r.ended_at, r.error) for r in a] == \
        [(r.label, r.status, r.started_at, r.ended_at, r.error) for r in b]
    for ra, rb in zip(a, b):
        fa, fb = _flat(ra.results), _flat(rb.results)
        assert list(fa) == list(fb)
        for lbl in fa:
            pa, pb = fa[lbl], fb[lbl]
            assert type(pa) is type(pb)
            assert pa.metrics.names == pb.metrics.names
            for n in pa.metrics.names:
                assert pa.metrics.entries(n) == pb.metrics.entries(n)
            assert pa.epoch_indices == pb.epoch_indices
            assert pa.epoch_durations == pb.epoch_durations
            for e in pa.epoch_indices:
                chex.assert_trees_all_equal(pa.batch_losses(e), pb.batch_losses(e))
                np.testing.assert_array_equal(pa.epochs[e].loss, pb.epochs[e].loss)
            assert pa.aggregated_losses("mlp") == pb.aggregated_losses("mlp")
            np.testing.assert_array_equal(pa.stacked_tensors("mlp", "outputs"),
                                          pb.stacked_tensors("mlp", "outputs"))
            np.testing.assert_array_equal(pa.stacked_tensors("mlp", "sample_uuids"),
                                          pb.stacked_tensors("mlp", "sample_uuids"))
            assert pa.source_view("mlp").indices.tolist() == pb.source_view("mlp").indices.tolist()


def test_saved_experiment_keeps_history_and_metrics(tmp_path):
    exp = _experiment()
    exp.run(show_training_progress=False)
    exp.run_phase(exp.execution_plan.all[1])  # a second run: an eval phase alone
    train_loss = exp.history[0].results.get_train_result("train").train_loss
    assert len(train_loss) == 2 and len(exp.history) == 2
    exp.save(tmp_path / "exp")
    with ExperimentContext().activate():
        back = Experiment.load(tmp_path / "exp")
        assert len(back.history) == 2
        _assert_same_history(exp.history, back.history)
        assert back.history[0].results.get_train_result("train").train_loss == train_loss
        assert back.last_run.results.label == "val"
        # the reloaded results point at the reloaded graph and FeatureSet
        assert back.history[0].results.flatten()["train"].graph is back.model_graph
    exp.run_phase(exp.execution_plan.all[1])
    with pytest.raises(FileExistsError, match=r"exp' already exists; pass overwrite=True"):
        exp.save(tmp_path / "exp")
    exp.save(tmp_path / "exp", overwrite=True)
    with ExperimentContext().activate():
        assert len(Experiment.load(tmp_path / "exp").history) == 3


def test_experiment_checkpoint_restores_history(tmp_path):
    exp = _experiment(n_epochs=1)
    exp.set_checkpoint_dir(tmp_path / "ck")
    exp.run(show_training_progress=False)
    exp.save_checkpoint("after1")
    saved = list(exp.history)
    exp.run(show_training_progress=False)
    assert len(exp.history) == 2
    exp.restore_checkpoint("after1")
    assert len(exp.history) == 1
    _assert_same_history(saved, exp.history)


def test_failed_run_is_recorded_with_its_error(tmp_path):
    exp = _experiment(n_epochs=1)
    bad = EvalPhase("bad", input_sources=[InputBinding.for_evaluation(node="nope", split="val")])
    with pytest.raises(GraphStructureError, match="node 'nope' is not in graph"):
        exp.run_group(PhaseGroup("g", [bad]))
    runs, arrays = history_payload(exp.history)
    assert runs[0]["status"] == "failed" and runs[0]["error"]
    back = history_from_payload(runs, arrays)
    assert back[0].status == "failed" and back[0].error == exp.history[0].error
    assert back[0].results is None


def test_hand_built_results_round_trip_and_truncation_names_the_run():
    res = TrainResults("train", loss_nodes={"mlp.mse": "mlp"})
    res.add_epoch(EpochRecord(epoch=0, loss=np.array([0.5, 0.25], np.float32),
                              losses={"mlp.mse": np.array([0.5, 0.25], np.float32)},
                              started_at=1.0, ended_at=3.5))
    res.metrics.log("train_loss", 0.375, epoch=0)
    res.metrics.log("lr", 0.1, epoch=0, batch=1)
    res.best_epoch = np.int64(0)  # extra attributes set by callbacks are kept
    runs, arrays = history_payload([ExperimentRun("hist", status="completed", results=res)])
    back = history_from_payload(runs, arrays)[0].results
    assert type(back) is TrainResults and back.train_loss == [0.375]
    assert back.metrics.entries("lr") == [(0, 1, 0.1)] and back.best_epoch == 0
    assert back.epoch_durations == [2.5]
    np.testing.assert_array_equal(back.batch_losses(0)["mlp.mse"], [0.5, 0.25])
    with pytest.raises(CheckpointError, match=r"history\[0\] 'hist'.*incomplete"):
        history_from_payload(runs, {}, where="history")

    class LocalView:  # not registered: its binding cannot be written, the losses can
        indices = np.arange(2)

    res.epochs[0].bindings["mlp"] = BindingRecord(
        key="mlp", node="mlp", view=LocalView(), reference=None,
        indices={"default": np.zeros((2, 1), np.int32)}, mask={"default": np.ones((2, 1), bool)})
    with pytest.warns(UserWarning, match=r"epoch 0 binding 'mlp' is not saved.*LocalView"):
        runs, arrays = history_payload([ExperimentRun("hist", results=res)])
    back = history_from_payload(runs, arrays)[0].results
    assert back.epochs[0].bindings == {} and back.train_loss == [0.375]
    assert HISTORY_FILE == "history.json"


def test_experiment_load_follows_a_featureset_reloaded_under_a_new_id(tmp_path):
    exp = _experiment(n_epochs=1)
    fs = exp.ctx.get_node("data")
    fs.save(tmp_path / "fs")
    exp.save(tmp_path / "exp")
    with ExperimentContext().activate() as ctx:
        FeatureSet.load(tmp_path / "fs")  # the FeatureSet id is taken before the load
        with pytest.warns(UserWarning, match="overwriting registered node 'data'"):
            back = Experiment.load(tmp_path / "exp")  # the label follows the context policy
        reloaded = ctx.get_node("data")
        assert reloaded.node_id != fs.node_id
        ref = next(iter(back.model_graph.nodes.values())).upstream_ref
        assert ref.featureset_id == reloaded.node_id
    with ExperimentContext().activate() as ctx:
        FeatureSet.load(tmp_path / "fs")
        Experiment.load(tmp_path / "exp", overwrite=True)
        assert ctx.get_node("data").node_id == fs.node_id


def test_experiment_checkpoint_restores_the_frozen_set(tmp_path):
    exp = _experiment(n_epochs=1)
    exp.set_checkpoint_dir(tmp_path / "ck")
    g = exp.model_graph
    g.freeze(["mlp"])
    exp.save_checkpoint("frozen")
    g.unfreeze()
    exp.save_checkpoint("thawed")
    exp.restore_checkpoint("frozen")
    assert g.frozen_paths == {"mlp"}
    exp.restore_checkpoint("thawed")
    assert g.frozen_paths == set()
