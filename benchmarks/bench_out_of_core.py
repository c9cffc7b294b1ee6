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
are already resident) and after importing ``pyarrow.parquet`` / ``pyarrow.dataset`` in
every mode (library data, a fixed ~20-30 MiB whatever the file). Every out-of-core run's
peak is printed as a fraction of the Parquet file's size against the bound (claim: < 0.25
in every run, at every size), with the largest difference of the final parameters from
the in-memory run (claim: equal, bit-exact) and the load average. Each size is one file;
the out-of-core modes run ``--repeats`` times each, interleaved.

Run: python benchmarks/bench_out_of_core.py [--rows N [N ...]] [--repeats R] [--cols C]
[--budget-mb B]
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

    from modjax import (
        AppliedLoss,
        FeatureSet,
        InputBinding,
        ModelGraph,
        ModelNode,
        Optimizer,
        SequentialMLP,
        SimpleSampler,
        TrainPhase,
    )
    from modjax.context import ExperimentContext

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


#: the claim: peak anonymous memory growth of an out-of-core epoch over the file's size
BOUND = 0.25


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def max_param_diff(ref: dict, run: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(ref["params"], run["params"]))


def bench_size(rows: int, args: argparse.Namespace, budget: int, d: str) -> list[dict]:
    """One file of ``rows`` rows: the in-memory reference, then the out-of-core modes
    ``--repeats`` times, interleaved. Returns one summary row per mode."""
    path = Path(d) / f"big{rows}.parquet"
    generate(path, rows, args.cols)
    size = path.stat().st_size
    print(f"\nfile: {rows} rows x {args.cols + 1} float32 columns, {size / 2 ** 20:.1f} MiB "
          f"Parquet; byte budget {args.budget_mb:g} MiB ({size / budget:.1f} x the budget); "
          f"load {loadavg()}")
    ref = run_child("in_memory", args, path)
    print(f"   in_memory: peak RssAnon growth {ref['peak_growth_kb'] / 1024:8.1f} MiB = "
          f"{ref['peak_growth_kb'] * 1024 / size:5.3f} x file  (JAX runtime before the data "
          f"{ref['base_kb'] / 1024:.0f} MiB), epoch {ref['seconds']:.1f} s")
    runs: dict[str, list[dict]] = {"parquet": [], "arrow_ipc": []}
    for rep in range(args.repeats):
        for mode in runs:
            if mode == "arrow_ipc" and not path.with_suffix(".arrow").exists():
                continue  # converted by the parquet run
            r = run_child(mode, args, path)
            r["ratio"], r["diff"] = r["peak_growth_kb"] * 1024 / size, max_param_diff(ref, r)
            runs[mode].append(r)
            print(f"   {mode:>9} #{rep + 1}: peak RssAnon growth "
                  f"{r['peak_growth_kb'] / 1024:8.1f} MiB = {r['ratio']:5.3f} x file "
                  f"(bound {BOUND}: {'met' if r['ratio'] < BOUND else 'NOT met'}); "
                  f"max |param diff| vs in-memory {r['diff']:.3g}; epoch {r['seconds']:.1f} s; "
                  f"load {loadavg()}")
    path.with_suffix(".arrow").unlink(missing_ok=True)
    path.unlink()
    return [{"rows": rows, "mib": size / 2 ** 20, "x_budget": size / budget, "mode": m,
             "ratios": [r["ratio"] for r in rs], "equal": all(r["diff"] == 0 for r in rs),
             "vs_in_memory": max(r["peak_growth_kb"] for r in rs) / max(ref["peak_growth_kb"], 1)}
            for m, rs in runs.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 4_000_000],
                    help="file sizes in rows (one file per size)")
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--budget-mb", type=float, default=16.0)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of each out-of-core mode per size (the bound must hold in each)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--path", default=None)
    args = ap.parse_args()
    budget = int(args.budget_mb * 2 ** 20)
    if args.child:
        child(args.child, args.path, args.cols, budget, args.batch)
        return
    with tempfile.TemporaryDirectory() as d:
        table = [row for rows in args.rows for row in bench_size(rows, args, budget, d)]
    print(f"\nsummary: peak RssAnon growth / Parquet file size, bound < {BOUND} in every run")
    print(f"{'rows':>10} {'file MiB':>9} {'x budget':>8} {'mode':>10} {'max':>6} {'median':>6} "
          f"{'vs in-memory':>12}  bound  params")
    ok = True
    for t in table:
        worst = max(t["ratios"])
        ok &= worst < BOUND and t["equal"]
        print(f"{t['rows']:>10} {t['mib']:>9.1f} {t['x_budget']:>8.1f} {t['mode']:>10} "
              f"{worst:>6.3f} {float(np.median(t['ratios'])):>6.3f} {t['vs_in_memory']:>12.3f}  "
              f"{'met  ' if worst < BOUND else 'NOT  '}  {'equal' if t['equal'] else 'DIFFERENT'}")
    print(f"claim (every run < {BOUND} x file size, parameters equal the in-memory run): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
