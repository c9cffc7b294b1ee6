"""Paired sampling: sparse candidate lists vs dense scoring of every pair.

A same-group ``PairedSampler`` over 20,000 samples (200 groups of 100):

* reference: what a straightforward sampler does every epoch, scoring all ``n^2``
  pairs (in blocks of anchors, so memory stays bounded) and drawing one partner per
  anchor with the Gumbel-max trick;
* modjax: ``PairedSampler`` finds each anchor's candidates once at bind time (sorted
  ranges of the condition column) and draws an epoch's partners with one
  ``searchsorted`` per anchor.

Both draws are checked to be valid pairs. Prints bind time, per-epoch plan time, the
reference's per-epoch time and the ratios (claim: an epoch's plan is >= 10x faster than
dense scoring, and bind + first plan is faster than one dense epoch).

Run: python benchmarks/bench_data_pairs.py [--rows N] [--groups G] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from modjax import FeatureSet, PairedSampler, SimilarityCondition


def dense_epoch(groups: np.ndarray, rng: np.random.Generator, block: int = 1000) -> np.ndarray:
    """One partner per anchor by scoring every pair (the n^2 reference)."""
    n = len(groups)
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        w = (groups[rows, None] == groups[None, :]).astype(np.float64)
        w[np.arange(len(rows)), rows] = 0.0
        with np.errstate(divide="ignore"):
            logits = np.log(w)
        out[rows] = np.argmax(logits + rng.gumbel(size=w.shape), axis=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    n = args.rows
    groups = np.arange(n) % args.groups
    fs = FeatureSet.from_dict("pairs", {"x": np.zeros((n, 4), np.float32), "grp": groups},
                              "x", None, "grp", register=False)
    t0 = time.perf_counter()
    sampler = PairedSampler({"grp": SimilarityCondition()}, 256, seed=0, source=fs)
    t_bind = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler.plan(0)
    t_first = time.perf_counter() - t0
    t_plan, t_ref = [], []
    rng = np.random.default_rng(0)
    for e in range(args.repeats):
        t0 = time.perf_counter()
        plan = sampler.plan(e + 1)
        t_plan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        partners = dense_epoch(groups, rng)
        t_ref.append(time.perf_counter() - t0)
    m = plan.mask["pair"]
    a, b = plan.indices["anchor"][m], plan.indices["pair"][m]
    assert len(a) == n and (groups[a] == groups[b]).all() and (a != b).all()
    assert (groups[partners] == groups).all() and (partners != np.arange(n)).all()
    tp, tr = min(t_plan), min(t_ref)
    print(f"{n:,} samples in {args.groups} groups, same-group pairs, batch 256")
    print(f"modjax bind (candidate lists, once):  {t_bind * 1e3:9.1f} ms")
    print(f"modjax plan, first / later epochs:    {t_first * 1e3:9.1f} / {tp * 1e3:.1f} ms")
    print(f"dense scoring of all pairs per epoch: {tr * 1e3:9.1f} ms (reference)")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1/5/15 min): {load} on {os.cpu_count()} cores")
    r_epoch, r_first = tr / tp, tr / (t_bind + t_first)
    print(f"per-epoch speed ratio modjax / dense = {r_epoch:.1f} (claim: >= 10) -> "
          f"{'PASS' if r_epoch >= 10 else 'FAIL'}")
    print(f"bind + first plan vs one dense epoch = {r_first:.2f}x faster (claim: > 1) -> "
          f"{'PASS' if r_first > 1 else 'FAIL'}")


if __name__ == "__main__":
    main()
