"""Argument checks shared by the data layer: errors name the argument and the culprit."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_seed"]


def check_seed(seed: Any, where: str) -> int:
    """``seed`` as an int, refusing values that would be silently coerced.

    Args:
        seed: a Python or NumPy integer (``bool``, floats and strings are refused:
            ``1.5``, ``"7"`` and ``True`` are not seeds, they are mistakes).
        where: names the caller in the error.

    Returns:
        The seed as a Python int.

    Raises:
        TypeError: ``seed`` is not an integer.

    Example:
        >>> check_seed(np.int64(3), "split_random")
        3
        >>> check_seed("7", "split_random")
        Traceback (most recent call last):
        ...
        TypeError: split_random: seed must be an integer, got '7' (str)
    """
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{where}: seed must be an integer, got {seed!r} "
                        f"({type(seed).__name__})")
    return int(seed)
