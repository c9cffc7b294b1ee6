"""Checkpoint save/restore time of modjax graphs against bare Orbax and NumPy in the same run.

Graphs: the reference workload's SequentialMLP(n_layers=2, hidden_dim=32) on 10 features
(10 -> 32 -> 1) and a ~50M-parameter SequentialMLP (10 -> 4096 x 4 -> 1), both with an
Adam optimizer state (so the 50M graph writes ~150M floats: params + two moments).
The load average is printed with the figures (the machine may be shared).

What is timed (median of ``--repeats`` runs, each to a fresh directory; the three
writers, then the three readers, run round-robin so they share the machine's state):
  modjax    ``graph.save_checkpoint(path)`` / ``graph.restore_checkpoint(path)``: atomic
            generation + manifest + fsync + Orbax, restore checks sizes/structure and
            places arrays with the graph's shardings.
  orbax     ``ocp.PyTreeCheckpointer().save/restore`` of the same {variables, opt_state}
            (no manifest, no fsync, no validation).
  numpy     ``np.savez`` of the flattened leaves + fsync / ``np.load`` of all of them.
  manager   Orbax's ``CheckpointManager`` (step directories finalized by an atomic rename,
            ``max_to_keep``), synchronous ``save(step, StandardSave)`` +
            ``wait_until_finished`` / ``restore(step, StandardRestore(target))``: what
            replacing modjax's atomic artifacts with it would cost.
  async     how long ``save_checkpoint(blocking=False)`` blocks the caller (snapshot
            and submission; the write itself overlaps with whatever runs next), and the
            same for an asynchronous ``CheckpointManager.save`` (each once the previous
            background save has landed).
  digests   the share of the modjax save and restore spent on the per-file sha256
            digests (recorded at save, verified when the checkpoint is opened), timed
            on the same checkpoints right after the runs above.

Run:  .venv/bin/python benchmarks/bench_checkpoint.py [--repeats 5] [--skip-large]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from modjax import FeatureSet, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.context import ExperimentContext
from modjax.io.atomic import resolve_artifact
from modjax.io.checkpoints import _file_records, open_artifact


def make_graph(hidden: int, n_layers: int) -> ModelGraph:
    r = np.random.default_rng(0)
    fs = FeatureSet.from_dict("Data", {"x": r.normal(size=(8, 10)).astype(np.float32),
                                       "y": r.normal(size=8)}, "x", "y")
    node = ModelNode("MLP", SequentialMLP(output_shape=(1,), n_layers=n_layers, hidden_dim=hidden),
                     upstream_ref=fs.reference())
    return ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3})).build(
        key=jax.random.key(0))


def n_params(graph: ModelGraph) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(graph.variables["params"]))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        jax.block_until_ready(jax.tree.leaves(_last[0])) if _last else None
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timed_after(fn, settle, repeats: int) -> float:
    """Median time of ``fn``, each call made after ``settle()`` returned (untimed)."""
    times = []
    for i in range(repeats):
        settle()
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    settle()
    return statistics.median(times)


def interleaved(fns, repeats: int) -> list[float]:
    """Median time of each function, run round-robin so that all see the same machine
    load and page-cache state (the box is shared)."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        for j, fn in enumerate(fns):
            t = time.perf_counter()
            fn(i)
            jax.block_until_ready(jax.tree.leaves(_last[0])) if _last else None
            times[j].append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


_last: list = []


def bench(name: str, graph: ModelGraph, repeats: int, root: Path) -> None:
    tree = {"variables": graph.variables, "opt_state": graph.opt_state}
    nbytes = sum(x.nbytes for x in jax.tree.leaves(tree))

    def mj_save(i):
        graph.save_checkpoint(root / f"mj{i}")

    pending = []

    def mj_async(i):
        # Only the part that blocks the training loop: snapshot + submission.
        pending.append(graph.save_checkpoint(root / f"mja{i}", blocking=False))

    def mj_restore(i):
        graph.restore_checkpoint(root / f"mj{i}")
        _last[:] = [graph.variables]

    def ocp_save(i):
        ocp.PyTreeCheckpointer().save((root / f"ocp{i}").absolute(), tree)

    def ocp_restore(i):
        out = ocp.PyTreeCheckpointer().restore((root / f"ocp{i}").absolute())
        _last[:] = [out]

    mgr = _manager(root / "mgr", asynchronous=False)
    amgr = _manager(root / "amgr", asynchronous=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)

    def mgr_save(i):
        mgr.save(i, args=ocp.args.StandardSave(tree))
        mgr.wait_until_finished()

    def mgr_async(i):
        amgr.save(i, args=ocp.args.StandardSave(tree))

    def mgr_restore(i):
        _last[:] = [mgr.restore(i, args=ocp.args.StandardRestore(abstract))]

    leaves = jax.tree.leaves(tree)

    def np_save(i):
        with open(root / f"np{i}.npz", "wb") as f:
            np.savez(f, *[np.asarray(x) for x in leaves])
            f.flush()
            os.fsync(f.fileno())

    def np_restore(i):
        with np.load(root / f"np{i}.npz") as z:
            _last[:] = [[z[k] for k in z.files]]

    _last.clear()
    s_mj, s_ocp, s_np, s_mgr = interleaved((mj_save, ocp_save, np_save, mgr_save), repeats)
    # each background save is timed once the previous one has landed (a save queued
    # behind another measures the queue, not the save)
    a_mj = timed_after(mj_async, lambda: [f.result() for f in pending], repeats)
    a_mgr = timed_after(mgr_async, amgr.wait_until_finished, repeats)
    r_mj, r_ocp, r_np, r_mgr = interleaved((mj_restore, ocp_restore, np_restore, mgr_restore),
                                           repeats)
    mgr.close()
    amgr.close()
    print(f"\n{name}: {n_params(graph):,} params, checkpoint {nbytes / 2**20:.1f} MiB "
          f"(params + Adam state), median of {repeats}, load average {_load()}")
    print(f"  save     modjax {s_mj * 1e3:9.1f} ms | orbax {s_ocp * 1e3:9.1f} ms | "
          f"numpy {s_np * 1e3:9.1f} ms | modjax/orbax {s_mj / s_ocp:5.2f}x | "
          f"modjax/numpy {s_mj / s_np:5.2f}x")
    print(f"  manager  save {s_mgr * 1e3:9.1f} ms | restore {r_mgr * 1e3:9.1f} ms | "
          f"modjax/manager save {s_mj / s_mgr:5.2f}x | restore {r_mj / r_mgr:5.2f}x")
    print(f"  async    modjax save_checkpoint(blocking=False) blocks the caller "
          f"{a_mj * 1e3:9.1f} ms = {a_mj / s_mj:5.2f}x of a blocking save | async "
          f"CheckpointManager.save blocks {a_mgr * 1e3:9.1f} ms")
    print(f"  restore  modjax {r_mj * 1e3:9.1f} ms | orbax {r_ocp * 1e3:9.1f} ms | "
          f"numpy {r_np * 1e3:9.1f} ms | modjax/orbax {r_mj / r_ocp:5.2f}x | "
          f"modjax/numpy {r_mj / r_np:5.2f}x")
    gens = [resolve_artifact(root / f"mj{i}") for i in range(repeats)]
    d_save = statistics.median(_time(lambda g=g: _file_records(g)) for g in gens)
    d_open = statistics.median(_time(lambda i=i: open_artifact(root / f"mj{i}"))
                               for i in range(repeats))
    print(f"  digests  sha256 of every file {d_save * 1e3:9.1f} ms = {d_save / s_mj:5.1%} of the "
          f"modjax save | open_artifact (sizes + digests) {d_open * 1e3:9.1f} ms = "
          f"{d_open / r_mj:5.1%} of the modjax restore")


def _manager(directory: Path, *, asynchronous: bool) -> ocp.CheckpointManager:
    """A CheckpointManager as a replacement would configure it (keep every step here:
    each repeat restores its own)."""
    return ocp.CheckpointManager(directory.absolute(), options=ocp.CheckpointManagerOptions(
        enable_async_checkpointing=asynchronous, create=True))


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-large", action="store_true", help="only the reference graph")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    with ExperimentContext(registration_policy="overwrite").activate():
        root = Path(tempfile.mkdtemp(prefix="mj_bench_ckpt_"))
        try:
            bench("reference SequentialMLP(n_layers=2, hidden_dim=32) 10->32->1", make_graph(32, 2),
                  args.repeats, root)
            if not args.skip_large:
                shutil.rmtree(root)
                root.mkdir()
                bench("large SequentialMLP 10->4096x4->1", make_graph(4096, 5),
                      max(1, min(args.repeats, 3)), root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
