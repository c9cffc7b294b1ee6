"""Batch scheduling across samplers, computed on index plans (as in ModularML).

With samplers ``S1 = [b1, b2, b3]`` and ``S2 = [c1, c2]``:

* ``zip_strict``: ``(b1, c1), (b2, c2)``
* ``zip_cycle``: ``(b1, c1), (b2, c2), (b3, c1)``
* ``alternate_strict``: ``b1, c1, b2, c2``
* ``alternate_cycle``: ``b1, c1, b2, c2, b3, c1``

In an alternating step the inactive samplers still hand the step a batch (so shapes
stay fixed and the scan compiles once), but it is fully masked, so its losses
contribute exactly zero.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np

from modjax.data.plan import IndexPlan

__all__ = ["BatchSchedulingPolicy", "schedule_steps", "schedule_plans"]


class BatchSchedulingPolicy(enum.StrEnum):
    """How batches of several samplers are combined into steps."""

    ZIP_STRICT = "zip_strict"
    ZIP_CYCLE = "zip_cycle"
    ALTERNATE_STRICT = "alternate_strict"
    ALTERNATE_CYCLE = "alternate_cycle"

    @classmethod
    def from_value(cls, value: str | BatchSchedulingPolicy) -> BatchSchedulingPolicy:
        """Normalise a string or member (error lists the valid names)."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown batch_schedule {value!r}; expected one of "
                             f"{[m.value for m in cls]}") from None


def schedule_steps(n_batches: Sequence[int], policy: str | BatchSchedulingPolicy
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Which batch of each sampler every step uses, and whether the sampler is active.

    Args:
        n_batches: batches per epoch of each sampler.
        policy: a :class:`BatchSchedulingPolicy` value.

    Returns:
        ``(batch_index, active)``, both ``[n_steps, n_samplers]``.

    Example:
        >>> idx, act = schedule_steps([3, 2], "alternate_cycle")
        >>> [("bc"[s] + str(int(idx[t, s]) + 1)) for t in range(len(idx)) for s in range(2)
        ...  if act[t, s]]
        ['b1', 'c1', 'b2', 'c2', 'b3', 'c1']
    """
    policy = BatchSchedulingPolicy.from_value(policy)
    nb = np.asarray(n_batches, dtype=np.int64)
    k = len(nb)
    if k == 0 or (nb <= 0).any():
        raise ValueError(f"every sampler needs at least one batch, got n_batches={nb.tolist()}")
    if policy in (BatchSchedulingPolicy.ZIP_STRICT, BatchSchedulingPolicy.ZIP_CYCLE):
        n = int(nb.min() if policy is BatchSchedulingPolicy.ZIP_STRICT else nb.max())
        t = np.arange(n)[:, None]
        return (t % nb[None, :]).astype(np.int32), np.ones((n, k), dtype=bool)
    rounds = int(nb.min() if policy is BatchSchedulingPolicy.ALTERNATE_STRICT else nb.max())
    t = np.arange(rounds * k)
    sampler, rnd = t % k, t // k
    active = sampler[:, None] == np.arange(k)[None, :]
    idx = (rnd[:, None] % nb[None, :]).astype(np.int32)
    return idx, active


def schedule_plans(plans: Sequence[IndexPlan], policy: str | BatchSchedulingPolicy
                   ) -> list[IndexPlan]:
    """Re-order each sampler's plan into the common step sequence of ``policy``.

    All returned plans have the same number of batches; inactive steps are masked.
    A single plan is returned unchanged.
    """
    if len(plans) == 1:
        return list(plans)
    idx, active = schedule_steps([p.n_batches for p in plans], policy)
    out = []
    for s, plan in enumerate(plans):
        take = idx[:, s]
        act = active[:, s][:, None]
        out.append(IndexPlan(
            {r: np.asarray(v)[take] for r, v in plan.indices.items()},
            {r: np.asarray(v)[take] & act for r, v in plan.mask.items()},
            {r: np.where(act, np.asarray(v)[take], 0.0).astype(np.float32)
             for r, v in plan.weights.items()}))
    return out
