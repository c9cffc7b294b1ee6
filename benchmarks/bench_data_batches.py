"""Batch path: index plan + on-device gather vs numpy fancy indexing.

One epoch over 1,000,000 x 64 float32 rows in batches of 256:

* reference: ``x[idx]`` numpy fancy indexing of every batch of the same plan (the
  batches a host loader would hand to a model);
* modjax: ``SimpleSampler.next_plan()`` (a fresh shuffled plan), ``DeviceStore.put_plan``
  and one jitted ``lax.scan`` that gathers every batch on the device (the store is put
  on the device once per phase, outside the epoch, as a TrainPhase does).

The scan consumes each batch with a per-batch sum so the gather cannot be skipped.
Prints both times and the speed ratio (claim: modjax >= 0.5 x the reference speed).

Run: python benchmarks/bench_data_batches.py [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax import FeatureSet, SimpleSampler
from modjax.data import DeviceStore, gather_plan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    fs = FeatureSet.from_dict("rows", {"x": x, "y": rng.standard_normal(args.rows)}, "x", "y",
                              register=False)
    xs = fs.get_features()[:, 0]  # the same rows as a plain numpy array (zero-copy view)
    sampler = SimpleSampler(args.batch, seed=0, source=fs)
    store = DeviceStore(fs)
    jax.block_until_ready(jnp.zeros(1) + 1)  # start the backend outside the timing
    t0 = time.perf_counter()
    arrays = jax.block_until_ready(store.arrays)
    t_put = time.perf_counter() - t0

    @jax.jit
    def epoch(arrays, plan):
        def step(c, s):
            b = gather_plan(arrays, s)["default"]
            return c, jnp.sum(b["features"] * b["weights"][:, None, None])
        return jax.lax.scan(step, 0.0, plan)[1]

    jax.block_until_ready(epoch(arrays, store.put_plan(sampler.plan(0))))  # compile once

    def ours():
        plan = sampler.next_plan()
        return jax.block_until_ready(epoch(arrays, store.put_plan(plan)))

    def reference(idx):
        return [xs[i] for i in idx]

    host_plan = sampler.plan(0).indices["default"]
    t_ours, t_ref = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        reference(host_plan)
        t_ref.append(time.perf_counter() - t0)
    # correctness: the device batches equal numpy's
    p = sampler.plan(0)
    sums = np.asarray(epoch(arrays, store.put_plan(p)))
    ref = np.array([(xs[i] * m[:, None]).sum() for i, m in zip(p.indices["default"],
                                                                p.mask["default"])])
    np.testing.assert_allclose(sums, ref, rtol=1e-3, atol=1e-2)
    to, tr = min(t_ours), min(t_ref)
    nb = host_plan.shape[0]
    print(f"{args.rows:,} x {args.cols} float32, batch {args.batch}: {nb} batches/epoch; "
          f"store put on device once: {t_put * 1e3:.1f} ms")
    print(f"numpy x[idx] per batch (reference): {tr * 1e3:8.1f} ms/epoch")
    print(f"modjax plan + on-device gather:     {to * 1e3:8.1f} ms/epoch "
          f"(incl. shuffled plan {args.rows:,} rows + transfer)")
    ratio = tr / to
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1/5/15 min): {load} on {os.cpu_count()} cores")
    print(f"speed ratio modjax / numpy = {ratio:.2f} (claim: >= 0.5) -> "
          f"{'PASS' if ratio >= 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
