"""Scan-driven training feeds the Observer once per epoch, same history as a manual loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax.observe import Observer

N_BATCHES, BATCH, EPOCHS = 6, 8, 4


def _loss(w, x, y, mask):
    err = (x @ w - y) ** 2
    return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@pytest.fixture(scope="module")
def problem():
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (N_BATCHES, BATCH, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.1
    mask = jnp.ones((N_BATCHES, BATCH)).at[-1, 5:].set(0.0)  # a padded last batch
    opt = optax.sgd(0.05)

    def step(carry, batch):
        w, s = carry
        loss, g = jax.value_and_grad(_loss)(w, *batch)
        upd, s = opt.update(g, s, w)
        return (optax.apply_updates(w, upd), s), {"loss": loss, "gnorm": optax.global_norm(g)}

    epoch = jax.jit(lambda carry: jax.lax.scan(step, carry, (x, y, mask)))
    step_jit = jax.jit(step)
    w0 = jax.random.normal(kw, (3,))
    return epoch, step_jit, (w0, opt.init(w0)), (x, y, mask)


def test_scan_epochs_match_per_batch_loop(problem):
    epoch, step_jit, carry0, (x, y, mask) = problem
    scan_obs, loop_obs = Observer(), Observer()
    scan_obs.mark_start()
    carry = carry0
    for _ in range(EPOCHS):
        carry, metrics = epoch(carry)  # one compiled scan; metrics: {tag: (N_BATCHES,)}
        scan_obs.record_batches(metrics, weights=mask.sum(axis=1))
        scan_obs.flush()
    carry = carry0
    for _ in range(EPOCHS):
        for b in range(N_BATCHES):
            carry, m = step_jit(carry, (x[b], y[b], mask[b]))
            for _rep in range(int(mask[b].sum())):  # sample-weighted, as the scan feed is
                loop_obs.record("loss", m["loss"])
                loop_obs.record("gnorm", m["gnorm"])
        loop_obs.flush()
    assert scan_obs.flush_count() == loop_obs.flush_count() == EPOCHS
    for tag in ("loss", "gnorm"):
        np.testing.assert_allclose(scan_obs.trend(tag).values(), loop_obs.trend(tag).values(),
                                   rtol=2e-6)
    assert scan_obs.trend("loss").improving(0)
    assert scan_obs.trend("loss").latest() < scan_obs.trend("loss").values()[0] / 2
