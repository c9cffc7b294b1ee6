"""Sparse candidate lists for condition samplers (sub-quadratic pair finding).

For a role's conditions, every anchor's valid partners are found once, at bind time,
without scoring all ``n^2`` pairs: the most selective built-in condition gives each
anchor a contiguous range (``similar``) or the complement of one (``dissimilar``) in that
column's sorted order; the pairs in those ranges are then scored exactly by *all* the
role's conditions. The result is a CSR list ``anchor -> (partners, weights)``; drawing an
epoch's partners is a ``searchsorted`` per anchor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modjax.data.similarity import SimilarityCondition

__all__ = ["Candidates", "RangeProposal", "build_candidates", "build_proposal", "score_pairs",
           "weight_bound"]

_CHUNK_PAIRS = 1_000_000  # pairs expanded at once (bounds temporary memory)


@dataclass(frozen=True)
class Candidates:
    """CSR partner lists: partners of anchor ``i`` are ``cols[starts[i]:starts[i+1]]``.

    Example:
        >>> vals = {"g": np.array([0, 0, 1, 1, 1])}
        >>> c = build_candidates(vals, {"g": SimilarityCondition()}, max_pairs=100)
        >>> c.counts.tolist(), c.cols[c.starts[2]:c.starts[3]].tolist()
        ([1, 1, 2, 2, 2], [3, 4])
    """

    starts: np.ndarray
    cols: np.ndarray
    weights: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def best(self) -> Candidates:
        """Only each anchor's highest-weight partners (ties kept)."""
        counts = self.counts
        rows = np.flatnonzero(counts)
        rowmax = np.zeros(len(counts))
        if rows.size:
            rowmax[rows] = np.maximum.reduceat(self.weights, self.starts[rows])
        keep = self.weights == np.repeat(rowmax, counts)
        new_counts = np.add.reduceat(keep.astype(np.int64), self.starts[rows]) if rows.size \
            else np.zeros(0, dtype=np.int64)
        full = np.zeros(len(counts), dtype=np.int64)
        full[rows] = new_counts
        starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(full, out=starts[1:])
        return Candidates(starts, self.cols[keep], self.weights[keep])

    def draw(self, anchors: np.ndarray, rng: np.random.Generator, *,
             uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One partner per anchor, with probability proportional to its weight (or
        uniform); returns ``(partners, weights)``. Every anchor needs >= 1 partner."""
        mass = np.ones_like(self.weights) if uniform else self.weights
        cum = np.cumsum(mass)
        s, e = self.starts[anchors], self.starts[anchors + 1]
        base = np.where(s > 0, cum[np.maximum(s - 1, 0)], 0.0)
        top = cum[e - 1]
        target = base + rng.random(len(anchors)) * (top - base)
        k = np.clip(np.searchsorted(cum, target, side="right"), s, e - 1)
        return self.cols[k].astype(np.int64), self.weights[k]


def _as_numeric(v: np.ndarray) -> tuple[np.ndarray, bool]:
    """Float values to sort on; strings/objects become category codes."""
    if v.dtype.kind in "OUS":
        return np.unique(v, return_inverse=True)[1].reshape(-1).astype(np.float64), True
    return v.astype(np.float64), False


def _ranges(v: np.ndarray, cond: SimilarityCondition
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Sorted order and per-anchor ``[lo, hi)`` of a superset of the valid partners.

    For ``similar`` the candidates are ``order[lo:hi]``; for ``dissimilar`` they are
    ``order[:lo]`` and ``order[hi:]``. Bounds are padded so float rounding never drops a
    valid pair; exact scoring filters afterwards.
    """
    x, categorical = _as_numeric(v)
    order = np.argsort(x, kind="stable")
    sx = x[order]
    tol = 0.0 if categorical else float(cond.tolerance)
    eps = 1e-9 * (np.abs(x) + tol + 1.0)
    if cond.mode == "similar":
        lo = np.searchsorted(sx, x - tol - eps, side="left")
        hi = np.searchsorted(sx, x + tol + eps, side="right")
        return order, lo, hi, False
    if tol > 0:
        lo = np.searchsorted(sx, x - tol + eps, side="left")
        hi = np.maximum(np.searchsorted(sx, x + tol - eps, side="right"), lo)
    else:  # dissimilar with no tolerance: everything but the equal block
        lo = np.searchsorted(sx, x, side="left")
        hi = np.searchsorted(sx, x, side="right")
    return order, lo, hi, True


def _best_range(values: Mapping[str, np.ndarray],
                conditions: Mapping[str, SimilarityCondition]) -> tuple | None:
    """The built-in condition with the fewest candidate pairs, with its ranges."""
    n = len(next(iter(values.values())))
    best = None
    for col, cond in conditions.items():
        if cond.metric is not None or cond.allow_fallback:
            continue  # not range-shaped: only usable as a filter
        order, lo, hi, complement = _ranges(values[col], cond)
        counts = (lo + (n - hi)) if complement else (hi - lo)
        nnz = int(counts.sum())
        if best is None or nnz < best[0]:
            best = (nnz, order, lo, hi, complement, counts)
    return best


def score_pairs(values: Mapping[str, np.ndarray], conditions: Mapping[str, SimilarityCondition],
                a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of all condition scores for pairs ``(a[i], b[i])``; 0 for self-pairs."""
    w = np.ones(len(a))
    for col, cond in conditions.items():
        v = values[col]
        w *= cond.score(v[a], v[b])
    w[a == b] = 0.0
    return w


def weight_bound(conditions: Mapping[str, SimilarityCondition]) -> float:
    """An upper bound of :func:`score_pairs` (for rejection sampling)."""
    return float(np.prod([1.0 if c.weight_mode == "binary" else max(c.max_weight, 1.0)
                          for c in conditions.values()]))


@dataclass(frozen=True)
class RangeProposal:
    """Uniform proposals from each anchor's candidate superset (for rejection sampling
    when the candidate lists would be too large to store)."""

    order: np.ndarray | None
    lo: np.ndarray | None
    hi: np.ndarray | None
    complement: bool
    counts: np.ndarray

    def propose(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.counts[anchors]
        k = np.minimum((rng.random(len(anchors)) * c).astype(np.int64), np.maximum(c - 1, 0))
        if self.order is None:
            return k
        lo = self.lo[anchors]
        pos = k + (k >= lo) * (self.hi[anchors] - lo) if self.complement else lo + k
        return self.order[pos]


def build_proposal(values: Mapping[str, np.ndarray],
                   conditions: Mapping[str, SimilarityCondition]) -> RangeProposal:
    """Ranges of the most selective built-in condition, or every sample when none."""
    n = len(next(iter(values.values())))
    best = _best_range(values, conditions)
    if best is None:
        return RangeProposal(None, None, None, False, np.full(n, n, dtype=np.int64))
    _, order, lo, hi, complement, counts = best
    return RangeProposal(order, lo, hi, complement, counts)


def build_candidates(values: Mapping[str, np.ndarray],
                     conditions: Mapping[str, SimilarityCondition], *,
                     max_pairs: int) -> Candidates | None:
    """CSR partner lists for one role, or None when no sub-quadratic plan exists.

    Args:
        values: ``{column: (n,) values}`` of the view.
        conditions: ``{column: SimilarityCondition}`` all of which a pair must satisfy.
        max_pairs: give up (None) when the most selective condition still yields more
            candidate pairs than this.

    Returns:
        Candidates with only pairs of positive weight and no self-pairs, or None.
    """
    n = len(next(iter(values.values())))
    best = _best_range(values, conditions)
    if best is None or best[0] > max_pairs:
        return None
    _, order, lo, hi, complement, counts = best
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    col_dtype = np.int32 if n < 2**31 else np.int64
    out_cols, out_w = [], []
    kept = np.zeros(n, dtype=np.int64)
    a0 = 0
    while a0 < n:
        # anchors [a0, a1) whose pairs fit one chunk (at least one anchor)
        a1 = int(np.searchsorted(starts, starts[a0] + _CHUNK_PAIRS, side="right")) - 1
        a1 = min(max(a1, a0 + 1), n)
        c = counts[a0:a1]
        total = int(c.sum())
        if total:
            anchor = np.repeat(np.arange(a0, a1), c)
            k = np.arange(total) - np.repeat(starts[a0:a1] - starts[a0], c)
            lo_r = np.repeat(lo[a0:a1], c)
            pos = k + (k >= lo_r) * (np.repeat(hi[a0:a1], c) - lo_r) if complement else lo_r + k
            cand = order[pos]
            w = score_pairs(values, conditions, anchor, cand)
            keep = w > 0
            kept[a0:a1] = np.bincount(anchor[keep] - a0, minlength=a1 - a0)
            out_cols.append(cand[keep].astype(col_dtype))
            out_w.append(w[keep])
        a0 = a1
    new_starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(kept, out=new_starts[1:])
    cols = np.concatenate(out_cols) if out_cols else np.zeros(0, dtype=col_dtype)
    weights = np.concatenate(out_w) if out_w else np.zeros(0)
    return Candidates(new_starts, cols, weights)
