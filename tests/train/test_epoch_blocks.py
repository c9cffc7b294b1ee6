"""Blocks of epochs (several epochs per dispatch) train exactly like epoch-by-epoch runs.

Each test compares a phase that may run blocks with one that dispatches every epoch on
its own (``phase._pipeline = False``): the same epochs with the same losses, and
bit-identical final variables, optimizer state and sampler counters, also when the
phase ends inside a block.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from train_helpers import make_featureset, make_mlp_graph, train_phase

from modjax import Callback, EarlyStopping, Optimizer
from modjax.train import clear_program_cache
from modjax.train.epoch_blocks import BLOCK


def _same(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _run(blocks: bool, *, n_epochs: int, callbacks=(), optimizer=None, **kw):
    clear_program_cache()  # n_traces then counts this phase's compilations
    fs = make_featureset(n=128)
    graph = make_mlp_graph(fs, optimizer=optimizer)
    phase = train_phase(n_epochs=n_epochs, callbacks=list(callbacks), **kw)
    phase._pipeline = blocks
    res = phase.execute(graph, show_training_progress=False)
    sampler = phase.input_sources[0].sampler
    losses = [res.metrics.epoch_value("train_loss", e) for e in res.epoch_indices]
    return graph, phase, res, sampler, losses


def test_blocks_train_like_epoch_by_epoch(fresh_context, monkeypatch):
    from modjax.train.epoch_blocks import BlockRunner

    calls = []
    run = BlockRunner._run
    monkeypatch.setattr(BlockRunner, "_run", lambda self, b, n: calls.append(n) or run(self, b, n))
    n = 2 * BLOCK + 3  # two full blocks and a partial one
    out = {b: _run(b, n_epochs=n) for b in (True, False)}
    assert calls == [BLOCK, BLOCK, 3]  # three dispatches for 19 epochs (none without blocks)
    (g1, p1, r1, s1, l1), (g0, p0, r0, s0, l0) = out[True], out[False]
    assert p1.n_traces == 1  # every block, the partial one too: one program
    assert l1 == l0 and len(l1) == n
    assert s1.epoch == s0.epoch == n and p1.epochs_run == p0.epochs_run == n
    _same(g1.variables, g0.variables)
    _same(g1.opt_state, g0.opt_state)
    for e in (0, BLOCK, n - 1):
        np.testing.assert_array_equal(r1.epochs[e].loss, r0.epochs[e].loss)
        np.testing.assert_array_equal(r1.epochs[e].bindings["mlp"].indices["default"],
                                      r0.epochs[e].bindings["mlp"].indices["default"])


def test_records_and_metrics_of_each_epoch_match(fresh_context):
    from modjax import AppliedMetric

    kw = dict(n_epochs=BLOCK + 2, result_recording="all",
              metrics=[AppliedMetric("mae", on="mlp")])
    (_, _, r1, _, _), (_, _, r0, _, _) = _run(True, **kw), _run(False, **kw)
    for e in range(BLOCK + 2):
        _same(r1.epochs[e].records, r0.epochs[e].records)
        assert r1.metrics.epoch_value("train_mae", e) == r0.metrics.epoch_value("train_mae", e)


@pytest.mark.parametrize("stop_after", [0, 2, BLOCK - 1, BLOCK + 1])
def test_an_early_stop_inside_a_block_ends_exactly_there(fresh_context, stop_after):
    class _StopAt(EarlyStopping):
        """Stops after ``stop_after`` reading metrics only (a subclass must opt in)."""

        @property
        def needs_training_state(self) -> bool:
            return False

        def on_epoch_end(self, *, phase, epoch, results, **kw) -> None:
            if epoch == stop_after:
                phase.request_stop()

    out = {}
    for b in (True, False):
        g, p, r, s, losses = _run(b, n_epochs=3 * BLOCK, callbacks=[_StopAt()])
        out[b] = (g, p, r, s, losses)
    (g1, p1, _, s1, l1), (g0, p0, _, s0, l0) = out[True], out[False]
    assert l1 == l0 and len(l1) == stop_after + 1
    assert s1.epoch == s0.epoch == p1.epochs_run == p0.epochs_run == stop_after + 1
    assert p1.n_traces == 1  # the re-run of the block's prefix reuses its program
    _same(g1.variables, g0.variables)
    _same(g1.opt_state, g0.opt_state)


def test_early_stopping_on_train_loss_runs_in_blocks_and_stops_exactly(fresh_context):
    out = {}
    for b in (True, False):
        stop = EarlyStopping(monitor="train_loss", patience=1, min_delta=0.02)
        g, p, r, s, losses = _run(b, n_epochs=3 * BLOCK, callbacks=[stop])
        out[b] = (g.variables, losses, stop.stopped_epoch, s.epoch, r.stopped_early)
    assert not stop.needs_training_state
    assert out[True][2] is not None and out[True][1:] == out[False][1:]
    _same(out[True][0], out[False][0])


def test_a_nan_stop_inside_a_block_keeps_the_last_finite_epoch(fresh_context):
    # plain SGD with a huge step diverges after a few epochs
    out = {}
    for b in (True, False):
        opt = Optimizer("sgd", opt_kwargs={"lr": 40.0})
        g, p, r, s, losses = _run(b, n_epochs=3 * BLOCK, optimizer=opt, nan_policy="stop")
        out[b] = (r.nan_stop, p.epochs_run, s.epoch, losses, g.variables)
    assert out[True][0] is not None and 0 < out[True][0][0] < 3 * BLOCK
    assert out[True][:4] == out[False][:4]
    _same(out[True][4], out[False][4])


def test_a_callback_reading_the_state_gets_every_epoch_on_its_own(fresh_context):
    class _Params(Callback):
        def __init__(self) -> None:
            super().__init__(label="params")
            self.seen = []

        def on_epoch_end(self, *, phase, **kw) -> None:
            self.seen.append(jax.tree.map(np.asarray, phase.current_variables()["params"]))

    cbs = {b: _Params() for b in (True, False)}
    for b in (True, False):
        _run(b, n_epochs=BLOCK + 1, callbacks=[cbs[b]])
    assert len(cbs[True].seen) == BLOCK + 1
    _same(cbs[True].seen, cbs[False].seen)  # no block: each epoch's own state


def test_recording_only_the_last_epoch_runs_epoch_by_epoch(fresh_context, monkeypatch):
    # "last" keeps one epoch's recorded tensors alive; a block would hold several
    from modjax.train.epoch_blocks import BlockRunner

    calls = []
    run = BlockRunner._run
    monkeypatch.setattr(BlockRunner, "_run", lambda self, b, n: calls.append(n) or run(self, b, n))
    (g1, _, r1, _, l1), (g0, _, _, _, l0) = (_run(b, n_epochs=BLOCK + 1, result_recording="last")
                                             for b in (True, False))
    assert calls == [] and l1 == l0
    assert [e for e, rec in r1.epochs.items() if rec.records is not None] == [BLOCK]
    _same(g1.variables, g0.variables)
