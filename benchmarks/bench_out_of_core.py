"""Out-of-core FeatureSet: one training epoch over a Parquet file larger than the budget.

A Parquet file of ``--rows`` x ``--cols`` float32 features (plus a target) is generated
row group by row group. Two fresh subprocesses then train the same MLP one epoch over
it with ``TrainPhase(byte_budget=...)`` (the file is >= 4 x the budget, so the epoch
streams in chunks):

* reference: the whole file read into memory (``pq.read_table`` ->
  ``FeatureSet.from_pyarrow_table``);
* parquet: ``FeatureSet.from_parquet`` (decoded batch by batch into a memory-mapped
  Arrow IPC file, read row by row by the device store's chunks); the conversion is
  inside the measured window;
* arrow_ipc: ``FeatureSet.from_arrow_ipc`` on that converted file (memory-mapped, no
  conversion): the steady state of a dataset kept on disk in Arrow IPC form.

Each process samples ``RssAnon`` from ``/proc/self/status`` every 5 ms and reports the
peak growth over its level just before the data is opened, after a warm-up epoch on a
small in-memory set with the same chunk shapes (so JAX's runtime and the compiled epoch
are already resident; that level is printed separately) and after importing
``pyarrow.parquet`` / ``pyarrow.dataset`` in every mode (their libraries' relocated data
is a fixed ~30 MiB of anonymous memory whatever the file; printed separately too). Prints both peaks as fractions of the
Parquet file's size (claim: out-of-core < 0.25) and the largest difference of the final
parameters from the in-memory run (claim: equal, bit-exact).

Run: python benchmarks/bench_out_of_core.py [--rows N] [--cols C] [--budget-mb B]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_anon_kb()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_anon_kb())
            time.sleep(0.005)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, rss_anon_kb())


def generate(path: Path, rows: int, cols: int, group: int = 131072) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(0)
    w = rng.standard_normal(cols).astype(np.float32)
    schema = pa.schema([(f"x{i}", pa.float32()) for i in range(cols)] + [("y", pa.float32())])
    with pq.ParquetWriter(str(path), schema, compression="none") as writer:
        for s in range(0, rows, group):
            x = rng.standard_normal((min(group, rows - s), cols), dtype=np.float32)
            cols_ = {f"x{i}": x[:, i] for i in range(cols)}
            cols_["y"] = np.tanh(x @ w / np.sqrt(cols)).astype(np.float32)
            writer.write_table(pa.table(cols_, schema=schema))


def child(mode: str, path: str, cols: int, budget: int, batch: int) -> None:
    import jax

    from modjax.context import ExperimentContext
    from modjax.data import FeatureSet, SimpleSampler
    from modjax.graph import ModelGraph, ModelNode, SequentialMLP
    from modjax.train import AppliedLoss, InputBinding, Optimizer, TrainPhase

    keys = [f"x{i}" for i in range(cols)]

    def train(fs: Any) -> Any:
        node = ModelNode("mlp", SequentialMLP(n_layers=2, hidden_dim=16),
                         upstream_ref=fs.reference())
        g = ModelGraph([node], optimizer=Optimizer("adam", opt_kwargs={"lr": 1e-3})).build(key=0)
        phase = TrainPhase("t", input_sources=[InputBinding.for_training(
            node="mlp", sampler=SimpleSampler(batch, seed=0))],
            losses=[AppliedLoss("mse", on="mlp", inputs=["outputs", "targets"])],
            n_epochs=1, byte_budget=budget, result_recording="none")
        phase.execute(g, show_training_progress=False)
        return g

    # warm-up on a small in-memory set with the same chunk shapes: JAX's runtime and the
    # compiled epoch are in memory before the baseline, so the growth is the data's
    rng = np.random.default_rng(1)
    warm_rows = 3 * (budget // ((cols + 3) * 4))
    with ExperimentContext(registration_policy="overwrite").activate():
        train(FeatureSet.from_dict("big", {**{k: rng.standard_normal(warm_rows).astype(
            np.float32) for k in keys}, "y": np.zeros(warm_rows, np.float32)}, keys, "y"))
    before_imports = rss_anon_kb()
    import pyarrow.dataset  # noqa: F401 - library code, not data: outside the growth
    import pyarrow.parquet  # noqa: F401
    base = rss_anon_kb()
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    with ExperimentContext(registration_policy="overwrite").activate():
        if mode == "in_memory":
            import pyarrow.parquet as pq
            fs = FeatureSet.from_pyarrow_table("big", pq.read_table(path), feature_keys=keys,
                                               target_keys="y")
        elif mode == "parquet":
            fs = FeatureSet.from_parquet("big", path, feature_keys=keys, target_keys="y",
                                         cache_path=Path(path).with_suffix(".arrow"))
        else:
            fs = FeatureSet.from_arrow_ipc("big", Path(path).with_suffix(".arrow"))
        g = train(fs)
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    params = [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(g.variables["params"])]
    print(json.dumps({"mode": mode, "base_kb": base, "peak_growth_kb": peak - base,
                      "imports_kb": base - before_imports,
                      "seconds": seconds, "params": params}))


def run_child(mode: str, args: argparse.Namespace, path: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--path", str(path), "--cols",
           str(args.cols), "--budget-mb", str(args.budget_mb), "--batch", str(args.batch)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode:
        raise SystemExit(f"{mode} run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--budget-mb", type=float, default=16.0)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--child", default=None)
    ap.add_argument("--path", default=None)
    args = ap.parse_args()
    budget = int(args.budget_mb * 2 ** 20)
    if args.child:
        child(args.child, args.path, args.cols, budget, args.batch)
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.parquet"
        generate(path, args.rows, args.cols)
        size = path.stat().st_size
        print(f"file: {args.rows} rows x {args.cols + 1} float32 columns, "
              f"{size / 2 ** 20:.1f} MiB Parquet; byte budget {args.budget_mb:.0f} MiB "
              f"({size / budget:.1f} x the budget)")
        ref = run_child("in_memory", args, path)
        pqt = run_child("parquet", args, path)
        ooc = run_child("arrow_ipc", args, path)
    for r in (ref, pqt, ooc):
        print(f"{r['mode']:>12}: peak RssAnon growth {r['peak_growth_kb'] / 1024:8.1f} MiB = "
              f"{r['peak_growth_kb'] * 1024 / size:5.3f} x file size  (JAX runtime before "
              f"the data: {r['base_kb'] / 1024:.0f} MiB, of which pyarrow.parquet/dataset "
              f"imports {r['imports_kb'] / 1024:.0f} MiB), epoch {r['seconds']:.1f} s")
    for r in (pqt, ooc):
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(ref["params"], r["params"]))
        ratio = r["peak_growth_kb"] / max(ref["peak_growth_kb"], 1)
        print(f"{r['mode']}: peak growth / in-memory's {ratio:.3f}; max |param difference| vs "
              f"in-memory {diff:.3g} ({'equal' if diff == 0 else 'DIFFERENT'}); claim (< 0.25 x "
              f"file size) {'met' if r['peak_growth_kb'] * 1024 < 0.25 * size else 'NOT met'}")


if __name__ == "__main__":
    main()
