"""CrossValidation(parallel=True) equals the sequential folds (same seeds)."""

from __future__ import annotations

import numpy as np

from modjax import CrossValidation, CVBinding, EarlyStopping, EvalPhase, PhaseGroup

from .helpers import task, train_phase, validation


def _cv(exp, fs, group, parallel, n_folds=3):
    return CrossValidation(label="cv", bindings=CVBinding(fs, ["train", "val"]), n_folds=n_folds,
                           phase=group, experiment=exp, parallel=parallel).run(
        show_fold_progress=False)


def test_parallel_folds_equal_sequential_folds():
    exp, fs, g, mse = task(n=217)  # folds of 144 and 145 rows: 9 and 10 batches (padded)
    es = EarlyStopping(monitor="val_loss", patience=0, restore_best=True)
    group = PhaseGroup("g", [train_phase(mse, epochs=4, callbacks=[validation(mse), es]),
                             EvalPhase.from_split("val", split="val", losses=[mse])])
    before = {k: np.asarray(v).copy() for k, v in g.variables["params"][g.node_labels[0]].items()}
    par = _cv(exp, fs, group, True)
    seq = _cv(exp, fs, group, False)
    n_batches = {f.get_train_result("train").n_batches for f in par.folds}
    assert len(n_batches) > 1  # the folds really had different batch counts
    for a, b in zip(par.fold_metrics(), seq.fold_metrics()):
        assert a.keys() == b.keys() and "train.val_loss" in a and "val.mse" not in a
        for k in a:
            assert abs(a[k] - b[k]) < 1e-6, (k, a[k], b[k])
    for fa, fb in zip(par.folds, seq.folds):
        ta, tb = fa.get_train_result("train"), fb.get_train_result("train")
        assert ta.n_epochs == tb.n_epochs
        np.testing.assert_allclose(ta.metrics.series("val_loss"), tb.metrics.series("val_loss"),
                                   atol=1e-6)
    assert par.fold_labels == seq.fold_labels == ["cv_fold0", "cv_fold1", "cv_fold2"]
    # the experiment and the splits are as before
    assert set(fs.available_splits) == {"train", "val"}
    for k, v in g.variables["params"][g.node_labels[0]].items():
        np.testing.assert_array_equal(np.asarray(v), before[k])


def test_sequential_cv_folds_start_alike_when_the_template_is_not_in_the_plan():
    # regression: a template phase outside the experiment's plan kept its sampler and
    # epoch counters between folds and runs, so the same CV gave other numbers each time
    exp, fs, g, mse = task(n=120)
    phase = train_phase(mse, epochs=2)
    first = _cv(exp, fs, phase, False, n_folds=2).fold_metrics()
    again = _cv(exp, fs, phase, False, n_folds=2).fold_metrics()
    assert first == again
    assert phase.epochs_run == 0
