"""TrainPhase <-> Checkpointing: memory snapshots, disk checkpoints, restore_best."""

from __future__ import annotations

import chex
from train_helpers import make_featureset, make_mlp_graph, train_phase

from modjax import Checkpointing, EarlyStopping, MetricCallback


def test_memory_checkpoints_per_epoch_and_restore_best_uses_them():
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    ck = Checkpointing(mode="memory", save_on="epoch_end")
    seen = {}
    # a made-up metric whose best epoch is 1, so restore_best must go back there
    scores = [3.0, 1.0, 2.0, 4.0]
    spy = MetricCallback("score", lambda epoch, variables, **kw: (
        seen.__setitem__(epoch, variables), scores[epoch])[1])
    es = EarlyStopping(monitor="score", patience=10, restore_best=True)
    phase = train_phase(n_epochs=4, callbacks=[spy, es], checkpointing=ck)
    phase.execute(g, show_training_progress=False)
    assert ck.saved_keys == [0, 1, 2, 3]
    snap = ck.get_state(1)
    chex.assert_trees_all_equal(snap["variables"], seen[1])
    assert int(snap["epochs_run"]) == 2
    assert es.best_epoch == 1
    chex.assert_trees_all_equal(g.variables, seen[1])


def test_disk_checkpoints_restore_epoch_variables(tmp_path):
    fs = make_featureset(register=False)
    g = make_mlp_graph(fs, register=False)
    seen = {}
    spy = MetricCallback("noop", lambda epoch, variables, **kw: (
        seen.__setitem__(epoch, variables), 0.0)[1])
    ck = Checkpointing(mode="disk", save_on="epoch_end", every_n=2, directory=tmp_path,
                       max_to_keep=1)
    phase = train_phase(n_epochs=4, callbacks=[spy], checkpointing=ck)
    phase.execute(g, show_training_progress=False)
    assert ck.saved_keys == [3]  # every 2nd epoch, only the newest kept
    path = ck.get_path(3)
    assert path is not None and path.exists()
    final = g.variables
    fresh = make_mlp_graph(fs, register=False, seed=99)
    fresh.restore_checkpoint(path)
    chex.assert_trees_all_equal(fresh.variables, seen[3])
    chex.assert_trees_all_equal(fresh.variables, final)
