"""IndexPlan: one epoch of batches as integer arrays (the sampler -> device contract)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

__all__ = ["IndexPlan"]

#: positions written per step when a plan is built in place
_FILL_BLOCK = 1 << 20


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class IndexPlan:
    """Per-role ``[n_batches, batch_size]`` row positions, masks and weights.

    Positions index the sampler's view (not the source FeatureSet); padding slots hold 0
    and are masked out (weight 0). A plan is a pytree, so ``jax.lax.scan`` over it hands
    each step one batch ``[batch_size]`` per role.

    Attributes:
        indices: ``{role: int32 [n_batches, batch_size]}``.
        mask: ``{role: bool [n_batches, batch_size]}``.
        weights: ``{role: float32 [n_batches, batch_size]}``.

    Example:
        >>> p = IndexPlan.from_flat(np.arange(5), batch_size=2)
        >>> p.indices["default"].tolist(), p.mask["default"].tolist()
        ([[0, 1], [2, 3], [4, 0]], [[True, True], [True, True], [True, False]])
    """

    indices: Mapping[str, Any]
    mask: Mapping[str, Any]
    weights: Mapping[str, Any]

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self):
        roles = tuple(self.indices)
        leaves = ([self.indices[r] for r in roles] + [self.mask[r] for r in roles]
                  + [self.weights[r] for r in roles])
        return leaves, roles

    @classmethod
    def tree_unflatten(cls, roles, leaves):
        k = len(roles)
        return cls(dict(zip(roles, leaves[:k])), dict(zip(roles, leaves[k:2 * k])),
                   dict(zip(roles, leaves[2 * k:])))

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_flat(cls, positions: np.ndarray, batch_size: int, *, drop_last: bool = False,
                  role: str = "default", weights: np.ndarray | None = None) -> IndexPlan:
        """Cut a 1-D sequence of positions into padded batches."""
        return cls.from_roles({role: positions}, batch_size, drop_last=drop_last,
                              weights=None if weights is None else {role: weights})

    @classmethod
    def from_roles(cls, positions: Mapping[str, np.ndarray], batch_size: int, *,
                   drop_last: bool = False,
                   weights: Mapping[str, np.ndarray] | None = None) -> IndexPlan:
        """Cut aligned 1-D position arrays (one per role) into padded batches.

        Args:
            positions: ``{role: (n,) positions}``, all of one length.
            batch_size: slots per batch.
            drop_last: drop the final partial batch instead of padding it.
            weights: ``{role: (n,) weights}`` (default 1 for every real slot).

        Returns:
            The plan (padding slots: index 0, mask False, weight 0).

        Example:
            >>> p = IndexPlan.from_roles({"a": np.array([4, 5, 6]), "b": np.array([1, 2, 3])},
            ...                          2, weights={"a": np.full(3, .5), "b": np.ones(3)})
            >>> p.roles, p.indices["b"].tolist(), p.weights["a"].tolist()
            (('a', 'b'), [[1, 2], [3, 0]], [[0.5, 0.5], [0.5, 0.0]])
        """
        n = len(next(iter(positions.values())))
        nb = n // batch_size if drop_last else -(-n // batch_size)
        used = min(n, nb * batch_size)
        idx, msk, wts = {}, {}, {}
        for role, pos in positions.items():
            i = np.zeros(nb * batch_size, dtype=np.int32)
            i[:used] = pos[:used]
            m = np.zeros(nb * batch_size, dtype=bool)
            m[:used] = True
            w = np.zeros(nb * batch_size, dtype=np.float32)
            w[:used] = 1.0 if weights is None else np.asarray(weights[role])[:used]
            idx[role] = i.reshape(nb, batch_size)
            msk[role] = m.reshape(nb, batch_size)
            wts[role] = w.reshape(nb, batch_size)
        return cls(idx, msk, wts)

    @classmethod
    def ordered(cls, n: int, batch_size: int, *, rng: np.random.Generator | None = None,
                drop_last: bool = False, role: str = "default") -> IndexPlan:
        """Rows ``0..n-1`` (shuffled by ``rng`` when given) cut into padded batches.

        Equal to ``from_flat(rng.permutation(n), batch_size)`` (``np.arange(n)`` without
        ``rng``), but the positions are written as int32 straight into the plan's buffer
        and shuffled in place: no int64 permutation and no second copy, so making the
        plan of an epoch over many rows takes 9 bytes per row (indices, mask, weights).

        Args:
            n: rows (below 2**31).
            batch_size: slots per batch.
            rng: shuffles the rows (``rng.shuffle`` draws what ``rng.permutation(n)``
                draws); None keeps them in order.
            drop_last: drop the final partial batch instead of padding it.
            role: the role name.

        Returns:
            The plan (padding slots: index 0, mask False, weight 0).

        Example:
            >>> a = IndexPlan.ordered(5, 2, rng=np.random.default_rng(3))
            >>> b = IndexPlan.from_flat(np.random.default_rng(3).permutation(5), 2)
            >>> a.indices["default"].tolist() == b.indices["default"].tolist()
            True
        """
        if n >= 2 ** 31:
            raise ValueError(f"IndexPlan.ordered: {n} rows do not fit int32 positions")
        nb = n // batch_size if drop_last else -(-n // batch_size)
        slots = nb * batch_size
        buf = np.zeros(max(n, slots), dtype=np.int32)
        for lo in range(0, n, _FILL_BLOCK):  # block by block: no temporary of n positions
            hi = min(n, lo + _FILL_BLOCK)
            buf[lo:hi] = np.arange(lo, hi, dtype=np.int32)
        if rng is not None:
            rng.shuffle(buf[:n])
        idx = buf if len(buf) == slots else buf[:slots].copy()  # drop_last: cut the tail
        mask = np.zeros(slots, dtype=bool)
        mask[:min(n, slots)] = True
        return cls({role: idx.reshape(nb, batch_size)}, {role: mask.reshape(nb, batch_size)},
                   {role: mask.astype(np.float32).reshape(nb, batch_size)})

    @classmethod
    def contiguous(cls, n: int, batch_size: int, *, role: str = "default") -> IndexPlan:
        """Rows ``0..n-1`` in order, in batches of ``min(batch_size, n)`` consecutive rows.

        Every batch is a run of consecutive rows, so a device pass can slice it out of
        the resident data instead of gathering it (:func:`~modjax.data.device.slice_plan`).
        When ``batch_size`` does not divide ``n`` the last batch ends at row ``n - 1``
        and masks the rows the batch before it already covered: nothing is padded.

        Args:
            n: rows.
            batch_size: rows per batch.
            role: the role name.

        Returns:
            The plan (all weights of unmasked slots 1).

        Example:
            >>> p = IndexPlan.contiguous(5, 2)
            >>> p.indices["default"].tolist(), p.mask["default"].tolist()
            ([[0, 1], [2, 3], [3, 4]], [[True, True], [True, True], [False, True]])
        """
        bs = min(int(batch_size), int(n))
        nb = -(-n // bs)
        starts = np.minimum(np.arange(nb) * bs, n - bs)
        idx = (starts[:, None] + np.arange(bs)[None, :]).astype(np.int32)
        mask = idx >= (np.arange(nb) * bs)[:, None]
        return cls({role: idx}, {role: mask}, {role: mask.astype(np.float32)})

    # ------------------------------------------------------------------ info
    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.indices)

    @property
    def n_batches(self) -> int:
        return int(next(iter(self.indices.values())).shape[0])

    @property
    def batch_size(self) -> int:
        return int(next(iter(self.indices.values())).shape[1])

    def batch(self, i: int) -> IndexPlan:
        """The ``i``-th batch as a plan of one batch (host side).

        Example:
            >>> IndexPlan.from_flat(np.arange(5), 2).batch(2).indices["default"].tolist()
            [[4, 0]]
        """
        return jax.tree_util.tree_map(lambda a: a[i:i + 1], self)

    def batches(self, start: int, stop: int) -> IndexPlan:
        """Batches ``start:stop`` (host side).

        Example:
            >>> IndexPlan.from_flat(np.arange(6), 2).batches(1, 3).n_batches
            2
        """
        return jax.tree_util.tree_map(lambda a: a[start:stop], self)

    # ------------------------------------------------------------------ reshaping
    def pad_batch_to_multiple(self, k: int) -> IndexPlan:
        """Pad the batch axis to a multiple of ``k`` (device count) with masked slots.

        Example:
            >>> p = IndexPlan.from_flat(np.arange(3), 3).pad_batch_to_multiple(4)
            >>> p.indices["default"].tolist(), p.mask["default"].tolist()
            ([[0, 1, 2, 0]], [[True, True, True, False]])
        """
        extra = (-self.batch_size) % k
        if not extra:
            return self

        def pad(a):
            return np.pad(np.asarray(a), ((0, 0), (0, extra)))
        return jax.tree_util.tree_map(pad, self)

    def pad_batches_to(self, n_batches: int) -> IndexPlan:
        """Append fully masked batches up to ``n_batches`` (keeps scan shapes fixed).

        Raises:
            ValueError: the plan already has more batches.

        Example:
            >>> p = IndexPlan.from_flat(np.arange(2), 2).pad_batches_to(3)
            >>> p.n_batches, p.mask["default"].sum(axis=1).tolist()
            (3, [2, 0, 0])
        """
        extra = n_batches - self.n_batches
        if extra < 0:
            raise ValueError(f"plan has {self.n_batches} batches, more than {n_batches}")
        if not extra:
            return self
        return jax.tree_util.tree_map(
            lambda a: np.pad(np.asarray(a), ((0, extra), (0, 0))), self)

    def process_slice(self, process_index: int | None = None,
                      process_count: int | None = None) -> IndexPlan:
        """This process's share of every batch (multi-host data parallelism).

        The batch axis is padded (masked) to a multiple of ``process_count`` and cut into
        equal contiguous parts; process ``i`` keeps part ``i``. All processes make the same
        plan from the same ``(seed, epoch)``, so no coordination is needed; each gathers
        its rows and builds the global batch with
        ``jax.make_array_from_process_local_data``.

        Example:
            >>> p = IndexPlan.from_flat(np.arange(6), batch_size=3)
            >>> p.process_slice(1, 2).indices["default"].tolist()
            [[2, 0], [5, 0]]
        """
        i = jax.process_index() if process_index is None else int(process_index)
        k = jax.process_count() if process_count is None else int(process_count)
        if not 0 <= i < k:
            raise ValueError(f"process_index {i} is outside 0..{k - 1}")
        padded = self.pad_batch_to_multiple(k)
        part = padded.batch_size // k
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[:, i * part:(i + 1) * part],
                                      padded)

    def device_put(self, sharding: Any = None) -> IndexPlan:
        """Put the plan on the device (int32/bool/float32), optionally sharded."""
        return jax.device_put(self, sharding)
