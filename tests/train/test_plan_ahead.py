"""Plans made ahead (while the device runs an epoch) change nothing a user can observe."""

from __future__ import annotations

import numpy as np

from modjax import Callback
from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase


def test_plans_made_ahead_equal_the_sampler_plans_and_counters_stay_exact(fresh_context):
    fs = make_featureset(n=128)
    graph = make_mlp_graph(fs)
    phase = train_phase(n_epochs=4)
    res = phase.execute(graph, show_training_progress=False)
    sampler = phase.input_sources[0].sampler
    assert sampler.epoch == 4  # the plan of epoch 4 was never made
    for e in range(4):
        (rec,) = res.epochs[e].bindings.values()
        np.testing.assert_array_equal(rec.indices["default"], sampler.plan(e).indices["default"])


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, *, epoch, phase, **kw) -> None:
        if epoch == self.epoch:
            phase.request_stop()


class _Rewind(Callback):
    """Sets the sampler back to epoch 0 after epoch 1: the plan made ahead is stale."""

    def on_epoch_end(self, *, epoch, phase, **kw) -> None:
        if epoch == 1:
            phase.input_sources[0].sampler.set_state({"epoch": 0, "seed": 0})


def test_an_early_stop_leaves_the_sampler_after_the_last_epoch_run(fresh_context):
    fs = make_featureset(n=128)
    phase = train_phase(n_epochs=6, callbacks=[_StopAfter(1)])
    phase.execute(make_mlp_graph(fs), show_training_progress=False)
    assert phase.epochs_run == 2 and phase.input_sources[0].sampler.epoch == 2


def test_a_sampler_changed_by_a_callback_gets_a_fresh_plan(fresh_context):
    fs = make_featureset(n=128)
    phase = train_phase(n_epochs=3, callbacks=[_Rewind()])
    res = phase.execute(make_mlp_graph(fs), show_training_progress=False)
    sampler = phase.input_sources[0].sampler
    got = [next(iter(res.epochs[e].bindings.values())).indices["default"] for e in range(3)]
    np.testing.assert_array_equal(got[2], sampler.plan(0).indices["default"])
    assert not np.array_equal(got[2], got[1]) and sampler.epoch == 1
