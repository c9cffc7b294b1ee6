"""Experiment, PhaseGroup, batch schedules, cross-validation, unscaled results."""

from __future__ import annotations

import chex
import numpy as np
import pytest
from train_helpers import make_branching_graph, make_featureset, make_mlp_graph, mse_on, train_phase

from modjax import (
    Callback,
    CrossValidation,
    CVBinding,
    EvalPhase,
    Experiment,
    ExperimentCallback,
    InputBinding,
    Optimizer,
    PhaseGroup,
    SimpleSampler,
    TrainPhase,
)
from modjax.data.scalers import StandardScaler
from modjax.train import TrainResults
from modjax.train.schedule import schedule_plans, schedule_steps


def _order(n_batches, policy):
    idx, act = schedule_steps(n_batches, policy)
    names = "bc"
    return [tuple(names[s] + str(int(idx[t, s]) + 1) for s in range(len(n_batches)) if act[t, s])
            for t in range(len(idx))]


def test_schedule_orders_match_the_seed():
    # S1 = [b1, b2, b3], S2 = [c1, c2]
    assert _order([3, 2], "zip_strict") == [("b1", "c1"), ("b2", "c2")]
    assert _order([3, 2], "zip_cycle") == [("b1", "c1"), ("b2", "c2"), ("b3", "c1")]
    assert _order([3, 2], "alternate_strict") == [("b1",), ("c1",), ("b2",), ("c2",)]
    assert _order([3, 2], "alternate_cycle") == [("b1",), ("c1",), ("b2",), ("c2",), ("b3",),
                                                 ("c1",)]
    with pytest.raises(ValueError, match="at least one batch"):
        schedule_steps([3, 0], "zip_strict")


def test_schedule_masks_inactive_samplers():
    from modjax.data import IndexPlan
    p1 = IndexPlan.from_flat(np.arange(6), 2)
    p2 = IndexPlan.from_flat(np.arange(10, 14), 2)
    a, b = schedule_plans([p1, p2], "alternate_cycle")
    assert a.n_batches == b.n_batches == 6
    np.testing.assert_array_equal(a.mask["default"].any(axis=1), [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(b.mask["default"].any(axis=1), [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(b.indices["default"][5], [10, 11])  # c1 again
    assert float(b.weights["default"][0].sum()) == 0.0


def test_experiment_run_history_preview_and_state():
    fs = make_featureset()
    g = make_mlp_graph(fs)
    exp = Experiment.from_active_context("exp")
    events = []

    class Log(ExperimentCallback):
        def on_phase_start(self, *, phase, **kw):
            events.append(("phase_start", phase.label))

        def on_group_start(self, *, group, **kw):
            events.append(("group_start", group.label))

        def on_phase_end(self, *, phase, **kw):
            events.append(("phase_end", phase.label))

        def on_group_end(self, *, group, **kw):
            events.append(("group_end", group.label))

    exp.add_callback(Log())
    tp = train_phase(n_epochs=2)
    ev = EvalPhase.from_split("val", split="val", losses=[mse_on("mlp")])
    exp.execution_plan.add_phase(tp).add_phase(ev)
    before = g.variables
    # preview: runs, then restores variables, optimizer state, counters; no history
    prev = exp.preview_group(exp.execution_plan, show_training_progress=False)
    assert prev.get_train_result().n_epochs == 2
    chex.assert_trees_all_equal(g.variables, before)
    assert exp.history == [] and tp.epochs_run == 0
    events.clear()
    res = exp.run(show_training_progress=False)
    assert [r.status for r in exp.history] == ["completed"]
    assert exp.last_run.results is res and exp.last_run.ended_at >= exp.last_run.started_at
    assert events == [("group_start", "exp"), ("phase_start", "train"), ("phase_end", "train"),
                      ("phase_start", "val"), ("phase_end", "val"), ("group_end", "exp")]
    # the preview ran the same computation: identical losses
    np.testing.assert_array_equal(prev.get_train_result().metrics.series("train_loss"),
                                  res.get_train_result().metrics.series("train_loss"))
    assert isinstance(res.get_phase_result("train"), TrainResults)
    with pytest.raises(KeyError, match="no result 'nope'"):
        res.get_phase_result("nope")
    # get_state/set_state: resuming from a snapshot repeats the next phase bit-exactly
    snap = exp.get_state()
    exp.run_phase(tp, show_training_progress=False)
    after_once = g.variables
    exp.set_state(snap)
    exp.run_phase(tp, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, after_once)
    # a failing phase is recorded as failed and leaves the variables alone
    bad = TrainPhase("bad", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(8), split="nosuch")], losses=[mse_on("mlp")])
    v = g.variables
    with pytest.raises(KeyError, match="nosuch"):
        exp.run_phase(bad)
    assert exp.last_run.status == "failed" and "nosuch" in exp.last_run.error
    chex.assert_trees_all_equal(g.variables, v)


def test_phase_group_api():
    g = PhaseGroup("outer")
    t = train_phase("t1")
    g.add_phase(t).add_group(PhaseGroup("inner", [train_phase("t2")]))
    g.add_eval_phase("e1", input_sources=[InputBinding.for_evaluation(node="mlp", split="val")])
    assert g.labels == ["t1", "inner", "e1"]
    assert [p.label for p in g.flatten()] == ["t1", "t2", "e1"]
    assert g.get_train_phase(0) is t and g.get_train_phase("t1") is t
    assert g.get_eval_phase(0).label == "e1" and g["inner"].label == "inner"
    with pytest.raises(ValueError, match="already has an item labelled 't1'"):
        g.add_phase(train_phase("t1"))
    with pytest.raises(TypeError, match="is a TrainPhase, not a PhaseGroup"):
        g.get_group("t1")
    with pytest.raises(KeyError, match="no item 'zz'"):
        g.remove_item("zz")
    g.remove_group("inner").remove_phase(0)
    assert g.labels == ["e1"] and set(g.phases) == {"e1"}
    cfg = PhaseGroup("c", [train_phase("t")]).get_config()
    back = PhaseGroup.from_config(cfg)
    assert back.get_train_phase("t").n_epochs == 3
    # the builder aliases, fit phases, nested access, bulk removal and clear
    binding = [InputBinding.for_training(node="mlp", sampler=SimpleSampler(8), split="train")]
    evb = [InputBinding.for_evaluation(node="mlp", split="val")]
    h = PhaseGroup("h")
    h.add_train("a", input_sources=binding, losses=[mse_on("mlp")])
    h.add_training("b", input_sources=binding, losses=[mse_on("mlp")])
    h.add_evaluation("c", input_sources=evb).add_eval("d", input_sources=evb)
    h.add_fit("f", input_sources=evb).add_fit_phase("g", input_sources=evb)
    h.add_group(PhaseGroup("sub").add_train_phase("s", input_sources=binding,
                                                  losses=[mse_on("mlp")]))
    assert h.labels == ["a", "b", "c", "d", "f", "g", "sub"] and len(h) == 7
    assert h.get_train_phase(-1).label == "b" and h.get_eval_phase(1).label == "d"
    assert h.get_fit_phase("g").freeze_after_fit and h.get_group(0) is h["sub"]
    assert h.get_phase(4).label == "f" and h[0].label == "a" and list(h.phase_groups) == ["sub"]
    assert [lbl for lbl, _ in h.items()] == h.labels and h.all[-1] is h["sub"]
    assert [p.label for p in h.flatten()][-1] == "s"
    with pytest.raises(IndexError, match="has 2 EvalPhases; index 5"):
        h.get_eval_phase(5)
    h.remove_items(["a", 1, "sub"])
    assert h.labels == ["c", "d", "f", "g"]
    assert h.clear().labels == []


def test_unscaled_predictions_match_raw_targets():
    fs = make_featureset()
    fs.fit_transform(StandardScaler(), domain="targets", fit_to_split="train")
    g = make_mlp_graph(fs)
    res = EvalPhase.from_split("val", split="val", losses=[mse_on("mlp")]).execute(g)
    raw = fs.get_split("val").get_targets(rep="raw")
    scaled = res.stacked_tensors("mlp", "targets")
    assert not np.allclose(scaled, raw)
    np.testing.assert_allclose(res.stacked_tensors("mlp", "targets", unscale=True), raw,
                               rtol=1e-5, atol=1e-5)
    assert res.stacked_tensors("mlp", "outputs", unscale=True).shape == raw.shape


def test_cross_validation_folds_disjoint_covering_same_start():
    fs = make_featureset(n=160)
    g = make_mlp_graph(fs)
    exp = Experiment.from_active_context("cv")
    init = g.variables
    starts, splits = [], []

    class AtStart(Callback):
        def on_phase_start(self, *, phase, **kw):
            starts.append(phase.current_variables())
            splits.append((fs.get_split("train"), fs.get_split("val")))

    tp = train_phase(n_epochs=2, callbacks=[AtStart()])
    ev = EvalPhase.from_split("val", split="val", losses=[mse_on("mlp")])
    cv = CrossValidation(bindings=CVBinding(fs, ["train", "val"]), n_folds=4, seed=1,
                         phase=PhaseGroup("tmpl", [tp, ev]), experiment=exp)
    out = cv.run(show_fold_progress=False)
    # every fold starts from the same initial variables
    assert len(starts) == 4
    for v in starts:
        chex.assert_trees_all_equal(v, init)
    # folds are views (row indices) of the one FeatureSet, not copies of its table
    for (tr, va), rows in zip(splits, out.fold_rows):
        assert tr.source is fs and va.source is fs
        np.testing.assert_array_equal(np.sort(tr.indices), rows["fs"][0])
        np.testing.assert_array_equal(np.sort(va.indices), rows["fs"][1])
    vals = [rows["fs"][1] for rows in out.fold_rows]
    allv = np.concatenate(vals)
    assert len(allv) == len(np.unique(allv)) == 160  # disjoint and covering
    for rows in out.fold_rows:
        assert np.intersect1d(*rows["fs"]).size == 0
    # each fold's eval ran on exactly its validation rows
    for fr, rows in zip(out.folds, out.fold_rows):
        used = fr.get_eval_result("val").source_view("mlp").indices
        np.testing.assert_array_equal(np.sort(used), rows["fs"][1])
    s = out.summary()
    assert set(s) >= {"train.train_loss", "val.mlp.mse"}
    per_fold = np.array([m["val.mlp.mse"] for m in out.fold_metrics()])
    assert len(per_fold) == 4 and per_fold.std() > 0  # different folds, different losses
    assert s["val.mlp.mse"]["mean"] == pytest.approx(per_fold.mean(), rel=1e-12)
    assert s["val.mlp.mse"]["std"] == pytest.approx(per_fold.std(), rel=1e-12)
    assert s["val.mlp.mse"]["min"] == per_fold.min() and s["val.mlp.mse"]["max"] == per_fold.max()
    # state and splits are restored afterwards
    chex.assert_trees_all_equal(g.variables, init)
    assert fs.get_split("train").n_samples == 120
    with pytest.raises(ValueError, match="no split"):
        CVBinding(fs, ["trian"])


def test_alternate_schedule_trains_one_branch_per_step():
    fs = make_featureset()
    g = make_branching_graph(fs, optimizer=Optimizer("sgd", opt_kwargs={"lr": 0.1}))
    phase = TrainPhase("alt", input_sources=[
        InputBinding.for_training(node="enc_a", sampler=SimpleSampler(32, seed=1), split="train"),
        InputBinding.for_training(node="enc_b", sampler=SimpleSampler(32, seed=2), split="train")],
        losses=[mse_on("head")], n_epochs=1, batch_schedule="alternate_cycle")
    res = phase.execute(g, show_training_progress=False)
    # two samplers of 6 batches alternate: 12 steps, each with one branch masked
    assert len(res.epochs[0].loss) == 12


def test_experiment_save_load_resumes_bit_exactly(tmp_path, fresh_context):
    from modjax.context import ExperimentContext

    fs = make_featureset()
    g = make_mlp_graph(fs)
    exp = Experiment.from_active_context("saved")
    exp.execution_plan.add_phase(train_phase(n_epochs=1))
    exp.run(show_training_progress=False)
    path = exp.save(tmp_path / "exp")
    exp.run(show_training_progress=False)  # the original continues one more epoch
    expected = g.variables
    with ExperimentContext(registration_policy="overwrite").activate():
        back = Experiment.load(path)
        assert back.execution_plan.labels == ["train"]
        assert back.execution_plan.get_train_phase("train").epochs_run == 1
        back.run(show_training_progress=False)  # same sampler RNG, counters, opt state
        chex.assert_trees_all_equal(back.model_graph.variables, expected)


def test_preview_phase_outside_the_plan_mutates_nothing():
    from modjax.observe import Observer
    fs = make_featureset()
    g = make_mlp_graph(fs)
    obs = Observer()
    exp = Experiment.from_active_context("prev", observer=obs)
    tp = train_phase(n_epochs=2, seed=3)  # not added to the plan
    frozen = set(g.frozen_paths)
    before_vars, before_opt = g.variables, g.opt_state
    before_sampler = tp.input_sources[0].sampler.get_state()
    prev = exp.preview_phase(tp, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, before_vars)
    assert (g.opt_state is None) == (before_opt is None) and set(g.frozen_paths) == frozen
    assert tp.epochs_run == 0 and exp.history == [] and obs.flush_count() == 0
    chex.assert_trees_all_equal(tp.input_sources[0].sampler.get_state(), before_sampler)
    # the real run computes exactly what the preview showed
    res = exp.run_phase(tp, show_training_progress=False)
    np.testing.assert_array_equal(prev.metrics.series("train_loss"),
                                  res.metrics.series("train_loss"))
    assert obs.flush_count() == 2 and [r.label for r in exp.history] == ["train"]


def test_phase_batch_orders_match_the_seed():
    """S1 = [b1, b2, b3] (batch 64) and S2 = [c1, c2] (batch 96) through real TrainPhases."""
    from modjax import ModelGraph, ModelNode, SequentialMLP
    fs = make_featureset(register=False)  # 192 train rows
    a = ModelNode("a", SequentialMLP(n_layers=1, hidden_dim=4), upstream_ref=fs.reference(),
                  register=False)
    b = ModelNode("b", SequentialMLP(n_layers=1, hidden_dim=4), upstream_ref=fs.reference(),
                  register=False)
    g = ModelGraph([a, b], optimizer=Optimizer("sgd", opt_kwargs={"lr": 0.01}),
                   register=False).build()
    expected = {
        "zip_strict": [("b1", "c1"), ("b2", "c2")],
        "zip_cycle": [("b1", "c1"), ("b2", "c2"), ("b3", "c1")],
        "alternate_strict": [("b1",), ("c1",), ("b2",), ("c2",)],
        "alternate_cycle": [("b1",), ("c1",), ("b2",), ("c2",), ("b3",), ("c1",)],
    }
    for policy, order in expected.items():
        phase = TrainPhase(policy, input_sources=[
            InputBinding.for_training(node="a", sampler=SimpleSampler(64, shuffle=False),
                                      split="train"),
            InputBinding.for_training(node="b", sampler=SimpleSampler(96, shuffle=False),
                                      split="train")],
            losses=[mse_on("a"), mse_on("b")], batch_schedule=policy)
        res = phase.execute(g, show_training_progress=False)
        rec = res.epochs[0]
        got = []
        for t in range(len(rec.loss)):
            step = []
            for key, name, size in (("a", "b", 64), ("b", "c", 96)):
                bind = rec.bindings[key]
                if bind.mask["default"][t].any():
                    step.append(f"{name}{int(bind.indices['default'][t][0]) // size + 1}")
            got.append(tuple(step))
            # an inactive sampler's loss is exactly zero in that step
            if len(step) == 1:
                silent = "b.mse" if step[0][0] == "b" else "a.mse"
                assert rec.losses[silent][t] == 0.0
        assert got == order, policy
