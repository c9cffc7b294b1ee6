"""The vmapped replica loop trains each replica exactly as a run of its own would."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from modjax import EarlyStopping
from modjax.train.replicas import make_spec, run_replicas
from modjax.train.vectorized import stack_plans

from .helpers import max_diff, task, train_phase


def _sequential(graph, mse, seed, epochs=3, **kw):
    graph.set_variables(graph.init(seed))
    graph.set_opt_state(None)
    ph = train_phase(mse, epochs=epochs, seed=seed, **kw)
    res = ph.execute(graph, show_training_progress=False)
    return res, graph.variables


def test_seeds_vmapped_equal_sequential_runs():
    _, fs, g, mse = task(experiment=False)
    ph = train_phase(mse)
    specs = [make_spec(ph, g, label=f"s{s}", variables=g.init(s), seed=s, sampler_seed=s)
             for s in range(3)]
    outs = run_replicas(ph, specs)
    assert ph.n_traces == 1
    for s, out in enumerate(outs):
        res, variables = _sequential(g, mse, s)
        assert out.results.n_epochs == 3 and out.epochs_run == 3
        np.testing.assert_allclose(out.results.train_loss, res.train_loss, atol=1e-6, rtol=0)
        assert max_diff(out.variables, variables) < 1e-6
        # per-batch losses and the index plans fed are the run's own
        np.testing.assert_allclose(out.results.batch_losses()[mse.label],
                                   res.batch_losses()[mse.label], atol=1e-6)
        rec, ref = out.results.epochs[2].bindings, res.epochs[2].bindings
        key = next(iter(ref))
        np.testing.assert_array_equal(rec[key].indices["default"], ref[key].indices["default"])


def test_replicas_of_different_sizes_are_padded_with_masked_batches():
    _, fs, g, mse = task(experiment=False)
    ph = train_phase(mse, epochs=2)
    big = make_spec(ph, g, label="all")
    fs.add_split(fs.take(np.asarray(fs.get_split("train").indices)[:50], label="small"), "small")
    small_phase = train_phase(mse, epochs=2)
    small_phase._split = "small"
    small = make_spec(small_phase, g, label="small")
    outs = run_replicas(ph, [big, small])
    assert outs[0].results.n_batches == 9 and outs[1].results.n_batches == 4
    res, variables = _sequential(g, mse, 0, epochs=2)
    assert max_diff(outs[0].variables, variables) < 1e-6
    g.set_variables(g.init(0))
    g.set_opt_state(None)
    ref = small_phase.execute(g, show_training_progress=False)
    np.testing.assert_allclose(outs[1].results.train_loss, ref.train_loss, atol=1e-6)
    assert max_diff(outs[1].variables, g.variables) < 1e-6


def test_loss_weights_per_replica():
    _, fs, g, mse = task(experiment=False)
    ph = train_phase(mse, epochs=2)
    specs = [make_spec(ph, g, label=f"w{w}", loss_weights={mse.label: w}) for w in (1.0, 0.25)]
    outs = run_replicas(ph, specs)
    mse.weight = 0.25
    try:
        res, variables = _sequential(g, mse, 0, epochs=2)
    finally:
        mse.weight = 1.0
    np.testing.assert_allclose(outs[1].results.train_loss, res.train_loss, atol=1e-6)
    assert max_diff(outs[1].variables, variables) < 1e-6
    assert outs[0].results.train_loss[0] > 2 * outs[1].results.train_loss[0]
    with pytest.raises(KeyError, match="no loss 'nope'"):
        make_spec(ph, g, label="bad", loss_weights={"nope": 1.0})


def test_early_stopping_stops_one_replica_and_restores_its_best():
    _, fs, g, mse = task(experiment=False)
    # replica "b" (its loss scaled down) never improves by min_delta: with patience 1 it
    # stops after epoch 2, its best epoch being 0
    from modjax.train.programs import clear_program_cache

    clear_program_cache()
    es = EarlyStopping(monitor="train_loss", patience=1, min_delta=0.05, restore_best=True)
    ph = train_phase(mse, epochs=6, callbacks=[es])
    specs = [make_spec(ph, g, label="a"), make_spec(ph, g, label="b", loss_weights={mse.label: 1e-3})]
    outs = run_replicas(ph, specs)
    a, b = outs[0].results, outs[1].results
    assert b.stopped_early and b.n_epochs == 3 and outs[1].epochs_run == 3
    assert a.n_epochs > b.n_epochs
    best = b.callbacks[0]["best_epoch"]
    assert best == 0  # restore_best: the replica's variables are those of its best epoch
    ref_phase = train_phase(mse, epochs=1)
    mse.weight = 1e-3
    try:
        g.set_variables(g.init(0))
        g.set_opt_state(None)
        ref_phase.execute(g, show_training_progress=False)
    finally:
        mse.weight = 1.0
    assert max_diff(outs[1].variables, g.variables) < 1e-6
    assert ph.n_traces == 1  # stopping a replica changed no program


def test_structure_mismatch_and_nan_are_named():
    _, fs, g, mse = task(experiment=False)
    _, _, g_other, _ = task("o", experiment=False, hidden=4)
    ph = train_phase(mse)
    with pytest.raises(ValueError, match="replica 'b' has another graph structure"):
        run_replicas(ph, _mismatch(ph, g, g_other))
    with pytest.raises(ValueError, match="different batch shapes"):
        from modjax.data.plan import IndexPlan
        stack_plans([IndexPlan.from_flat(np.arange(4), 2), IndexPlan.from_flat(np.arange(4), 4)])
    bad = g.init(0)
    bad["params"] = jax.tree.map(lambda a: a * np.nan, bad["params"])
    spec = make_spec(ph, g, label="nan", variables=bad)
    with pytest.raises(FloatingPointError, match="replica 'nan'"):
        run_replicas(ph, [make_spec(ph, g, label="ok"), spec])


def _mismatch(ph, g, g_other):
    a = make_spec(ph, g, label="a")
    b = make_spec(ph, g, label="b")
    b.graph = g_other
    return [a, b]
