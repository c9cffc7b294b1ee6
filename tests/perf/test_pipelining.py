"""The next epoch is dispatched before this epoch's losses are read; nothing else changes.

Every test compares a pipelined phase with one that waits after every epoch
(``phase._pipeline = False``): the callbacks must see the same epochs with the same
values, and the final variables must be bit-identical.
"""

from __future__ import annotations

import jax
import numpy as np

from modjax import Callback, EarlyStopping
from tests.train.train_helpers import make_featureset, make_mlp_graph, train_phase


class _Seen(Callback):
    """Records each epoch's train loss and a copy of the running variables."""

    def __init__(self) -> None:
        super().__init__(label="seen")
        self.epochs, self.losses, self.params = [], [], []

    def on_epoch_end(self, *, epoch, phase, results, **kw) -> None:
        self.epochs.append(epoch)
        self.losses.append(results.metrics.epoch_value("train_loss", epoch))
        self.params.append(jax.tree.map(np.asarray, phase.current_variables()["params"]))


class _Restore(Callback):
    """Puts epoch 0's state back after epoch 2 (the speculative epoch 3 is stale)."""

    def on_epoch_end(self, *, epoch, phase, **kw) -> None:
        if epoch == 0:
            self.snap = phase.snapshot()
        if epoch == 2:
            phase.restore_snapshot(self.snap)


def _run(pipeline: bool, callbacks, n_epochs: int = 6):
    fs = make_featureset(n=128)
    graph = make_mlp_graph(fs)
    phase = train_phase(n_epochs=n_epochs, callbacks=callbacks)
    phase._pipeline = pipeline
    res = phase.execute(graph, show_training_progress=False)
    return graph, phase, res


def _assert_same(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_callbacks_see_every_epoch_in_order_with_the_same_values(fresh_context):
    seen = {}
    for pipeline in (True, False):
        seen[pipeline] = _Seen()
        graph, phase, _ = _run(pipeline, [seen[pipeline]])
        seen[pipeline].final = graph.variables
    assert seen[True].epochs == seen[False].epochs == list(range(6))
    assert seen[True].losses == seen[False].losses
    _assert_same(seen[True].params, seen[False].params)
    _assert_same(seen[True].final, seen[False].final)


def test_an_early_stop_discards_the_speculative_epoch_exactly(fresh_context):
    out = {}
    for pipeline in (True, False):
        stop = EarlyStopping(monitor="train_loss", patience=0, min_delta=10.0)
        graph, phase, res = _run(pipeline, [stop])
        out[pipeline] = (graph.variables, graph.opt_state, phase.epochs_run,
                         phase.input_sources[0].sampler.epoch, res.n_epochs, phase._discarded)
    assert out[True][2:5] == out[False][2:5] == (2, 2, 2)  # stopped after epoch 1
    assert out[True][5] == 1 and out[False][5] == 0  # epoch 2 was dispatched, then dropped
    _assert_same(out[True][:2], out[False][:2])


def test_a_restored_snapshot_makes_the_phase_rerun_the_next_epoch(fresh_context):
    out = {}
    for pipeline in (True, False):
        graph, phase, res = _run(pipeline, [_Restore()])
        losses = [res.metrics.epoch_value("train_loss", e) for e in range(6)]
        out[pipeline] = (graph.variables, losses, phase._discarded)
    assert out[True][2] == 1
    assert out[True][1] == out[False][1]
    _assert_same(out[True][0], out[False][0])


def test_a_pipelined_phase_trains_like_a_waiting_one_with_a_nan_stop(fresh_context):
    class _Poison(Callback):
        def on_epoch_end(self, *, epoch, phase, **kw) -> None:
            if epoch == 1:  # non-finite parameters: epoch 2's losses are NaN
                c = phase._carry
                bad = jax.tree.map(lambda a: a * np.nan, c["variables"])
                phase.restore_snapshot(dict(c, variables=bad))

    out = {}
    for pipeline in (True, False):
        fs = make_featureset(n=128)
        graph = make_mlp_graph(fs)
        phase = train_phase(n_epochs=5, callbacks=[_Poison()], nan_policy="stop")
        phase._pipeline = pipeline
        res = phase.execute(graph, show_training_progress=False)
        out[pipeline] = (res.nan_stop, phase.epochs_run, graph.variables)
    assert out[True][:2] == out[False][:2] == ((2, 0), 2)
    _assert_same(out[True][2], out[False][2])
