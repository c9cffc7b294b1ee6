"""Comparing the members of a collection: a table of final/best metrics (text, CSV) and
one self-contained HTML page with every member's curves (the observation layer's
``plot_html``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CollectionViews", "member_history", "lower_is_better"]

_LOWER = ("loss", "mse", "mae", "rmse", "error", "mape", "nll")


def lower_is_better(metric: str) -> bool:
    """Whether the best value of ``metric`` is its minimum (losses, errors).

    Example:
        >>> lower_is_better("val_loss"), lower_is_better("val_accuracy")
        (True, False)
    """
    name = metric.rsplit(".", 1)[-1].lower()
    return any(t in name for t in _LOWER)


def member_history(results: Any) -> dict[str, list[float]]:
    """``{metric: per-epoch values}`` of a member's PhaseGroupResults.

    TrainPhase metrics are named ``<phase>.<metric>`` (``train.val_loss``); an
    EvalPhase's metrics ``<phase>.<metric>`` with one value.
    """
    out: dict[str, list[float]] = {}
    for label, res in results.flatten().items():
        for name in res.metrics.names:
            out[f"{label}.{name}"] = [float(v) for v in res.metrics.series(name)]
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class CollectionViews:
    """Table, CSV and HTML plot over ``self.members`` (a mixin of ExperimentCollection)."""

    members: dict[str, Any]
    label: str

    def histories(self) -> dict[str, dict[str, list[float]]]:
        """``{member: {metric: per-epoch values}}`` of every member that has run or was
        loaded."""
        out = {}
        for lab, m in self.members.items():
            if m.results is not None:
                out[lab] = member_history(m.results)
            elif m.history is not None:
                out[lab] = m.history
        if not out:
            raise ValueError(f"collection {self.label!r}: no member has results yet; run() it")
        return out

    def table_rows(self, metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
        """``(header, rows)``: per member its overrides, epochs run, and for each metric
        the final value and the best one (min for losses/errors, else max)."""
        hist = self.histories()
        names = list(metrics) if metrics is not None else sorted(set().union(*hist.values()))
        header = ["member", "overrides", "epochs"]
        for n in names:
            header += [f"{n} final", f"{n} best"] if _is_series(hist, n) else [n]
        rows = []
        for lab, h in hist.items():
            ov = self.members[lab].overrides
            epochs = max((len(v) for k, v in h.items() if _is_series(hist, k)), default=0)
            row: list[Any] = [lab, _overrides_text(ov), epochs]
            for n in names:
                vals = h.get(n)
                if not _is_series(hist, n):
                    row.append(vals[-1] if vals else float("nan"))
                    continue
                if not vals:
                    row += [float("nan"), float("nan")]
                    continue
                row += [vals[-1], min(vals) if lower_is_better(n) else max(vals)]
            rows.append(row)
        return header, rows

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """The comparison table as aligned text (one line per member)."""
        header, rows = self.table_rows(metrics)
        cells = [header] + [[_fmt(v) for v in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)

    def to_csv(self, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
        """Write the comparison table as CSV; returns the path."""
        header, rows = self.table_rows(metrics)
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        return path

    def plot_html(self, path: str | Path, metrics: Sequence[str] | None = None, *,
                  title: str | None = None, log_y: bool = False) -> Path:
        """One self-contained HTML page: a chart per metric, every member's curve on it."""
        from modjax.observe.plots import plot_html
        from modjax.observe.trends import Trend

        hist = self.histories()
        names = list(metrics) if metrics is not None else sorted(
            n for n in set().union(*hist.values()) if _is_series(hist, n))
        panels = [(n, [Trend(h[n], tag=lab) for lab, h in hist.items() if h.get(n)])
                  for n in names]
        return plot_html(path, panels, title=title or f"{self.label}: members", log_y=log_y)


def _is_series(hist: dict[str, dict[str, list[float]]], name: str) -> bool:
    return any(len(h.get(name, ())) > 1 for h in hist.values())


def _overrides_text(ov: dict[str, Any]) -> str:
    parts = []
    for k, v in ov.items():
        if isinstance(v, dict):
            parts += [f"{kk}={_fmt(vv) if isinstance(vv, float) else vv}" for kk, vv in v.items()]
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts) or "-"
