"""A train set over the device byte budget streams in chunks and trains exactly as resident."""

from __future__ import annotations

import chex
import numpy as np
import pytest
from train_helpers import make_featureset, make_mlp_graph, train_phase

from modjax import Callback, Experiment
from modjax.data import DeviceStore


def _row_bytes(fs) -> int:
    ref = fs.reference()
    store = DeviceStore(fs.get_split("train"), features=list(ref.features),
                        targets=list(ref.targets))
    return store.nbytes // store.n_samples


@pytest.mark.parametrize("batches_per_chunk", [2, 4])  # 6 batches: 3 full chunks / 1 padded
def test_over_budget_run_equals_in_budget_run(batches_per_chunk):
    fs = make_featureset(register=False)  # 192 train rows, 6 batches of 32
    budget = batches_per_chunk * 32 * _row_bytes(fs) + 1
    resident_g = make_mlp_graph(fs, register=False)
    streamed_g = make_mlp_graph(fs, register=False)
    resident = train_phase(n_epochs=3, seed=4).execute(resident_g, show_training_progress=False)
    phase = train_phase(n_epochs=3, seed=4, byte_budget=budget)
    streamed = phase.execute(streamed_g, show_training_progress=False)
    # the store really was over budget (it would raise if read whole)
    with pytest.raises(MemoryError, match="over byte_budget"):
        _ = DeviceStore(fs.get_split("train"), byte_budget=budget).arrays
    assert phase.n_traces == 1  # every chunk of every epoch: one compiled scan
    for e in range(3):
        assert len(streamed.epochs[e].loss) == 6  # padding batches are dropped
        np.testing.assert_allclose(streamed.epochs[e].loss, resident.epochs[e].loss,
                                   rtol=1e-6, atol=0)
    chex.assert_trees_all_close(streamed_g.variables, resident_g.variables, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(streamed_g.opt_state, resident_g.opt_state, rtol=1e-6, atol=1e-7)
    # recorded outputs line up with the sampled rows as in the resident run
    np.testing.assert_array_equal(streamed.stacked_tensors("mlp", "sample_uuids"),
                                  resident.stacked_tensors("mlp", "sample_uuids"))
    np.testing.assert_allclose(streamed.stacked_tensors("mlp", "targets"),
                               resident.stacked_tensors("mlp", "targets"))


def test_streaming_with_batch_hooks_and_experiment_budget():
    fs = make_featureset(register=False)
    budget = 2 * 32 * _row_bytes(fs) + 1
    calls = []

    class BatchSpy(Callback):
        def on_batch_end(self, *, epoch, batch, **kw):
            calls.append((epoch, batch))

    resident_g = make_mlp_graph(fs, register=False)
    train_phase(n_epochs=2).execute(resident_g, show_training_progress=False)
    g = make_mlp_graph(fs)  # registered in the test's active context
    exp = Experiment.from_active_context("stream", byte_budget=budget)
    assert exp.model_graph is g
    phase = train_phase(n_epochs=2, callbacks=[BatchSpy()])
    exp.run_phase(phase, show_training_progress=False)
    assert calls == [(e, b) for e in range(2) for b in range(6)]
    chex.assert_trees_all_close(g.variables, resident_g.variables, rtol=1e-5, atol=1e-6)


def test_bad_byte_budget():
    with pytest.raises(ValueError, match="TrainPhase 'train': byte_budget must be a positive int"):
        train_phase(byte_budget=0)
