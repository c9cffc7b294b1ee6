"""Speculative epochs: epoch e+1 is dispatched before epoch e's losses are read.

JAX dispatches a jitted call and returns at once; the host only waits when it reads a
result. A :class:`~modjax.train.train_phase.TrainPhase` therefore dispatches the next epoch
from the current epoch's (not yet computed) carry, then reads the current epoch's losses
and runs its callbacks while the device keeps working. The next epoch's result is used
only if nothing it was computed from changed in between: the carry the phase holds (a
callback may restore a snapshot) and every sampler's plan key (a callback may reseed or
rebind a sampler). Otherwise, or when the phase stops, it is dropped and the epoch runs
again from the current state, so a pipelined phase ends with exactly the variables of a
phase that waits after every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Speculation", "carry_token"]


def carry_token(carry: Mapping[str, Any]) -> tuple[int, ...]:
    """Identity of a carry and its parts (a restored snapshot gives a new token).

    Args:
        carry: the phase's carry dict.

    Returns:
        A tuple of object ids, valid while ``carry`` is alive.

    Example:
        >>> c = {"variables": {}, "step": 0}
        >>> carry_token(c) == carry_token(c), carry_token(c) == carry_token(dict(c, step=1))
        (True, False)
    """
    return (id(carry), *(id(v) for v in carry.values()))


@dataclass
class Speculation:
    """A dispatched epoch waiting for the host to confirm its inputs.

    Attributes:
        carry_in: the carry it started from (kept alive so its token stays unique).
        token: :func:`carry_token` of ``carry_in``.
        keys: the plan key of every sampler when its plan was made.
        plans: the epoch's scheduled plans (one per binding).
        carry_out: the epoch's resulting carry (device arrays, maybe still computing).
        out: the epoch's per-batch outputs.
    """

    carry_in: Any
    token: tuple[int, ...]
    keys: tuple
    plans: Sequence[Any]
    carry_out: Any
    out: Any

    def valid(self, carry: Any, keys: tuple) -> bool:
        """Whether the phase still holds the carry and sampler state it was made from.

        Args:
            carry: the carry the phase holds now.
            keys: the samplers' plan keys now.

        Returns:
            True when the speculative epoch equals what running the epoch now would give.

        Example:
            >>> c = {"variables": 1}
            >>> s = Speculation(c, carry_token(c), (1,), [], None, None)
            >>> s.valid(c, (1,)), s.valid(dict(c), (1,)), s.valid(c, (2,))
            (True, False, False)
        """
        return carry is self.carry_in and carry_token(carry) == self.token and keys == self.keys


def speculate(dispatch: Callable[[Any, Sequence[Any]], tuple[Any, Any]], carry: Any,
              plans: Sequence[Any], keys: tuple) -> Speculation:
    """Dispatch one epoch from ``carry`` and keep what is needed to confirm it later.

    Args:
        dispatch: ``(carry, plans) -> (carry_out, out)`` (returns without waiting).
        carry: the carry to start from.
        plans: the epoch's plans.
        keys: the samplers' plan keys the plans were made with.

    Returns:
        The :class:`Speculation`.

    Example:
        >>> s = speculate(lambda c, p: (c + 1, p), 1, [7], ())
        >>> s.carry_out, s.out
        (2, [7])
    """
    carry_out, out = dispatch(carry, plans)
    token = carry_token(carry) if isinstance(carry, Mapping) else (id(carry),)
    return Speculation(carry, token, keys, plans, carry_out, out)
