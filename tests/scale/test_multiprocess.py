"""Two JAX processes x 2 CPU devices on 127.0.0.1 train like one device; their
checkpoint restores bit-exactly in one process, in an 8-device process, and back."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.scale.harness import run_processes, run_single
from tests.train.train_helpers import make_featureset, make_mlp_graph

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mp")
    pair = run_processes("mp_train.py", str(base / "pair"), n=2, local_devices=2)
    single = run_single("mp_train.py", str(base / "single"), devices=1)
    return base, pair, single


def _flat(params):
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])


def test_two_processes_train_like_one_device(runs):
    _, pair, single = runs
    assert [p["process"] for p in pair] == [0, 1]
    assert all(p["devices"] == 4 for p in pair) and single["devices"] == 1
    # every process sees the same results (losses are replicated, records gathered)
    assert pair[0]["losses"] == pair[1]["losses"] and pair[0]["params"] == pair[1]["params"]
    assert len(pair[0]["losses"]) == len(single["losses"]) == 3 * 6
    np.testing.assert_allclose(pair[0]["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(_flat(pair[0]["params"]) - _flat(single["params"]))) < 1e-5
    # recorded batch outputs come back whole: [batches, global batch, 1]
    assert pair[0]["record_shape"] == single["record_shape"] == [6, 40, 1]


def test_pair_checkpoint_restores_in_one_process_bit_exactly(runs):
    base, pair, _ = runs
    assert jax.process_count() == 1
    g = make_mlp_graph(make_featureset(n=320))
    g.restore_checkpoint(base / "pair" / "ckpt")
    got = [np.asarray(x).ravel() for x in jax.tree.leaves(g.variables["params"])]
    want = [np.asarray(x, dtype=np.float32) for x in pair[0]["params"]]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_pair_checkpoint_restores_on_eight_devices_bit_exactly(runs):
    base, pair, _ = runs
    out = run_single("mp_train.py", str(base / "unused8"), str(base / "pair" / "ckpt"), devices=8)
    assert out["devices"] == 8 and out["params"] == pair[0]["params"]


def test_single_process_checkpoint_restores_in_the_pair_bit_exactly(runs):
    base, _, single = runs
    out = run_processes("mp_train.py", str(base / "unused2"), str(base / "single" / "ckpt"))
    assert [o["params"] == single["params"] for o in out] == [True, True]
