"""Zero-copy splits and views: peak RSS growth vs the index arrays they hold.

Builds a 2,000,000 x 64 float32 FeatureSet (512 MB of features), then makes 3 splits
and 5 views. Two meters run over that block: ``tracemalloc`` (numpy reports every array
allocation to it, so its peak is exact and not blurred by memory the allocator kept
from earlier frees) and a thread polling the process RSS every half millisecond.
Prints both peaks, the bytes of the index arrays the splits/views hold (shared buffers
counted once), and the ratio; the claim is peak growth <= 1.10 x index bytes.

Run: python benchmarks/bench_data_zero_copy.py [--rows N]
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
import tracemalloc

import numpy as np

from modjax import FeatureSet

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Poll RSS in a thread; ``peak - start`` is the growth during the block."""

    def __enter__(self):
        gc.collect()
        self.start = rss()
        self.peak = self.start
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss())
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self.peak = max(self.peak, rss())
        self._stop = True
        self._t.join()
        self.growth = self.peak - self.start


def owned_bytes(arrays) -> int:
    """Bytes of the distinct memory buffers behind ``arrays``."""
    seen, total = set(), 0
    for a in arrays:
        base = a
        while isinstance(base.base, np.ndarray):
            base = base.base
        if id(base) not in seen:
            seen.add(id(base))
            total += base.nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--cols", type=int, default=64)
    args = ap.parse_args()
    n, d = args.rows, args.cols
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    fs = FeatureSet.from_dict("big", {"x": x, "y": rng.standard_normal(n, dtype=np.float32)},
                              "x", "y", register=False)
    del x
    fs.get_features()  # materialise the (zero-copy) numpy view of the column once
    gc.collect()
    # row selections the user computes for the views (their memory is theirs, not ours)
    picks = [rng.choice(n, size=n // 10, replace=False) for _ in range(2)]
    gc.collect()

    tracemalloc.start()
    base_traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    with PeakRSS() as m:
        splits = fs.split_random({"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
        views = [
            splits["train"].take(slice(0, n // 4)),        # a slice of a split: shares memory
            splits["val"].take(slice(None, None, 2)),
            fs.take(picks[0]),                              # adopted (made read-only), no copy
            fs.take(picks[1]),
            splits["test"].take(slice(0, 1000)),
        ]
        feats = views[0].n_samples + views[2].n_samples  # touch them
    traced_peak = tracemalloc.get_traced_memory()[1] - base_traced
    tracemalloc.stop()
    index_arrays = [v.indices for v in splits.values()] + [v.indices for v in views]
    idx_bytes = owned_bytes(index_arrays)
    # the user's pick arrays were allocated before the block: do not count them twice
    new_idx_bytes = idx_bytes - sum(p.nbytes for p in picks)
    print(f"FeatureSet: {n:,} x {d} float32 = {n * d * 4 / 2**20:,.0f} MiB; "
          f"{len(splits)} splits + {len(views)} views ({feats:,} rows touched)")
    print(f"index arrays held:        {idx_bytes / 2**20:8.2f} MiB "
          f"({new_idx_bytes / 2**20:.2f} MiB allocated during the block)")
    print(f"peak allocation growth:   {traced_peak / 2**20:8.2f} MiB (tracemalloc)")
    print(f"peak RSS growth:          {m.growth / 2**20:8.2f} MiB (may reuse freed pages)")
    ratio = max(traced_peak, m.growth) / max(new_idx_bytes, 1)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1/5/15 min): {load} on {os.cpu_count()} cores")
    print(f"ratio peak growth / new index bytes = {ratio:.3f} (claim: <= 1.10) -> "
          f"{'PASS' if ratio <= 1.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
