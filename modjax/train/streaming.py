"""Streamed epochs: an epoch whose data exceeds the device byte budget runs as a few
scans over fixed-shape chunks.

Every chunk has the same number of batches ``k`` (the last one padded with fully
masked batches) and each store's chunk the same row capacity, so one compiled scan
serves every chunk of every epoch. Bindings whose data fits stay resident and only
their plan is sliced. The epoch program is built with ``skip_empty=True`` so the
padding batches leave the carry untouched and the streamed run trains exactly like
the resident one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from modjax.data.plan import IndexPlan

__all__ = ["stream_segments", "run_streamed_epoch"]


def stream_segments(feeds: Sequence[Any], plans: Sequence[IndexPlan]
                    ) -> Iterator[tuple[dict, dict, int, int]]:
    """``(stores, device_plans, first_batch, real_batches)`` per chunk of an epoch.

    Args:
        feeds: the phase's resolved bindings (each with ``key`` and ``store``).
        plans: this epoch's plan per feed (same number of batches).

    Returns:
        An iterator over the chunks, in batch order.
    """
    n = plans[0].n_batches
    big = [(f, p) for f, p in zip(feeds, plans) if not f.store.fits]
    k = min(f.store.chunk_batches(p) for f, p in big)
    chunks: dict[str, Iterator[tuple[dict, IndexPlan]]] = {}
    for f, p in big:
        if f.store.chunk_batches(p) != k:
            # align chunk boundaries across bindings: shrink this store's budget to k batches
            per_row = f.store.nbytes // max(f.store.n_samples, 1)
            f.store.byte_budget = k * p.batch_size * len(p.roles) * per_row
        chunks[f.key] = f.store.epoch_chunks(p)
    for start in range(0, n, k):
        stores, dplans = {}, {}
        for f, p in zip(feeds, plans):
            if f.key in chunks:
                stores[f.key], dplans[f.key] = next(chunks[f.key])
            else:
                stores[f.key], dplans[f.key] = f.store.epoch_arrays(
                    p.batches(start, start + k).pad_batches_to(k))
        yield stores, dplans, start, min(k, n - start)


def run_streamed_epoch(scan: Callable[[Any, dict, dict], tuple[Any, Any]], carry: Any,
                       feeds: Sequence[Any], plans: Sequence[IndexPlan], *,
                       on_chunk: Callable[[int], None] | None = None) -> tuple[Any, Any]:
    """Run one streamed epoch chunk by chunk.

    Args:
        scan: ``scan(carry, stores, device_plans) -> (carry, per-batch outputs)``, the
            compiled epoch program (built with ``skip_empty=True``).
        carry: the carry at the start of the epoch.
        feeds: the phase's resolved bindings.
        plans: this epoch's plan per feed.
        on_chunk: called with the number of real batches of each dispatched chunk
            (progress bars).

    Returns:
        ``(carry, outputs)`` with the outputs of the epoch's real batches only.
    """
    outs = []
    for stores, dplans, _, n_real in stream_segments(feeds, plans):
        carry, o = scan(carry, stores, dplans)
        outs.append(o)
        # wait for this chunk's scan before the next chunk is gathered and uploaded:
        # with asynchronous dispatch the host would otherwise run ahead, every queued
        # scan holding its chunk, and several chunks would be alive at once
        jax.block_until_ready(carry)
        del stores, dplans
        if on_chunk is not None:
            on_chunk(n_real)
    n = plans[0].n_batches
    out = outs[0] if len(outs) == 1 else jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
    return carry, jax.tree.map(lambda a: a[:n], out)  # drop the last chunk's padding batches
