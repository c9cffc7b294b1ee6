"""Blocks of epochs: several epochs of a TrainPhase in one dispatch.

When no hook needs the host between epochs (no callback reads or changes the running
state, no checkpointing, no observer, no visible progress bar) and every sampler's plans
are value-blind, a TrainPhase runs ``BLOCK`` epochs per dispatch
(:func:`~modjax.train.epoch_program.block_program`): their plans are made together and
go to the device in the same call, and their losses come back in one transfer. The
loop still sees the epochs one by one, in order, each with its own record; the
samplers' counters advance as each epoch is handed out.

An epoch of a block computes exactly what the one-epoch program computes. If the phase
ends inside a block (a callback stops it, or the NaN policy), the block is run again from
its starting carry with only the epochs that were kept active, so the final variables
equal those of a run that dispatches epoch by epoch, bit for bit. The next block is
dispatched before the current one's losses are read; it is dropped if the phase ends
first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from modjax.data.plan import IndexPlan
from modjax.train.feeds import Feed, binding_records, stack_feeds
from modjax.train.programs import counting_traces
from modjax.train.results import EpochRecord

__all__ = ["BLOCK", "Block", "BlockRunner", "blockable"]

#: epochs per block (a static size: one compiled program for every block and phase)
BLOCK = 8


def blockable(feeds: Sequence[Feed], samplers: Sequence[Any], hooks: Sequence[Any], *,
              mesh: Any, streaming: bool, batch_hooks: bool) -> bool:
    """Whether a TrainPhase may run its epochs in blocks.

    Args:
        feeds: the resolved bindings.
        samplers: their distinct samplers.
        hooks: the loop's hooks.
        mesh: the phase's mesh (blocks run on one device).
        streaming: the data is streamed in chunks.
        batch_hooks: some hook acts at batch boundaries.

    Returns:
        True when nothing needs the host between epochs and every plan can be made
        ahead from the sampler's counters alone.
    """
    if mesh is not None or streaming or batch_hooks:
        return False
    if any(h.needs_host for h in hooks):
        return False
    return all(not s.plan_reads_values for s in samplers) and all(
        f.store.fits and not f.store.shard_rows for f in feeds)


@dataclass
class Block:
    """A dispatched block.

    Attributes:
        start: its first epoch.
        n: epochs it holds (the rest of the ``BLOCK`` slots are inactive).
        bases: each sampler's epoch counter at the block's first epoch.
        keys: each sampler's plan key (without the counter) when the plans were made.
        carry_in: the carry it started from.
        plans: per epoch, the scheduled plans per feed (host).
        device_plans: what was passed to the program (per slot).
        stores: the feeds' device arrays.
        carry_out: the carry after its ``n`` epochs (maybe still computing).
        out: per-epoch per-batch outputs (leading ``BLOCK`` axis).
    """

    start: int
    n: int
    bases: tuple[int, ...]
    keys: tuple
    carry_in: Any
    plans: list[list[IndexPlan]]
    device_plans: list[dict]
    stores: dict
    carry_out: Any = None
    out: Any = None


class BlockRunner:
    """Makes, dispatches, confirms and (on an early end) re-runs blocks for TrainEpochs.

    Args:
        phase: the TrainPhase (its carry, losses, counters).
        fn: the block program.
        feeds: the resolved bindings.
        samplers: their distinct samplers.
        schedule: ``(raw plans per sampler) -> plans per feed`` for one epoch.
        n_epochs: the phase's epochs.
    """

    def __init__(self, phase: Any, fn: Any, feeds: Sequence[Feed], samplers: Sequence[Any],
                 schedule: Any, n_epochs: int) -> None:
        self.phase, self.fn, self.feeds, self.samplers = phase, fn, feeds, samplers
        self.schedule, self.n_epochs = schedule, n_epochs
        self.current: Block | None = None
        self.next: Block | None = None
        self.records: list[EpochRecord] = []
        self.kept = 0  # epochs of the current block the loop recorded

    # ----------------------------------------------------------------- make / dispatch
    def _key(self, s: Any) -> tuple:
        src = s.source
        return (s.seed, s.batch_size, s.shuffle, s.drop_last, id(src), src.n_samples)

    def _make(self, start: int, bases: tuple[int, ...], carry: Any) -> Block:
        n = min(BLOCK, self.n_epochs - start)
        plans = [self.schedule([s.plan(b + j) for s, b in zip(self.samplers, bases)])
                 for j in range(n)]
        device, stores = [], {}
        for ps in plans:
            stores, dp = stack_feeds(self.feeds, ps)
            device.append(dp)
        if n < BLOCK:
            device += [self._filler_like(device[0])] * (BLOCK - n)
        block = Block(start, n, bases, tuple(self._key(s) for s in self.samplers), carry,
                      plans, device, stores)
        block.carry_out, block.out = self._run(block, n)
        return block

    def _filler_like(self, plan: dict) -> dict:
        """A plan for the inactive slots of a block: never read, so its indices are zeros
        kept on the device by the phase (made once, ready: uploading or creating them per
        block would make the block's dispatch wait for them)."""
        cache = self.phase.__dict__.setdefault("_block_fillers", {})

        def zeros(a: Any) -> Any:
            key = (a.shape, str(a.dtype))
            if key not in cache:
                cache[key] = jax.block_until_ready(jax.device_put(np.zeros(a.shape, a.dtype)))
            return cache[key]

        return jax.tree.map(zeros, plan)

    def _run(self, block: Block, n: int) -> tuple[Any, Any]:
        active = np.arange(BLOCK) < n
        with counting_traces(self.phase):
            return self.fn(block.carry_in, block.stores, block.device_plans, active)

    def _valid(self, block: Block | None, start: int) -> bool:
        return (block is not None and block.start == start
                and block.carry_in is self.phase._carry
                and block.bases == tuple(s.epoch for s in self.samplers)
                and block.keys == tuple(self._key(s) for s in self.samplers))

    def epoch(self, epoch: int) -> tuple[EpochRecord, int]:
        """The record of ``epoch`` and its batch count; dispatches a block when ``epoch``
        starts one (the speculative next block when it is still valid)."""
        if not self.records:
            self._start(epoch)
        rec = self.records.pop(0)
        for s in self.samplers:
            s.epoch += 1
        return rec, len(rec.loss)

    def _start(self, epoch: int) -> None:
        block = self.next if self._valid(self.next, epoch) else None
        if block is None:
            if self.next is not None:
                self.phase._discarded += 1
            block = self._make(epoch, tuple(s.epoch for s in self.samplers), self.phase._carry)
        self.next, self.current, self.kept = None, block, 0
        self.phase._carry = block.carry_out
        end = block.start + block.n
        if end < self.n_epochs:  # dispatch the next block before reading this one's losses
            self.next = self._make(end, tuple(b + block.n for b in block.bases),
                                   block.carry_out)
        self.records = self._records(block)

    def _records(self, block: Block) -> list[EpochRecord]:
        """One record per epoch of the block (its one device->host loss transfer)."""
        out = block.out
        table = np.asarray(out["loss_table"])
        labels = [al.label for al in self.phase.losses]
        recs = []
        for j in range(block.n):
            rec = EpochRecord(block.start + j, table[j, :, 0],
                              {lbl: table[j, :, i + 1] for i, lbl in enumerate(labels)},
                              _take(out["records"], j),
                              binding_records(self.feeds, block.plans[j]))
            rec.metric_stats = _take(out["metric_stats"], j)  # type: ignore[attr-defined]
            recs.append(rec)
        return recs

    # ----------------------------------------------------------------- early end
    def truncate(self, keep: int) -> None:
        """The phase ends after ``keep`` epochs of the current block: the carry becomes
        the state after exactly those epochs (a re-run of the block's prefix)."""
        block = self.current
        self.records = []
        if self.next is not None:
            self.phase._discarded += 1
            self.next = None
        if block is None or keep >= block.n:
            return
        self.phase._discarded += 1
        if keep == 0:
            self.phase._carry = block.carry_in
            return
        self.phase._carry = self._run(block, keep)[0]

    def end(self) -> None:
        """The loop is done: drop what was computed past the last recorded epoch."""
        self.truncate(self.kept)


def _take(tree: Any, j: int) -> Any:
    """Epoch ``j`` of a block's stacked outputs."""
    return jax.tree.map(lambda a: a[j], tree)
