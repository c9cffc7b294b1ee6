"""A TrainPhase's starting key is made by one compiled call, equal to the eager
``fold_in(key(seed), epochs_run)`` for every seed, including ones wider than 32 bits."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from modjax.train.epoch_program import start_key as _start_key


@pytest.mark.parametrize("seed", [0, 7, -5, 2**31 - 1, -2**31, 2**31, 2**40])
@pytest.mark.parametrize("epochs_run", [0, 3, 2**31 - 1])
def test_start_key_equals_the_eager_fold_in(seed, epochs_run):
    want = jax.random.fold_in(jax.random.key(seed), epochs_run)
    got = _start_key(seed, epochs_run)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(got)),
                                  np.asarray(jax.random.key_data(want)))
