"""Vectorized phases feed observers and progress bars as a single TrainPhase does, and
the look-ahead epoch never shows in a replica's results or sampler state."""

from __future__ import annotations

import io

import numpy as np

from modjax import CrossValidation, CVBinding, EarlyStopping, PhaseGroup
from modjax.observe import Observer
from modjax.train.collection import ExperimentCollection
from modjax.train.ensemble import execute_ensemble
from modjax.train.replicas import make_spec, run_replicas

from .helpers import task, train_phase, validation


def _solo_observer(g, mse, seed, epochs=3):
    obs = Observer()
    g.set_variables(g.init(seed))
    g.set_opt_state(None)
    res = train_phase(mse, epochs=epochs, seed=seed, observer=obs).execute(
        g, show_training_progress=False)
    return obs, res


def test_a_shared_observer_gets_one_child_per_replica_with_its_own_curve():
    _, fs, g, mse = task(experiment=False)
    obs = Observer()
    ph = train_phase(mse, replicas=3, observer=obs)
    res = execute_ensemble(ph, g)
    assert sorted(obs.children) == ["replica0", "replica1", "replica2"]
    assert obs.flush_count() == 0  # nothing mixed into the shared observer itself
    for r in range(3):
        ref, solo = _solo_observer(g, mse, r)
        child = obs.child(f"replica{r}")
        assert child.flush_count() == 3
        np.testing.assert_allclose(child.trend("train_loss").values(),
                                   ref.trend("train_loss").values(), atol=1e-6)
        np.testing.assert_allclose(child.trend("train_loss").values(),
                                   res.replicas[r].train_loss, atol=1e-6)


def test_own_observers_are_fed_directly_and_callbacks_values_reach_them():
    e1, fs1, g1, mse1 = task("o1", names="same")
    e2, fs2, g2, mse2 = task("o2", names="same")
    for e, mse in ((e1, mse1), (e2, mse2)):
        e.observer = Observer()
        e.execution_plan.add_phase(train_phase(mse, epochs=4, callbacks=[validation(mse)]))
    coll = ExperimentCollection([e1, e2])
    coll.run()
    for lab, e in (("o1", e1), ("o2", e2)):
        assert coll[lab].vectorized == ["train"]
        tr = coll[lab].results.get_train_result("train")
        assert e.observer.flush_count() == 4 and not e.observer.children
        np.testing.assert_allclose(e.observer.trend("val_loss").values(),
                                   tr.metrics.series("val_loss"), atol=1e-9)
        np.testing.assert_allclose(e.observer.trend("train_loss").values(), tr.train_loss,
                                   atol=1e-6)


def test_template_members_feed_children_of_the_template_observer():
    exp, fs, g, mse = task("tplobs")
    exp.observer = Observer()
    exp.execution_plan.add_phase(train_phase(mse, epochs=2))
    coll = ExperimentCollection(template=exp, members={"a.1": {"seed": 1}, "b": {"seed": 2}})
    coll.run()
    assert sorted(exp.observer.children) == ["a_1", "b"]
    for lab, child in (("a.1", "a_1"), ("b", "b")):
        tr = coll[lab].results.get_train_result("train")
        np.testing.assert_allclose(exp.observer.child(child).trend("train_loss").values(),
                                   tr.train_loss, atol=1e-6)


def test_one_progress_bar_per_group_with_the_mean_of_the_members():
    _, fs, g, mse = task(experiment=False)
    buf = io.StringIO()
    ph = train_phase(mse, replicas=2)
    res = execute_ensemble(ph, g, show_training_progress=True, persist_progress=True,
                           progress_file=buf)
    out = buf.getvalue()
    assert "train x2" in out and "3/3" in out
    mean = np.mean([r.train_loss[-1] for r in res.replicas])
    assert f"train_loss={mean:.4g}" in out
    # parallel cross-validation: one bar for the folds' vectorized TrainPhase
    exp, fs, g, mse = task("cvbar", n=217)
    group = PhaseGroup("g", [train_phase(mse, epochs=2, callbacks=[validation(mse)])])
    buf = io.StringIO()
    CrossValidation(label="cv", bindings=CVBinding(fs, ["train", "val"]), n_folds=3,
                    phase=group, experiment=exp, parallel=True).run(
        show_fold_progress=False, show_training_progress=True, progress_file=buf)
    out = buf.getvalue()
    assert "train x3" in out and "val_loss=" in out


def test_a_stopped_replica_keeps_the_sampler_state_of_a_run_of_its_own():
    # the next epoch is dispatched before callbacks run; a replica that stops must not
    # keep the plan drawn for it then
    _, fs, g, mse = task(experiment=False)
    es = EarlyStopping(monitor="train_loss", patience=1, min_delta=0.05)
    ph = train_phase(mse, epochs=6, callbacks=[es])
    specs = [make_spec(ph, g, label="a"), make_spec(ph, g, label="b", loss_weights={mse.label: 1e-3})]
    outs = run_replicas(ph, specs)
    assert outs[1].results.n_epochs == 3
    assert [s.epoch for s in outs[1].samplers.values()] == [3]
    assert [s.epoch for s in outs[0].samplers.values()] == [outs[0].results.n_epochs]


def test_a_replica_stopped_by_nan_keeps_its_last_finite_state_and_the_others_go_on():
    import jax

    from .helpers import max_diff

    _, fs, g, mse = task(experiment=False)
    ph = train_phase(mse, epochs=3, nan_policy="stop")
    bad = g.init(0)
    bad["params"] = jax.tree.map(lambda a: a * np.nan, bad["params"])
    outs = run_replicas(ph, [make_spec(ph, g, label="ok", variables=g.init(0)),
                             make_spec(ph, g, label="nan", variables=bad)])
    ok, nan = outs
    assert nan.results.nan_stop == (0, 0) and nan.results.stopped_early
    assert nan.results.n_epochs == 0 and nan.epochs_run == 0
    # one plan drawn (epoch 0), as a run of its own leaves it: the look-ahead plan went back
    assert [s.epoch for s in nan.samplers.values()] == [1]
    assert all(np.isnan(np.asarray(a)).all() for a in jax.tree.leaves(nan.variables["params"]))
    ref, _ = _solo_observer(g, mse, 0)
    assert ok.results.n_epochs == 3 and max_diff(ok.variables, g.variables) < 1e-6


def test_phases_run_member_by_member_feed_the_members_children_too():
    from modjax.train.callbacks import Callback

    class BatchCounter(Callback):  # batch hooks: the phase cannot run vectorized
        def on_batch_end(self, **kw):
            pass

    exp, fs, g, mse = task("alone")
    exp.observer = Observer()
    exp.execution_plan.add_phase(train_phase(mse, epochs=2, callbacks=[BatchCounter()]))
    coll = ExperimentCollection(template=exp, members={"a": {"seed": 1}, "b": {"seed": 2}})
    coll.run()
    assert coll["a"].vectorized == [] and sorted(exp.observer.children) == ["a", "b"]
    assert exp.observer.flush_count() == 0
    for lab in ("a", "b"):
        tr = coll[lab].results.get_train_result("train")
        np.testing.assert_allclose(exp.observer.child(lab).trend("train_loss").values(),
                                   tr.train_loss, atol=1e-6)


def test_train_phase_execute_forwards_its_bar_options_to_the_ensemble():
    # TrainPhase(replicas=K).execute used to drop show_training_progress/progress_file
    _, fs, g, mse = task(experiment=False)
    buf = io.StringIO()
    train_phase(mse, replicas=2).execute(g, show_training_progress=True, persist_progress=True,
                                         progress_file=buf)
    assert "train x2" in buf.getvalue() and "3/3" in buf.getvalue()
    quiet = io.StringIO()
    train_phase(mse, replicas=2).execute(g, show_training_progress=False, progress_file=quiet)
    assert quiet.getvalue() == ""
