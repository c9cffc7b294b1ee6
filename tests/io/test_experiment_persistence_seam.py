"""ExperimentPersistence against the contract surface, with a minimal host experiment.

Real Experiment tests are in test_experiment_resume.py (resume exactness) and
test_experiment_history.py (history, frozen set, id collisions).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import FeatureSet
from modjax.context import ExperimentContext
from modjax.errors import CheckpointError
from modjax.io.registry import register
from modjax.train.checkpointing import Checkpointing
from modjax.train.persistence import ExperimentPersistence
from tests.io.seam_hosts import SeamGraph


class _Phase:
    def __init__(self, label, checkpointing=None):
        self.label, self.checkpointing = label, checkpointing


class _Plan:
    def __init__(self, phases):
        self.phases = phases


@register("SeamExperiment")
class SeamExperiment(ExperimentPersistence):
    def __init__(self, label="exp", seed=0):
        self.label, self.seed = label, seed
        self.model_graph = SeamGraph(seed=seed).build()
        self.epoch = 0
        self.key = jax.random.key(seed)
        self.history = []
        self.checkpointing = None
        self.execution_plan = _Plan([])

    def get_config(self):
        return {"label": self.label, "seed": self.seed}

    @classmethod
    def from_config(cls, cfg):
        return cls(**cfg)

    def get_state(self):
        g = self.model_graph
        return {"graph": {"variables": g.variables, "opt_state": g.opt_state},
                "epoch": self.epoch, "key": self.key, "history": list(self.history)}

    def set_state(self, s):
        if s["epoch"] < 0:
            raise ValueError("negative epoch")
        self.model_graph.set_variables(s["graph"]["variables"])
        self.model_graph.set_opt_state(s["graph"]["opt_state"])
        self.epoch, self.key, self.history = s["epoch"], s["key"], list(s["history"])

    def run_epoch(self):
        self.key, sub = jax.random.split(self.key)
        self.model_graph.train_step()
        noise = jax.random.normal(sub, ())
        self.epoch += 1
        self.history.append({"epoch": self.epoch, "loss": float(noise), "phase": "train"})


def _run(n, exp=None):
    exp = exp or SeamExperiment(seed=3)
    for _ in range(n):
        exp.run_epoch()
    return exp


def test_checkpoint_resume_is_bit_exact(tmp_path):
    exp = _run(2)
    exp.set_checkpoint_dir(tmp_path / "ck")
    p = exp.save_checkpoint("after2", meta={"note": "two"})
    assert p == tmp_path / "ck" / "after2"
    _run(3, exp)  # drift away
    fresh = SeamExperiment(seed=3)
    fresh.set_checkpoint_dir(tmp_path / "ck")
    fresh.restore_checkpoint("after2")
    assert fresh.epoch == 2 and len(fresh.history) == 2
    _run(2, fresh)
    straight = _run(4)
    chex.assert_trees_all_equal(fresh.model_graph.variables, straight.model_graph.variables)
    chex.assert_trees_all_equal(fresh.model_graph.opt_state, straight.model_graph.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(fresh.key), jax.random.key_data(straight.key))
    assert fresh.history == straight.history


def test_restore_graph_checkpoint_through_experiment(tmp_path):
    exp = _run(1)
    exp.set_checkpoint_dir(tmp_path)
    exp.model_graph.save_checkpoint(tmp_path / "g1")
    v = exp.model_graph.variables
    _run(1, exp)
    exp.restore_checkpoint("g1")
    chex.assert_trees_all_equal(exp.model_graph.variables, v)
    assert exp.epoch == 2  # only the graph was restored


def test_available_checkpoints_and_errors(tmp_path):
    exp = _run(1)
    with pytest.raises(CheckpointError, match=r"Experiment 'exp' has no checkpoint directory.*'c1'"):
        exp.save_checkpoint("c1")
    exp.set_checkpoint_dir(tmp_path / "ck")
    exp.save_checkpoint("c1")
    with pytest.raises(FileExistsError, match=r"c1' already exists"):
        exp.save_checkpoint("c1")
    ck = Checkpointing(mode="disk", directory=tmp_path / "ck" / "train")
    ck.configure_for("phase")
    exp.execution_plan = _Plan([_Phase("train", ck)])
    ck.maybe_save("epoch_end", exp.model_graph, phase="train", epoch=0)
    (tmp_path / "ck" / "junk").mkdir()
    assert set(exp.available_checkpoints) == {"c1", "train/train_epoch0"}
    with pytest.raises(CheckpointError, match=r"no checkpoint named 'c2'.*\['c1'"):
        exp.restore_checkpoint("c2")
    from modjax.io.checkpoints import save_pytree
    save_pytree(tmp_path / "other", {"w": jnp.ones(1)})
    with pytest.raises(TypeError, match=r"holds a 'pytree' artifact, neither"):
        exp.restore_checkpoint(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match=r"nothere.*does not exist"):
        exp.set_checkpoint_dir(tmp_path / "nothere", create=False)


def test_failed_set_state_leaves_experiment_unchanged(tmp_path):
    exp = _run(2)
    exp.set_checkpoint_dir(tmp_path)
    exp.epoch = -5
    exp.save_checkpoint("bad")
    exp.epoch = 2
    before = exp.get_state()
    with pytest.raises(ValueError, match="negative epoch"):
        exp.restore_checkpoint("bad")
    chex.assert_trees_all_equal(exp.get_state(), before)


def test_disable_checkpointing_is_scoped_and_nestable():
    exp = SeamExperiment()
    assert exp.checkpointing_enabled
    with exp.disable_checkpointing():
        with exp.disable_checkpointing():
            assert not exp.checkpointing_enabled
        assert not exp.checkpointing_enabled
    assert exp.checkpointing_enabled
    with pytest.raises(RuntimeError):
        with exp.disable_checkpointing():
            raise RuntimeError("boom")
    assert exp.checkpointing_enabled


def test_save_load_with_featuresets_and_checkpoints(tmp_path):
    with ExperimentContext(registration_policy="overwrite").activate():
        fs = FeatureSet.from_dict("cells", {"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0]},
                                  feature_keys="x", target_keys="y")
        fs.add_split(fs.take([0, 1]), "train")
        exp = _run(2)
        exp.set_checkpoint_dir(tmp_path / "ck")
        exp.save_checkpoint("mid")
        exp.save(tmp_path / "exp")
    with ExperimentContext().activate() as ctx:
        with pytest.warns(UserWarning, match=r"contains checkpoints; pass checkpoint_dir"):
            back = SeamExperiment.load(tmp_path / "exp")
        assert back.epoch == 2 and back.history == exp.history
        chex.assert_trees_all_equal(back.model_graph.variables, exp.model_graph.variables)
        loaded_fs = ctx.get_node("cells")
        assert loaded_fs.node_id == fs.node_id and loaded_fs.available_splits == ["train"]
    with ExperimentContext().activate():
        back = SeamExperiment.load(tmp_path / "exp", checkpoint_dir=tmp_path / "restored")
        assert set(back.available_checkpoints) == {"mid"}
        _run(1, back)
        back.restore_checkpoint("mid")
        assert back.epoch == 2
