"""A TrainPhase's compiled epoch: one jitted ``lax.scan`` over the epoch's batches.

The scan body gathers each batch on the device from the feeds' stores and calls the pure
step of :func:`~modjax.train.step.make_train_step`. Programs are kept in the structural
program cache (:func:`~modjax.train.programs.program`), keyed on everything the traced
function depends on, so a second phase of the same structure compiles nothing; the
frozen set is a traced mask in the carry, so freezing/unfreezing does not recompile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.train.feeds import Feed
from modjax.train.phases import ResultRecording
from modjax.train.programs import note_trace, program, spec_of
from modjax.train.step import check_stage_wise, make_train_step

__all__ = ["epoch_program", "block_program", "start_key"]


def epoch_program(phase: Any, graph: Any, feeds: Sequence[Feed], optimizer: Any, *,
                  chunked: bool, skip_empty: bool = False) -> Any:
    """The jitted epoch ``(carry, stores, plans) -> (carry, per-batch outputs)``.

    Args:
        phase: the TrainPhase (losses, metrics, recording, capture, mesh, dtype).
        graph: the graph it trains.
        feeds: the resolved bindings.
        optimizer: what :func:`~modjax.train.step.graph_optimizers` returned.
        chunked: the one-batch variant batch hooks use (same program, separate key).
        skip_empty: (streaming only) leave the carry untouched on the fully masked
            batches that pad the last chunk, so the padded run trains exactly like the
            resident one; the resident scan has no such select.

    Returns:
        The jitted function; its per-batch outputs are ``loss_table`` (total and
        per-label losses per row), ``records`` and ``metric_stats``.
    """
    record, sig = _signature(phase, graph, feeds, optimizer)
    sig = ("train_epoch", chunked, skip_empty, *sig)
    return program(sig, lambda: _jit_epoch(phase, graph, feeds, optimizer, record, skip_empty))


def block_program(phase: Any, graph: Any, feeds: Sequence[Feed], optimizer: Any, k: int) -> Any:
    """The jitted block of ``k`` epochs
    ``(carry, stores, plans, active) -> (carry, per-epoch per-batch outputs)``.

    ``plans`` is a sequence of ``k`` per-epoch plans (``{feed key: IndexPlan}``), stacked
    inside the program; epoch ``j`` runs only where ``active[j]`` (a bool vector), else
    the carry passes through and its outputs are zeros. A block thus computes exactly the
    epochs a run of :func:`epoch_program` would, one after the other, with one dispatch
    and one loss transfer for all of them; a shorter prefix of the same block (an early
    stop) reuses the same program.

    Args:
        phase, graph, feeds, optimizer: as for :func:`epoch_program`.
        k: epochs per block (a static size: one program for every block).

    Returns:
        The jitted function; outputs have a leading ``k`` axis.
    """
    record, sig = _signature(phase, graph, feeds, optimizer)
    sig = ("train_block", k, *sig)
    return program(sig, lambda: _jit_block(_scan_epoch(phase, graph, feeds, optimizer, record,
                                                       False)))


def _signature(phase: Any, graph: Any, feeds: Sequence[Feed], optimizer: Any
               ) -> tuple[list[str], tuple]:
    """The recorded nodes and everything a traced epoch depends on (the program key)."""
    record = (phase._record_nodes(graph)
              if phase.result_recording is not ResultRecording.NONE else [])
    # before the lookup: a cached program was checked against what was frozen then
    check_stage_wise(graph, optimizer, phase.active_nodes)
    sig = (graph.definition, tuple(spec_of(al) for al in phase.losses), spec_of(optimizer),
           tuple(f.key for f in feeds), phase.mesh, tuple(f.store.shard_rows for f in feeds),
           spec_of(phase.compute_dtype), tuple(record), phase.capture,
           spec_of(phase.active_nodes), tuple(spec_of(m) for m in phase.metrics))
    return record, sig


def _jit_epoch(phase: Any, graph: Any, feeds: Sequence[Feed], optimizer: Any,
               record: list[str], skip_empty: bool) -> Any:
    scan_epoch = _scan_epoch(phase, graph, feeds, optimizer, record, skip_empty)

    def epoch(carry, stores, plans):
        note_trace()  # Python runs only while tracing: counts compilations
        return scan_epoch(carry, stores, plans)

    fn = jax.jit(epoch)
    fn.step = scan_epoch.step  # type: ignore[attr-defined]
    return fn


def _jit_block(scan_epoch: Any) -> Any:
    def block(carry, stores, plans, active):
        note_trace()
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *plans)

        def one(c, xs):
            p, act = xs
            shapes = jax.eval_shape(scan_epoch, c, stores, p)[1]

            def skip(c):
                return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            return jax.lax.cond(act, lambda c: scan_epoch(c, stores, p), skip, c)

        return jax.lax.scan(one, carry, (stacked, active))

    return jax.jit(block)


def _scan_epoch(phase: Any, graph: Any, feeds: Sequence[Feed], optimizer: Any,
                record: list[str], skip_empty: bool) -> Any:
    """The epoch as a (not yet jitted) ``lax.scan`` of the pure step over the batches."""
    from modjax.train.precision import compute_graph
    step = make_train_step(compute_graph(graph, phase.compute_dtype), phase.losses, optimizer,
                           active_nodes=phase.active_nodes, capture=phase.capture,
                           record=record, metrics=phase.metrics)
    gathers = {f.key: f.store.gather_fn() for f in feeds}
    keys = [f.key for f in feeds]
    labels = [al.label for al in phase.losses]

    def epoch(carry, stores, plans):
        def body(carry, xs):
            batch = {k: gathers[k](stores[k], xs[k]) for k in keys}
            new, m = step(carry, batch)
            if skip_empty:
                real = jnp.any(jnp.stack([jnp.any(xs[k].mask[r]) for k in keys
                                          for r in xs[k].roles]))
                new = jax.tree.map(lambda a, b: jnp.where(real, a, b), new, carry)
            # total and per-label losses in one row: the epoch's only host transfer;
            # what a non-finite loss does is decided on the host from these rows
            row = jnp.stack([m["loss"]] + [m["losses"][lbl] for lbl in labels])
            # metric statistics stay on the device; combined once per epoch
            return new, {"loss_table": row, "records": m["records"],
                         "metric_stats": m["metric_stats"]}

        return jax.lax.scan(body, carry, plans)

    epoch.step = step  # type: ignore[attr-defined]
    return epoch


@jax.jit
def _start_key_fn(seed: Any, epochs_run: Any) -> Any:
    return jax.random.fold_in(jax.random.key(seed), epochs_run)


def start_key(seed: int, epochs_run: int) -> Any:
    """``fold_in(key(seed), epochs_run)``, a phase's starting PRNG key.

    One compiled call: done eagerly it is a few separate dispatches, a fixed cost of
    every execute. Seeds outside 32 bits, which ``jax.random.key`` splits into two
    words, take the eager path.

    Args:
        seed: the phase's seed.
        epochs_run: epochs the phase has run so far.

    Returns:
        A typed PRNG key.
    """
    if -2**31 <= seed < 2**31 and 0 <= epochs_run < 2**31:
        return _start_key_fn(np.int32(seed), np.uint32(epochs_run))
    return jax.random.fold_in(jax.random.key(seed), epochs_run)
