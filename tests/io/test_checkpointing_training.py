"""Checkpointing attached to a real TrainPhase and Experiment."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from modjax import (
    AppliedLoss,
    Checkpointing,
    EarlyStopping,
    Experiment,
    FeatureSet,
    InputBinding,
    MetricCallback,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialMLP,
    SimpleSampler,
    TrainPhase,
)
from modjax.errors import ConfigError
from modjax.io import checkpoint_kind, open_artifact


def _experiment(phase_ck=None, exp_ck=None, n_epochs=3):
    exp = Experiment("exp", registration_policy="overwrite", checkpointing=exp_ck)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 10)).astype(np.float32)
    fs = FeatureSet.from_dict("data", {"x": x, "y": np.tanh(x.sum(1))}, "x", "y")
    fs.add_split(fs.take(np.arange(32)), "train")
    node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=3, hidden_dim=32),
                     upstream_ref=fs.reference())
    ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    phase = TrainPhase("train", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(16, shuffle=True, seed=1), split="train")],
        losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
        n_epochs=n_epochs, checkpointing=phase_ck)
    exp.execution_plan.add_phase(phase)
    return exp


def test_phase_and_experiment_checkpoints_on_disk(tmp_path):
    phase_ck = Checkpointing(mode="disk", save_on="epoch_end", max_to_keep=2)
    exp_ck = Checkpointing(mode="disk", save_on="phase_end")
    exp = _experiment(phase_ck, exp_ck)
    exp.set_checkpoint_dir(tmp_path)
    exp.run(show_training_progress=False)
    assert phase_ck.saved_keys == [1, 2]
    assert phase_ck.get_path(2) == tmp_path / "train" / "train_epoch2"
    names = exp.available_checkpoints
    assert set(names) == {"train_phase_end", "train/train_epoch1", "train/train_epoch2"}
    assert checkpoint_kind(names["train_phase_end"]) == "experiment_checkpoint"
    assert checkpoint_kind(names["train/train_epoch2"]) == "graph_checkpoint"
    final = exp.model_graph.variables
    # The last epoch's phase checkpoint holds the final variables.
    chex.assert_trees_all_equal(open_artifact(names["train/train_epoch2"]).restore("variables"),
                                final)
    exp.restore_checkpoint("train/train_epoch1")
    assert not np.array_equal(np.asarray(exp.model_graph.variables["params"]["mlp"]["layer_0"]["kernel"]),
                              np.asarray(final["params"]["mlp"]["layer_0"]["kernel"]))
    exp.restore_checkpoint("train_phase_end")
    chex.assert_trees_all_equal(exp.model_graph.variables, final)


def test_disable_checkpointing_suppresses_all(tmp_path):
    phase_ck = Checkpointing(mode="disk", save_on="epoch_end")
    exp = _experiment(phase_ck, Checkpointing(mode="disk", save_on="phase_end"), n_epochs=1)
    exp.set_checkpoint_dir(tmp_path)
    with exp.disable_checkpointing():
        exp.run(show_training_progress=False)
    assert exp.available_checkpoints == {} and phase_ck.saved_keys == []


def test_memory_mode_records_epoch_states(tmp_path):
    phase_ck = Checkpointing(mode="memory", save_on="epoch_end")
    exp = _experiment(phase_ck, n_epochs=2)
    exp.run(show_training_progress=False)
    assert phase_ck.saved_keys == [0, 1]
    snap = phase_ck.get_state(1)
    chex.assert_trees_all_equal(snap["variables"], exp.model_graph.variables)


def test_bad_hook_for_parent_is_refused():
    with pytest.raises(ConfigError, match=r"hook 'epoch_end' is not available on Experiment"):
        Experiment("bad", checkpointing=Checkpointing(mode="disk", save_on="epoch_end"))
    with pytest.raises(ConfigError, match=r"\['\{batch\}'\] not available for TrainPhase hook "
                                          r"'epoch_end'"):
        _experiment(Checkpointing(name_template="{phase}-{batch}"))


def test_batch_hooks_and_experiment_phase_group_hooks(tmp_path):
    seen = {}
    spy = MetricCallback("noop", lambda epoch, variables, **kw: (
        seen.__setitem__(epoch, variables), 0.0)[1])
    phase_ck = Checkpointing(mode="disk", save_on="batch_end", every_n=2,
                             name_template="{phase}_e{epoch}_b{batch}")
    exp_ck = Checkpointing(mode="disk", save_on=["phase_start", "group_end"],
                           name_template="{label}_{hook}")
    exp = _experiment(phase_ck, exp_ck, n_epochs=2)
    start = exp.model_graph.variables
    exp.execution_plan.all[0].add_callback(spy)
    exp.set_checkpoint_dir(tmp_path)
    exp.run(show_training_progress=False)
    # 2 batches per epoch: every 2nd batch_end is the last batch of each epoch
    assert phase_ck.saved_keys == ["train_e0_b1", "train_e1_b1"]
    for epoch in (0, 1):
        got = open_artifact(phase_ck.get_path(f"train_e{epoch}_b1")).restore(
            "variables", seen[epoch])
        chex.assert_trees_all_equal(got, seen[epoch])
    plan = exp.execution_plan.label
    assert set(exp.available_checkpoints) == {
        "train_phase_start", f"{plan}_group_end", "train/train_e0_b1", "train/train_e1_b1"}
    exp.restore_checkpoint("train_phase_start")
    chex.assert_trees_all_equal(exp.model_graph.variables, start)
    exp.restore_checkpoint(f"{plan}_group_end")
    chex.assert_trees_all_equal(exp.model_graph.variables, seen[1])


def test_early_stopping_restore_best_reads_the_disk_checkpoint(tmp_path):
    seen = {}
    scores = [3.0, 1.0, 2.0, 4.0]  # best epoch 1, not the last
    spy = MetricCallback("score", lambda epoch, variables, **kw: (
        seen.__setitem__(epoch, variables), scores[epoch])[1])
    es = EarlyStopping(monitor="score", patience=10, restore_best=True)
    ck = Checkpointing(mode="disk", save_on="epoch_end", directory=tmp_path)
    read = []
    original = ck.snapshot_for
    ck.snapshot_for = lambda key, like: (read.append(key), original(key, like))[1]
    exp = _experiment(ck, n_epochs=4)
    phase = exp.execution_plan.all[0]
    phase.add_callback(spy)
    phase.add_callback(es)
    exp.run(show_training_progress=False)
    assert es.best_epoch == 1 and read == [1] and ck.saved_keys == [0, 1, 2, 3]
    chex.assert_trees_all_equal(exp.model_graph.variables, seen[1])
    chex.assert_trees_all_equal(
        open_artifact(ck.get_path(1)).restore("variables", seen[1]), seen[1])
