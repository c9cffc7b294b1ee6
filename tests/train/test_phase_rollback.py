"""A TrainPhase that raises rolls back its counters and sampler state with the graph, so a
retry (or a checkpoint taken after the failure) is the same as if it had never run."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import pytest
from train_helpers import make_featureset, make_mlp_graph, train_phase

from modjax import AppliedLoss, Callback


class Boom(Callback):
    def __init__(self, at: int) -> None:
        super().__init__(label="boom")
        self.at = at

    def on_epoch_end(self, *, epoch, **_):
        if epoch == self.at:
            raise RuntimeError(f"callback failed at epoch {epoch}")


def _sampler(phase):
    return phase.input_sources[0].sampler


def test_raising_callback_rolls_back_counters_and_sampler():
    fs = make_featureset(n=64, seed=0, register=False)
    clean_g = make_mlp_graph(fs, register=False, seed=0)
    clean = train_phase(n_epochs=3)
    clean.execute(clean_g, show_training_progress=False)

    g = make_mlp_graph(fs, register=False, seed=0)
    phase = train_phase(n_epochs=3)
    before_vars, sampler_state = g.variables, _sampler(phase).get_state()
    phase.add_callback(Boom(at=2))
    with pytest.raises(RuntimeError, match="callback failed at epoch 2"):
        phase.execute(g, show_training_progress=False)
    assert phase.epochs_run == 0 and int(_sampler(phase).epoch) == 0
    chex.assert_trees_all_equal(_sampler(phase).get_state(), sampler_state)
    assert g.variables is before_vars
    phase.callbacks.clear()
    phase.execute(g, show_training_progress=False)  # the retry is a clean run, bit for bit
    assert phase.epochs_run == clean.epochs_run == 3
    chex.assert_trees_all_equal(g.variables, clean_g.variables)


def test_nan_raise_rolls_back_counters():
    fs = make_featureset(n=64, seed=0, register=False)
    g = make_mlp_graph(fs, register=False, seed=0)
    bad = AppliedLoss(lambda o, t: jnp.log(-1.0 - jnp.abs(o - t).sum(-1)), on="mlp",
                      label="nan_loss")
    phase = train_phase(n_epochs=3, losses=[bad], nan_policy="raise")
    with pytest.raises(FloatingPointError):
        phase.execute(g, show_training_progress=False)
    assert phase.epochs_run == 0 and int(_sampler(phase).epoch) == 0


def test_zero_row_split_is_named_before_training():
    import numpy as np

    from modjax import InputBinding, SimpleSampler, TrainPhase

    fs = make_featureset(n=32, seed=0, register=False)
    fs.add_split(fs.take(np.arange(0)), "empty")
    g = make_mlp_graph(fs, register=False, seed=0)
    before = g.variables
    phase = TrainPhase("t", input_sources=[InputBinding.for_training(
        node="mlp", sampler=SimpleSampler(8), split="empty")],
        losses=[AppliedLoss("mse", on="mlp")], n_epochs=1)
    with pytest.raises(ValueError, match=r"SimpleSampler: split 'empty' of FeatureSet 'fs' has "
                                         r"no samples"):
        phase.execute(g, show_training_progress=False)
    assert g.variables is before and phase.epochs_run == 0
