"""LoadReport: what a (sub)graph checkpoint load did, in the subtree's own namespace."""

from __future__ import annotations

import dataclasses

__all__ = ["LoadReport"]


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Outcome of loading a checkpoint into a (sub)tree of variables.

    Names are dotted leaf paths relative to the subtree that was loaded
    (``"params.Dense_0.kernel"``), i.e. the checkpoint's own namespace.

    Attributes:
        loaded: leaves copied from the checkpoint.
        missing: leaves of the target that the checkpoint does not have (kept as they were).
        mismatched: leaves present in both whose shape or dtype differ (kept as they were).
        unexpected: leaves of the checkpoint that the target does not have (ignored).
        details: for each mismatched name, ``"checkpoint float32(3, 4) vs target float32(4, 4)"``.
        hash_matched: the checkpoint's structural hash equals the target's.

    Example:
        >>> r = LoadReport(loaded=("params.w",), missing=(), mismatched=(), unexpected=())
        >>> r.is_complete
        True
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[str, ...]
    unexpected: tuple[str, ...]
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    hash_matched: bool = True

    @property
    def is_complete(self) -> bool:
        """Every target leaf was loaded and the checkpoint had nothing extra."""
        return not (self.missing or self.mismatched or self.unexpected)

    def summary(self, limit: int = 8) -> str:
        """One line per category, listing up to ``limit`` names each."""
        def show(names: tuple[str, ...]) -> str:
            more = f" ... (+{len(names) - limit})" if len(names) > limit else ""
            return ", ".join(names[:limit]) + more
        lines = [f"loaded {len(self.loaded)}"]
        if self.missing:
            lines.append(f"missing in checkpoint {len(self.missing)}: {show(self.missing)}")
        if self.mismatched:
            shown = [f"{n} ({self.details.get(n, '')})" for n in self.mismatched[:limit]]
            lines.append(f"shape/dtype mismatch {len(self.mismatched)}: {', '.join(shown)}")
        if self.unexpected:
            lines.append(f"not in target {len(self.unexpected)}: {show(self.unexpected)}")
        return "; ".join(lines)

    def __str__(self) -> str:
        return f"LoadReport({self.summary()})"
