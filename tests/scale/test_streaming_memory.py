"""The streamed epoch keeps at most one chunk alive while it builds the next."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.train import streaming


class _Chunk(dict):
    """A chunk's store arrays (a dict subclass, so it can be weakly referenced)."""


class _FakeStore:
    fits = False
    nbytes = n_samples = 8
    byte_budget = 4

    def __init__(self, events: list, alive: list) -> None:
        self.events, self.alive = events, alive

    def chunk_batches(self, plan: IndexPlan) -> int:
        return 1

    def epoch_chunks(self, plan: IndexPlan):
        for i in range(plan.n_batches):
            gc.collect()
            # the chunks built before this one that something still holds
            self.events.append(("build", i, [j for j, r in enumerate(self.alive) if r()]))
            chunk = _Chunk(x=jnp.full((4,), float(i)))
            self.alive.append(weakref.ref(chunk))
            yield chunk, plan.batches(i, i + 1)
            del chunk


def test_streamed_epoch_waits_for_each_chunk_and_drops_it_before_the_next():
    events: list = []
    alive: list = []
    feed = SimpleNamespace(key="a", store=_FakeStore(events, alive))
    plan = IndexPlan.from_flat(np.arange(8), 2)  # 4 batches -> 4 chunks of one batch

    def scan(carry, stores, dplans):
        events.append(("scan", int(stores["a"]["x"][0])))
        return carry + stores["a"]["x"].sum(), jnp.zeros((1,))

    blocked = []
    real_block = streaming.jax.block_until_ready
    streaming.jax.block_until_ready = lambda x: blocked.append(len(events)) or real_block(x)
    try:
        carry, out = streaming.run_streamed_epoch(scan, jnp.zeros(()), [feed], [plan])
    finally:
        streaming.jax.block_until_ready = real_block
    assert float(carry) == 4 * (0 + 1 + 2 + 3) and out.shape == (4,)
    builds = [e for e in events if e[0] == "build"]
    # every earlier chunk is released before the next one is built
    assert [b[2] for b in builds] == [[], [], [], []]
    # and each chunk's scan is waited for right after its dispatch
    scans = [i for i, e in enumerate(events) if e[0] == "scan"]
    assert blocked == [i + 1 for i in scans]
