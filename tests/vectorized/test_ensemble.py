"""TrainPhase(replicas=K): K seeds in one program; EvalPhase answers per replica + mean."""

from __future__ import annotations

import numpy as np
import pytest

from modjax import EvalPhase, SimpleSampler, TrainPhase
from modjax.train.ensemble import EnsembleEvalResults, EnsembleTrainResults, ensemble_of

from .helpers import max_diff, task


def test_replica_r_is_the_run_with_seeds_shifted_by_r():
    _, fs, g, mse = task(experiment=False)
    ens_phase = TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16, seed=5),
                                      losses=[mse], n_epochs=2, seed=3, replicas=3)
    res = ens_phase.execute(g)
    assert isinstance(res, EnsembleTrainResults) and len(res.replicas) == 3
    ens = ensemble_of(g)
    assert ens is not None and ens.n_replicas == 3
    np.testing.assert_allclose(res.train_loss, np.mean([r.train_loss for r in res.replicas], 0))
    assert max_diff(g.variables, ens.replica_variables(0)) == 0.0  # the graph keeps replica 0
    for r in range(3):
        g.set_variables(g.init(3 + r))
        g.set_opt_state(None)
        ref = TrainPhase.from_split("ref", split="train", sampler=SimpleSampler(16, seed=5 + r),
                                    losses=[mse], n_epochs=2, seed=3 + r)
        out = ref.execute(g, show_training_progress=False)
        np.testing.assert_allclose(res.replicas[r].train_loss, out.train_loss, atol=1e-6)
        assert max_diff(ens.replica_variables(r), g.variables) < 1e-6


def test_eval_gives_every_replica_and_the_mean():
    _, fs, g, mse = task(experiment=False)
    TrainPhase.from_split("ens", split="train", sampler=SimpleSampler(16), losses=[mse],
                          n_epochs=2, replicas=4).execute(g)
    ev = EvalPhase.from_split("val", split="val", losses=[mse]).execute(g)
    assert isinstance(ev, EnsembleEvalResults) and len(ev.replicas) == 4
    per = ev.replica_outputs(g.node_labels[0])
    assert per.shape == (4, fs.get_split("val").n_samples, 1)
    np.testing.assert_allclose(ev.stacked_tensors(g.node_labels[0]), per.mean(0), atol=1e-6)
    tgt = ev.stacked_tensors(g.node_labels[0], "targets")
    mean_mse = float(np.mean((per.mean(0) - tgt) ** 2))
    assert ev.metrics.last(mse.label) == pytest.approx(mean_mse, rel=1e-5)
    for r, rep in enumerate(ev.replicas):
        assert rep.metrics.last(mse.label) == pytest.approx(
            float(np.mean((per[r] - tgt) ** 2)), rel=1e-5)
    # training the graph on drops the ensemble: evaluation is the ordinary one again
    TrainPhase.from_split("more", split="train", sampler=SimpleSampler(16), losses=[mse],
                          n_epochs=1).execute(g, show_training_progress=False)
    assert ensemble_of(g) is None
    assert not isinstance(EvalPhase.from_split("v2", split="val").execute(g), EnsembleEvalResults)


def test_bad_replicas_and_config_roundtrip():
    _, fs, g, mse = task(experiment=False)
    with pytest.raises(ValueError, match="replicas must be a positive int"):
        TrainPhase.from_split("t", split="train", sampler=SimpleSampler(16), losses=[mse],
                              replicas=0)
    p = TrainPhase.from_split("t", split="train", sampler=SimpleSampler(16), losses=[mse],
                              replicas=3)
    assert TrainPhase.from_config(p.get_config()).replicas == 3
    assert "replicas" not in TrainPhase.from_split(
        "u", split="train", sampler=SimpleSampler(16), losses=[mse]).get_config()
