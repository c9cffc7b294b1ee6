"""Checkpointing attached to a real TrainPhase and Experiment."""

from __future__ import annotations

import chex
import numpy as np
import pytest

from modjax.data import FeatureSet, SimpleSampler
from modjax.errors import ConfigError
from modjax.graph import ModelGraph, ModelNode, SequentialMLP
from modjax.io import checkpoint_kind, open_artifact
from modjax.train import AppliedLoss, Checkpointing, Experiment, InputBinding, Optimizer, TrainPhase


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
