"""Regression tests of persistence under faults: concurrent and interleaved writers, byte
flips, edited manifests and pointers, disk full, interrupted eviction, failed loads,
names and links that lead out of a directory. Each test names the guarantee it backs in
docs/persistence.md ("Guarantees")."""

from __future__ import annotations

import _thread
import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import FeatureSet, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.context import ExperimentContext
from modjax.errors import CheckpointError, ConfigError
from modjax.io import checkpoints as ck_mod
from modjax.io import load_pytree, save_pytree
from modjax.io.atomic import POINTER_FILE, artifact_lock, is_artifact, remove_artifact
from modjax.io.checkpoints import open_artifact, write_artifact
from modjax.train.checkpointing import Checkpointing, CheckpointWriteWarning
from tests.io.fault_tools import flip_byte, generation, largest_file, manifest, write_manifest
from tests.io.seam_hosts import SeamGraph
from tests.io.test_experiment_persistence_seam import SeamExperiment


def _perturbed(g: SeamGraph, k: float) -> None:
    g.set_variables({**g.variables, "params": jax.tree.map(lambda x: x + k,
                                                            g.variables["params"])})


def _fs_and_graph(label="cells"):
    rng = np.random.default_rng(0)
    fs = FeatureSet.from_dict(label, {"x": rng.normal(size=(16, 3)).astype(np.float32),
                                      "y": rng.normal(size=16).astype(np.float32)}, "x", "y")
    node = ModelNode("mlp", SequentialMLP(output_shape=(1,), n_layers=1, hidden_dim=4),
                     upstream_ref=fs.reference())
    g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-2})).build(key=0)
    return fs, g


# ------------------------------------------------------------------ interleaved writers
def test_async_then_blocking_save_of_one_path_keeps_the_last(tmp_path):
    """Guarantee: saves of one path land in the order they were made."""
    p = tmp_path / "ck"
    g = SeamGraph(seed=1).build()
    for _ in range(5):
        g.save_checkpoint(p, overwrite=True)
        fut = g.save_checkpoint(p, overwrite=True, blocking=False)
        _perturbed(g, 1.0)
        last = g.variables
        g.save_checkpoint(p, overwrite=True)
        assert fut.result() == p
        h = SeamGraph(seed=9).build()
        h.restore_checkpoint(p)
        chex.assert_trees_all_equal(h.variables, last)
    assert [c.name for c in p.iterdir() if c.name.startswith("gen-")] == [generation(p).name]


def test_interrupt_while_waiting_then_save_again_leaves_a_loadable_path(tmp_path, monkeypatch):
    """Ctrl-C during ``future.result()`` then another save: the path still loads."""
    p = tmp_path / "ck"
    g = SeamGraph(seed=1).build()
    g.save_checkpoint(p)
    real = ck_mod.save_trees

    def slow(*a, **k):
        time.sleep(0.6)
        return real(*a, **k)

    monkeypatch.setattr(ck_mod, "save_trees", slow)
    fut = g.save_checkpoint(p, overwrite=True, blocking=False)
    threading.Timer(0.1, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        fut.result()
    monkeypatch.setattr(ck_mod, "save_trees", real)
    _perturbed(g, 2.0)
    g.save_checkpoint(p, overwrite=True)
    h = SeamGraph(seed=9).build()
    h.restore_checkpoint(p)
    chex.assert_trees_all_equal(h.variables, g.variables)


def test_second_writer_waits_for_the_first(tmp_path):
    """Guarantee: two writers of one path take turns (the lock), never an unloadable path."""
    p = tmp_path / "t"
    save_pytree(p, {"w": np.zeros(3)})
    inside, release = threading.Event(), threading.Event()

    def slow_writer(gen):
        inside.set()
        release.wait(10)

    first = threading.Thread(target=write_artifact, args=(p, "pytree"), kwargs=dict(
        items={"tree": {"w": np.ones(3)}}, writer=slow_writer, overwrite=True, hash_item="tree"))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=save_pytree, args=(p, {"w": np.full(3, 2.0)}),
                              kwargs={"overwrite": True})
    second.start()
    second.join(0.4)
    assert second.is_alive()  # waiting for the first writer, not deleting its generation
    release.set()
    first.join(10)
    second.join(10)
    np.testing.assert_array_equal(load_pytree(p)["w"], [2.0, 2.0, 2.0])


def test_lock_timeout_is_a_clear_error(tmp_path, monkeypatch):
    from modjax.io import atomic

    monkeypatch.setattr(atomic, "LOCK_TIMEOUT", 0.2)
    p = tmp_path / "t"
    held = threading.Event()
    done = threading.Event()

    def hold():
        with artifact_lock(p):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(CheckpointError, match=r"another writer has held the lock of .* "
                                                  r"while saving .*/t'"):
            save_pytree(p, {"w": np.zeros(1)})
    finally:
        done.set()
        t.join()
    assert not p.exists()


@pytest.mark.slow
def test_two_processes_saving_one_path_repeatedly(tmp_path):
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from modjax.io import save_pytree
        k = int(sys.argv[1])
        for i in range(8):
            save_pytree({str(tmp_path / 'shared')!r}, {{"w": np.full(64, k * 100 + i)}},
                        overwrite=True)
        print("ok")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (1, 2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    w = load_pytree(tmp_path / "shared")["w"]
    assert w[0] in (107, 207) and np.all(w == w[0])
    assert len([c for c in (tmp_path / "shared").iterdir() if c.name.startswith("gen-")]) == 1


# ------------------------------------------------------------------ corruption
def test_same_size_byte_flips_in_array_data_are_detected(tmp_path):
    """Guarantee: an edited or damaged file is a CheckpointError naming it."""
    g = SeamGraph(seed=1).build()
    p = g.save_checkpoint(tmp_path / "ck")
    data = largest_file(generation(p) / "arrays")
    size = data.stat().st_size
    for offset in np.linspace(0, size - 1, 12).astype(int):
        flip_byte(data, int(offset))
        with pytest.raises(CheckpointError, match=r"is corrupt: file 'arrays/.*' does not "
                                                  r"match its sha256 digest"):
            SeamGraph(seed=2).build().restore_checkpoint(p)
        flip_byte(data, int(offset))  # undo: the checkpoint loads again
    h = SeamGraph(seed=2).build()
    h.restore_checkpoint(p)
    chex.assert_trees_all_equal(h.variables, g.variables)


def test_byte_flip_in_featureset_table_is_detected(tmp_path):
    fs, _ = _fs_and_graph()
    p = fs.save(tmp_path / "fs")
    table = generation(p) / "table.parquet"
    for offset in np.linspace(0, table.stat().st_size - 1, 10).astype(int):
        flip_byte(table, int(offset))
        with ExperimentContext().activate(), pytest.raises(
                CheckpointError, match=r"'table\.parquet' does not match its sha256 digest"):
            FeatureSet.load(p)
        flip_byte(table, int(offset))


def test_added_file_and_manifest_edits_are_detected(tmp_path):
    p = save_pytree(tmp_path / "t", {"w": np.arange(4.0)})
    (generation(p) / "arrays" / "extra").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"contains file 'arrays/extra', which its "
                                              r"manifest does not list"):
        load_pytree(p)
    (generation(p) / "arrays" / "extra").unlink()
    m = manifest(p)
    m["items"]["tree"]["leaves"][0]["shape"] = [2, 2]  # forged shape, data left as is
    write_manifest(p, m)
    with pytest.raises(CheckpointError, match=r"leaf 'w' is float64\(4,\) but the manifest "
                                              r"records float64\(2, 2\)"):
        load_pytree(p)
    with pytest.raises(CheckpointError, match=r"leaf 'w' is float64\(4,\) but the manifest"):
        load_pytree(p, {"w": np.zeros((2, 2))})


# ------------------------------------------------------------------ disk full
def test_disk_full_during_phase_checkpointing_keeps_the_trained_variables(tmp_path, monkeypatch):
    """Guarantee: a failed checkpoint write never discards training."""
    from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    fs = make_featureset(n=64, seed=0, register=False)
    clean = make_mlp_graph(fs, register=False, seed=0)
    train_phase(n_epochs=4).execute(clean, show_training_progress=False)
    g = make_mlp_graph(fs, register=False, seed=0)
    before = g.variables
    phase = train_phase(n_epochs=4)
    for async_save in (False, True):
        g.set_variables(before)
        g.set_opt_state(None)
        phase = train_phase(n_epochs=4)
        ck = Checkpointing(mode="disk", directory=tmp_path / str(async_save), max_to_keep=2,
                           async_save=async_save)
        phase.set_checkpointing(ck)
        monkeypatch.setattr(ck_mod, "save_trees", full)
        with pytest.warns(CheckpointWriteWarning, match=r"train_epoch\d' was not written "
                                                        r"\(OSError: \[Errno 28\]"):
            phase.execute(g, show_training_progress=False)
        monkeypatch.undo()
        chex.assert_trees_all_close(g.variables, clean.variables, rtol=1e-6)
        assert phase.epochs_run == 4 and ck.saved_keys == [] and len(ck.failures) == 4
        assert not any(is_artifact(c) for c in (tmp_path / str(async_save)).iterdir())


def test_failed_newer_write_spares_the_older_checkpoint(tmp_path, monkeypatch):
    g = SeamGraph(seed=1).build()
    ck = Checkpointing(mode="disk", directory=tmp_path, max_to_keep=1)
    ck.configure_for("phase")
    ck.maybe_save("epoch_end", g, key=0, phase="p", epoch=0)
    ck.wait()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck_mod, "save_trees", full)
    with pytest.warns(CheckpointWriteWarning):
        ck.maybe_save("epoch_end", g, key=1, phase="p", epoch=1)
        ck.maybe_save("phase_end", g, phase="p")
    assert ck.saved_keys == [0] and is_artifact(tmp_path / "p_epoch0")


# ------------------------------------------------------------------ eviction
def test_interrupted_eviction_never_leaves_a_listed_unloadable_checkpoint(tmp_path, monkeypatch):
    """Guarantee: an artifact is made invisible before it is deleted."""
    import shutil

    from modjax.io import atomic

    exp = SeamExperiment(seed=1)
    exp.set_checkpoint_dir(tmp_path)
    ck = Checkpointing(mode="disk", directory=tmp_path, max_to_keep=1, async_save=False)
    ck.configure_for("phase")
    ck.maybe_save("epoch_end", exp.model_graph, key=0, phase="p", epoch=0)
    real_rmtree = shutil.rmtree

    def killed_rmtree(path, *a, **k):
        # a kill in the middle of the delete: the manifest is already gone
        for m in list(os.walk(path)):
            if "manifest.json" in m[2]:
                os.unlink(os.path.join(m[0], "manifest.json"))
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.shutil, "rmtree", killed_rmtree)
    with pytest.raises(KeyboardInterrupt):
        ck.maybe_save("epoch_end", exp.model_graph, key=1, phase="p", epoch=1)
    monkeypatch.setattr(atomic.shutil, "rmtree", real_rmtree)
    assert not is_artifact(tmp_path / "p_epoch0")
    listed = exp.available_checkpoints
    assert list(listed) == ["p_epoch1"]
    for path in listed.values():
        SeamGraph(seed=5).build().restore_checkpoint(path)


def test_broken_artifacts_are_not_listed(tmp_path):
    exp = SeamExperiment(seed=1)
    exp.set_checkpoint_dir(tmp_path)
    exp.save_checkpoint("good")
    exp.save_checkpoint("broken")
    import shutil
    shutil.rmtree(generation(tmp_path / "broken"))
    assert list(exp.available_checkpoints) == ["good"]
    assert remove_artifact(tmp_path / "good") and not (tmp_path / "good").exists()
    assert not remove_artifact(tmp_path / "nothing")


# ------------------------------------------------------------------ failed loads
def test_failed_graph_load_registers_nothing(tmp_path):
    """Guarantee: a failed load leaves the active context as it was."""
    with ExperimentContext(registration_policy="error").activate() as ctx:
        fs, g = _fs_and_graph()
        fs.save(tmp_path / "fs")
        g.save(tmp_path / "good")
        g.save(tmp_path / "bad")
        m = manifest(tmp_path / "bad")
        leaf = m["items"]["variables"]["leaves"][0]
        leaf["shape"] = [d + 1 for d in leaf["shape"]]  # fails after the nodes are built
        write_manifest(tmp_path / "bad", m)
    with ExperimentContext(registration_policy="error").activate() as ctx:
        FeatureSet.load(tmp_path / "fs")
        nodes = dict(ctx.available_nodes)
        with pytest.raises(CheckpointError):
            ModelGraph.load(tmp_path / "bad")
        assert ctx.available_nodes == nodes and ctx.model_graph is None
        good = ModelGraph.load(tmp_path / "good")  # no RegistrationError from leftovers
        chex.assert_trees_all_equal(good.variables, g.variables)


def test_failed_featureset_load_registers_nothing(tmp_path):
    fs, _ = _fs_and_graph()
    p = fs.save(tmp_path / "fs")
    m = manifest(p)
    m["items"]["splits"] = {"tree": {"t": "dict", "c": {"x": {"t": "leaf", "i": 0}}},
                            "leaves": [{"path": "x", "kind": "str", "shape": [], "dtype": "str",
                                        "value": "not rows", "i": 0}], "hash": "", "orbax": False}
    write_manifest(p, m)
    with ExperimentContext(registration_policy="error").activate() as ctx:
        with pytest.raises(TypeError, match=r"split 'x' of FeatureSet 'cells': rows must be"):
            FeatureSet.load(p)
        assert ctx.available_nodes == {}


# ------------------------------------------------------------------ confinement
def test_experiment_checkpoint_names_stay_in_the_checkpoint_dir(tmp_path):
    """Guarantee: names and pointers never lead out of their directory."""
    exp = SeamExperiment(seed=1)
    exp.set_checkpoint_dir(tmp_path / "ck")
    for bad in ("../escape", "/abs/escape", "a/../../escape", ""):
        with pytest.raises(CheckpointError, match=r"must be a relative name inside"):
            exp.save_checkpoint(bad)
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    p = exp.save_checkpoint("run1/epoch3")
    assert p == tmp_path / "ck" / "run1" / "epoch3" and "run1/epoch3" in exp.available_checkpoints
    os.symlink(tmp_path, tmp_path / "ck" / "link")
    with pytest.raises(CheckpointError, match=r"leads out of .* through a symbolic link"):
        exp.save_checkpoint("link/escape")
    # a pathlib.Path is a location the caller chose
    assert exp.save_checkpoint(tmp_path / "elsewhere") == tmp_path / "elsewhere"


@pytest.mark.parametrize("template", ["../../x_{epoch}", "/tmp/x_{epoch}", "a/../../{epoch}"])
def test_checkpointing_template_must_stay_inside(template):
    with pytest.raises(ConfigError, match=r"must give a relative name inside the checkpoint"):
        Checkpointing(mode="disk", name_template=template)


def test_pointer_naming_another_directory_is_not_followed(tmp_path):
    a = save_pytree(tmp_path / "a", {"w": np.zeros(2)})
    b = save_pytree(tmp_path / "b", {"w": np.ones(2)})
    ptr = json.loads((a / POINTER_FILE).read_text())
    for current in (f"../b/{generation(b).name}", str(generation(b)), "."):
        (a / POINTER_FILE).write_text(json.dumps({**ptr, "current": current}))
        with pytest.raises(CheckpointError, match=r"names generation .* which is not a "
                                                  r"generation directory of this artifact"):
            load_pytree(a)
        assert not is_artifact(a) or True


def test_manifest_entry_outside_the_artifact_is_refused_without_leaking(tmp_path):
    p = save_pytree(tmp_path / "t", {"w": np.zeros(2)})
    m = manifest(p)
    m["files"]["../../../../../../etc/passwd"] = 1
    write_manifest(p, m)
    with pytest.raises(CheckpointError) as e:
        load_pytree(p)
    msg = str(e.value)
    assert "not a relative path inside the artifact" in msg
    assert "bytes" not in msg and str(os.path.getsize("/etc/passwd")) not in msg.split("'")[-1]


def test_symlinks_are_never_followed_out_of_an_artifact(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    exp = SeamExperiment(seed=1)
    exp.set_checkpoint_dir(tmp_path / "ck")
    exp.save_checkpoint("c1")
    os.symlink(secret, tmp_path / "ck" / "leak.txt")
    os.symlink(tmp_path, tmp_path / "ck" / "leakdir")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        p = exp.save(tmp_path / "saved")
    assert any("is a symbolic link" in str(x.message) for x in w)
    copied = generation(p) / "checkpoints"
    assert sorted(os.listdir(copied)) == ["c1"]
    assert not any("do not copy me" in f.read_text(errors="ignore")
                   for f in generation(p).rglob("*") if f.is_file())
    # a link planted inside an artifact is refused on load
    os.symlink(secret, generation(p) / "arrays" / "planted")
    with pytest.raises(CheckpointError, match=r"contains a symbolic link 'arrays/planted'"):
        open_artifact(p)


# ------------------------------------------------------------------ optimizer state
def test_restore_without_optimizer_state_resets_it_with_a_warning(tmp_path):
    with ExperimentContext().activate():
        _, g = _fs_and_graph()
        full = g.save_checkpoint(tmp_path / "vars_only")
        # drop the optimizer state from the checkpoint, as a migrated one has none
        art = open_artifact(full)
        write_artifact(tmp_path / "no_opt", "graph_checkpoint",
                       items={"variables": art.restore("variables", g.variables)},
                       extra=art.extra, hash_item="variables")
        g.set_opt_state(jax.tree.map(lambda x: x + 1 if jnp.issubdtype(
            jnp.asarray(x).dtype, jnp.floating) else x, g.opt_state))
        with pytest.warns(UserWarning, match=r"holds no optimizer state; the optimizer state "
                                             r"of graph .* was reset"):
            g.restore_checkpoint(tmp_path / "no_opt")
        chex.assert_trees_all_equal(g.opt_state, g.optimizer.init(g.variables["params"]))
