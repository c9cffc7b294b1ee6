"""The Checkpointing configuration/tracker (seed 001)."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from modjax.errors import CheckpointError, ConfigError
from modjax.io.checkpoints import load_pytree, save_pytree
from modjax.io.registry import deserialize, serialize
from modjax.train.checkpointing import Checkpointing, CheckpointWriteWarning


class _Holder:
    """Minimal parent: get_state/set_state and save/restore_checkpoint of a pytree."""

    def __init__(self):
        self.w = jnp.zeros(3)

    def get_state(self):
        return {"w": self.w}

    def set_state(self, s):
        self.w = s["w"]

    def save_checkpoint(self, path, overwrite=False):
        save_pytree(path, self.get_state(), overwrite=overwrite)

    def restore_checkpoint(self, path):
        self.set_state(load_pytree(path, target=self.get_state()))


def test_every_n_counts_per_hook_and_reset():
    ck = Checkpointing(save_on=["epoch_end", "batch_end"], every_n=3)
    ck.configure_for("phase")
    assert [ck.should_save("epoch_end") for _ in range(6)] == [False, False, True] * 2
    assert ck.should_save("batch_end") is False
    assert ck.should_save("phase_end") is False  # not in save_on
    ck.reset()
    assert [ck.should_save("epoch_end") for _ in range(3)] == [False, False, True]


def test_memory_mode_snapshots_and_max_to_keep():
    h = _Holder()
    ck = Checkpointing(mode="memory", max_to_keep=2)
    ck.configure_for("phase")
    for epoch in range(4):
        h.w = jnp.full(3, float(epoch))
        assert ck.maybe_save("epoch_end", h, key=epoch, phase="train", epoch=epoch)
    assert ck.saved_keys == [2, 3]
    assert ck.get_state(0) is None and ck.get_path(3) is None
    assert ck.has_key(2) and not ck.has_key(1)
    ck.restore(2, h)
    chex.assert_trees_all_equal(h.w, jnp.full(3, 2.0))
    with pytest.raises(CheckpointError, match=r"no memory checkpoint under key 0; saved keys: \[2, 3\]"):
        ck.restore(0, h)


def test_memory_snapshot_copies_numpy_leaves():
    ck = Checkpointing()
    arr = np.zeros(2)
    ck.record_memory("k", {"a": arr})
    arr[0] = 5.0
    assert ck.get_state("k")["a"][0] == 0.0


def test_disk_mode_writes_atomic_checkpoints_and_evicts(tmp_path):
    h = _Holder()
    ck = Checkpointing(mode="disk", directory=tmp_path, max_to_keep=2, every_n=2)
    ck.configure_for("phase")
    for epoch in range(6):
        h.w = jnp.full(3, float(epoch))
        ck.maybe_save("epoch_end", h, key=epoch, phase="fit", epoch=epoch)
    assert ck.saved_keys == [3, 5]
    assert ck.get_path(5) == tmp_path / "fit_epoch5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit_epoch3", "fit_epoch5"]
    ck.restore(3, h)
    chex.assert_trees_all_equal(h.w, jnp.full(3, 3.0))
    assert ck.get_state(3) is None


def test_disk_mode_without_directory_uses_parent_or_errors(tmp_path):
    h = _Holder()
    ck = Checkpointing(mode="disk", save_on="phase_end")
    ck.configure_for("phase")
    assert ck.name_template == "{phase}_{hook}"
    ck.maybe_save("phase_end", h, phase="p", directory=tmp_path / "exp")
    assert ck.saved_keys == ["p_phase_end"] and (tmp_path / "exp" / "p_phase_end").exists()
    with pytest.raises(CheckpointError, match=r"hook 'phase_end' has no directory"):
        ck.maybe_save("phase_end", h, phase="p")


def test_overwrite_false_refuses_existing(tmp_path):
    h = _Holder()
    ck = Checkpointing(mode="disk", directory=tmp_path, overwrite=False, name_template="fixed")
    ck.configure_for("phase")
    ck.maybe_save("epoch_end", h, phase="p", epoch=0)
    with pytest.raises(FileExistsError, match=r"fixed' already exists"):
        ck.maybe_save("epoch_end", h, phase="p", epoch=1)


@pytest.mark.parametrize("save_on,template,bad", [
    ("phase_start", "{phase}_{epoch}", "epoch"),
    ("epoch_end", "{phase}_{batch}", "batch"),
    ("epoch_end", "{label}", "label"),
])
def test_placeholder_not_allowed_for_phase_hook(save_on, template, bad):
    ck = Checkpointing(save_on=save_on, name_template=template)
    with pytest.raises(ConfigError, match=rf"placeholder\(s\) \['\{{{bad}\}}'\] not available for "
                                          rf"TrainPhase hook '{save_on}'"):
        ck.configure_for("phase")


def test_experiment_context_rules():
    with pytest.raises(ConfigError, match=r"hook 'epoch_end' is not available on Experiment"):
        Checkpointing(mode="disk").configure_for("experiment")
    with pytest.raises(ConfigError, match=r"must use mode='disk'"):
        Checkpointing(save_on="group_end").configure_for("experiment")
    with pytest.raises(ConfigError, match=r"\['\{epoch\}'\] not available for Experiment hook 'phase_end'"):
        Checkpointing(mode="disk", save_on="phase_end", name_template="{epoch}").configure_for(
            "experiment")
    ck = Checkpointing(mode="disk", save_on=["phase_end", "group_end"])
    ck.configure_for("experiment")
    assert ck.format_name(label="train", hook="group_end") == "train_group_end"


def test_constructor_validation():
    with pytest.raises(ConfigError, match=r"mode must be 'memory' or 'disk', got 'ram'"):
        Checkpointing(mode="ram")
    with pytest.raises(ConfigError, match=r"hook 'epoch_ends' is unknown"):
        Checkpointing(save_on="epoch_ends")
    with pytest.raises(ConfigError, match=r"every_n must be a positive int, got 0"):
        Checkpointing(every_n=0)
    with pytest.raises(ConfigError, match=r"placeholder \{0\}"):
        Checkpointing(name_template="ck_{0}")
    with pytest.raises(ConfigError, match=r"needs a value for 'epoch'"):
        Checkpointing(name_template="{epoch}").format_name(phase="x")


def test_config_round_trip_through_registry(tmp_path):
    ck = Checkpointing(mode="disk", save_on=["epoch_end"], every_n=2, directory=tmp_path,
                       name_template="{phase}-{epoch:03d}", max_to_keep=3, overwrite=False)
    cfg = serialize(ck)
    assert cfg["class"] == "Checkpointing"
    back = deserialize(cfg)
    assert back.get_config() == ck.get_config()
    assert back.format_name(phase="a", epoch=7) == "a-007"


def test_async_disk_checkpoints_finish_by_phase_end(tmp_path):
    from tests.io.seam_hosts import SeamGraph

    g = SeamGraph(seed=1).build()
    ck = Checkpointing(mode="disk", directory=tmp_path, max_to_keep=2)
    ck.configure_for("phase")
    expected = {}
    for epoch in range(4):
        g.train_step()
        expected[epoch] = g.variables
        ck.maybe_save("epoch_end", g, key=epoch, phase="train", epoch=epoch)
    ck.maybe_save("phase_end", g, phase="train")  # not in save_on, still waits
    assert ck._futures == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_epoch2", "train_epoch3"]
    assert ck.saved_keys == [2, 3]
    ck.restore(2, g)
    chex.assert_trees_all_equal(g.variables, expected[2])


def test_async_write_failure_warns_at_phase_end_and_is_not_listed(tmp_path):
    from modjax.io import async_writer

    class Failing:
        def save_checkpoint(self, path, *, overwrite=False, blocking=True):
            def boom():
                raise OSError(f"disk full while writing {path}")
            return async_writer.submit(boom)

    ck = Checkpointing(mode="disk", directory=tmp_path)
    ck.configure_for("phase")
    assert ck.maybe_save("epoch_end", Failing(), key=0, phase="p", epoch=0)
    with pytest.warns(CheckpointWriteWarning, match=r"p_epoch0' was not written \(OSError: "
                                                   r"disk full while writing .*p_epoch0\)"):
        ck.maybe_save("phase_end", Failing(), phase="p")
    assert ck.saved_keys == [] and ck.failures[0][0] == 0


def test_graph_save_checkpoint_non_blocking_snapshots_values(tmp_path):
    from tests.io.seam_hosts import SeamGraph

    g = SeamGraph(seed=2).build()
    before = g.variables
    fut = g.save_checkpoint(tmp_path / "c", blocking=False, meta={"async": True})
    g.train_step()  # training goes on while the write runs
    assert fut.result() == tmp_path / "c"
    h = SeamGraph(seed=3).build()
    h.restore_checkpoint(tmp_path / "c")
    chex.assert_trees_all_equal(h.variables, before)
    with pytest.raises(FileExistsError, match=r"c' already exists"):
        g.save_checkpoint(tmp_path / "c", blocking=False)
