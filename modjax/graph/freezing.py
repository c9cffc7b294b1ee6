"""``FreezeStore``: the one record of what is frozen, under both graph kinds.

Freezing is a set of marks on label paths: ``freeze("encoder")`` marks the path frozen,
``thaw("encoder.scan")`` marks a path inside it thawed; the longest marked prefix of a
leaf decides. The store knows nothing about arrays: :meth:`FreezeStore.frozen_paths`
resolves the marks against a params tree into the minimal label paths whose leaves are
all frozen, which the optimizer turns into a traced mask (so changing marks never
rebuilds or recompiles anything). ModelGraph and the flow Graph keep one store each and
expose the seed verbs over it (``freeze``/``unfreeze`` and ``freeze``/``thaw``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FreezeStore"]

Path = tuple[str, ...]


class FreezeStore:
    """Freeze and thaw marks on label paths (the longest marked prefix decides).

    Example:
        >>> s = FreezeStore()
        >>> s.mark(("enc",), True)
        >>> s.mark(("enc", "scan"), False)
        >>> s.status(("enc", "read", "w")), s.status(("enc", "scan", "w"))
        (True, False)
        >>> params = {"enc": {"scan": {"w": 0}, "read": {"w": 0}}, "head": {"w": 0}}
        >>> s.frozen_paths(params)
        [('enc', 'read')]
    """

    __slots__ = ("_ops",)

    def __init__(self, ops: Mapping[Path, bool] | None = None) -> None:
        self._ops: dict[Path, bool] = {tuple(k): bool(v) for k, v in (ops or {}).items()}

    @property
    def ops(self) -> dict[Path, bool]:
        """A copy of the marks, ``{path: frozen}``."""
        return dict(self._ops)

    def __bool__(self) -> bool:
        return bool(self._ops)

    def copy(self) -> FreezeStore:
        """An independent store with the same marks."""
        return FreezeStore(self._ops)

    def status(self, p: Path) -> bool:
        """Whether ``p`` lies in a frozen region (its longest marked prefix is frozen)."""
        best, value = -1, False
        for q, v in self._ops.items():
            if p[:len(q)] == q and len(q) > best:
                best, value = len(q), v
        return value

    def marks_below(self, p: Path) -> dict[Path, bool]:
        """Marks strictly inside ``p``."""
        return {q: v for q, v in self._ops.items() if len(q) > len(p) and q[:len(p)] == p}

    def mark(self, p: Path, frozen: bool) -> None:
        """Freeze (or thaw) everything under ``p``; marks inside ``p`` are dropped."""
        p = tuple(p)
        self._ops = {q: v for q, v in self._ops.items() if q[:len(p)] != p}
        if self.status(p) != frozen:
            self._ops[p] = bool(frozen)

    def clear(self) -> None:
        """Thaw everything."""
        self._ops = {}

    def rekey(self, fn: Callable[[Path], Path | None]) -> None:
        """Map every marked path through ``fn`` (``None`` drops the mark)."""
        new = {}
        for q, v in self._ops.items():
            r = fn(q)
            if r is not None:
                new[tuple(r)] = v
        self._ops = new

    def frozen_paths(self, params: Any = None) -> list[Path]:
        """The minimal paths whose leaves are all frozen.

        Args:
            params: the params tree to resolve thawed holes against; without it only
                the frozen marks are returned (valid when no thaw lies inside a frozen
                region).

        Returns:
            Paths in tree order (sorted without ``params``).
        """
        if not self._ops:
            return []
        if params is None:
            return sorted(q for q, v in self._ops.items() if v)
        out: list[Path] = []

        def walk(tree: Any, p: Path) -> None:
            below = bool(self.marks_below(p)) if p else True
            if p and not below:
                if self.status(p):
                    out.append(p)
                return
            if isinstance(tree, Mapping) and tree:
                for k in tree:
                    walk(tree[k], (*p, str(k)))
            elif self.status(p):
                out.append(p)

        walk(params, ())
        return out
