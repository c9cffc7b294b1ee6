"""Self-contained HTML training curves: inline SVG drawn in Python, a little inline JS.

The page needs nothing but a browser: no CDN, no fonts, no network. The curves are
static SVG (so they draw even with scripts off and print well); the inline script
only adds a hover read-out and click-to-hide legends.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from modjax.observe.logs import format_duration, write_text_atomic
from modjax.observe.trends import Trend

__all__ = ["plot_html", "plot_timings_html", "nice_ticks"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22")
_W, _H = 440, 290
_ML, _MR, _MT, _MB = 64, 16, 14, 40

Panels = Sequence[tuple[str, Sequence[Trend]]]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of 10).

    Example:
        >>> nice_ticks(0.0, 1.0)
        [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        >>> nice_ticks(3, 3)
        [3.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"nice_ticks needs finite lo <= hi, got {lo}, {hi}")
    if hi == lo:
        return [float(lo)]
    raw = (hi - lo) / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10)), key=lambda st: abs(math.log(st / raw)))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


def _normalise(series: Any) -> list[tuple[str, list[Trend]]]:
    """Accept panels, a Trend list, or ``{name: Trend | values | [Trend, ...]}``."""
    if isinstance(series, Mapping):
        out = []
        for name, v in series.items():
            if isinstance(v, Trend):
                out.append((str(name), [v if v.tag else Trend(v.values(), str(name), v.epochs())]))
            elif isinstance(v, Sequence) and v and all(isinstance(t, Trend) for t in v):
                out.append((str(name), list(v)))
            else:
                out.append((str(name), [Trend(np.asarray(v, dtype=np.float64), tag=str(name))]))
        return out
    items = list(series)
    if all(isinstance(t, Trend) for t in items):
        return [(t.tag or f"series_{i}", [t]) for i, t in enumerate(items)]
    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"plot_html: item {i} is {type(item).__name__}; expected a Trend, "
                            f"a (name, [Trend, ...]) panel, or a mapping")
        name, trends = item
        trends = list(trends)
        for t in trends:
            if not isinstance(t, Trend):
                raise TypeError(f"plot_html: panel {name!r} holds {type(t).__name__}, "
                                f"expected Trend")
        out.append((str(name), trends))
    return out


def _y_values(t: Trend, log: bool) -> np.ndarray:
    """Plotted y values: log10 on a log axis (non-positive values become gaps)."""
    v = t.values()
    if not log:
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def _y_range(trends: Sequence[Trend], log: bool = False) -> tuple[float, float]:
    vals = np.concatenate([_y_values(t, log) for t in trends]) if trends else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions (in log10 units) for a log axis: decades, or finer when few."""
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 3:
        step = max(1, len(decades) // 6 + (len(decades) % 6 > 0))
        return [float(d) for d in decades[::step]]
    mantissas = (1, 2, 5) if len(decades) == 2 else (1, 2, 3, 5, 7)
    fine = [math.log10(m * 10.0 ** d) for d in range(math.floor(lo), math.ceil(hi) + 1)
            for m in mantissas]
    return [f for f in fine if lo - 1e-9 <= f <= hi + 1e-9]


def _series_svg(k: int, tr: Trend, sx: Callable[[float], float], sy: Callable[[float], float],
                log: bool) -> list[str]:
    """One trend as SVG: polylines through its finite runs, and dots when it is short."""
    color = _PALETTE[k % len(_PALETTE)]
    xs, ys = tr.epochs().tolist(), _y_values(tr, log).tolist()
    segs, cur = [], []
    for x, y in zip(xs, ys):
        if math.isfinite(y):
            cur.append(f"{sx(x):.2f},{sy(y):.2f}")
        elif cur:  # a non-finite value breaks the line
            segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    g = [f'<g class="series" data-series="{k}">']
    for seg in segs:
        if len(seg) > 1:
            g.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'stroke-linejoin="round" points="{" ".join(seg)}"/>')
    if len(xs) <= 80:
        for x, y in zip(xs, ys):
            if math.isfinite(y):
                g.append(f'<circle cx="{sx(x):.2f}" cy="{sy(y):.2f}" r="2.6" fill="{color}"/>')
    g.append("</g>")
    return g


def _panel_svg(idx: int, name: str, trends: Sequence[Trend], unit: str,
               log: bool = False) -> str:
    epochs = np.concatenate([t.epochs() for t in trends]) if trends else np.zeros(0, np.int64)
    x_lo = float(epochs.min()) if epochs.size else 1.0
    x_hi = float(epochs.max()) if epochs.size else 1.0
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_lo, y_hi = _y_range(trends, log)
    pw, ph = _W - _ML - _MR, _H - _MT - _MB

    def sx(x: float) -> float:
        return _ML + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return _MT + (1.0 - (y - y_lo) / (y_hi - y_lo)) * ph

    e = html.escape
    parts = [f'<svg class="chart" id="chart-{idx}" viewBox="0 0 {_W} {_H}" width="{_W}" '
             f'height="{_H}" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'aria-label="{e(name)}">',
             f'<rect x="{_ML}" y="{_MT}" width="{pw}" height="{ph}" fill="#ffffff" '
             f'stroke="#888" stroke-width="1"/>']
    for t in (_log_ticks(y_lo, y_hi) if log else nice_ticks(y_lo, y_hi, 5)):
        y = sy(t)
        parts.append(f'<line x1="{_ML}" x2="{_ML + pw}" y1="{y:.2f}" y2="{y:.2f}" '
                     f'stroke="#e3e3e3"/>')
        parts.append(f'<text x="{_ML - 6}" y="{y + 4:.2f}" text-anchor="end" '
                     f'class="tick">{e(_fmt_tick(10.0 ** t if log else t))}</text>')
    xt = [v for v in nice_ticks(x_lo, x_hi, 6) if float(v).is_integer()] or [x_lo]
    for t in xt:
        x = sx(t)
        parts.append(f'<line x1="{x:.2f}" x2="{x:.2f}" y1="{_MT}" y2="{_MT + ph}" '
                     f'stroke="#f0f0f0"/>')
        parts.append(f'<text x="{x:.2f}" y="{_MT + ph + 16}" text-anchor="middle" '
                     f'class="tick">{int(t)}</text>')
    parts.append(f'<text x="{_ML + pw / 2:.1f}" y="{_H - 6}" text-anchor="middle" '
                 f'class="axis">epoch</text>')
    if unit:
        parts.append(f'<text x="12" y="{_MT + ph / 2:.1f}" text-anchor="middle" class="axis" '
                     f'transform="rotate(-90 12 {_MT + ph / 2:.1f})">{e(unit)}</text>')
    for k, tr in enumerate(trends):
        parts.extend(_series_svg(k, tr, sx, sy, log))
    parts.append(f'<line class="cursor" x1="0" x2="0" y1="{_MT}" y2="{_MT + ph}" '
                 f'stroke="#555" stroke-dasharray="3,3" visibility="hidden"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _stats_rows(trends: Sequence[Trend]) -> str:
    rows = []
    for t in trends:
        vals = t.values()
        fin = vals[np.isfinite(vals)]
        if fin.size:
            best = int(t.epochs()[int(np.nanargmin(np.where(np.isfinite(vals), vals, np.inf)))])
            cells = (f"{t.latest():.6g}", f"{fin.min():.6g} (epoch {best})", f"{fin.max():.6g}",
                     f"{t.slope(5):+.3g}")
        else:
            cells = ("nan", "-", "-", "-")
        rows.append("<tr><td>" + html.escape(str(t.tag)) + f"</td><td>{len(t)}</td>"
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:18px;
color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#666;font-size:13px;margin-bottom:14px}
.grid{display:flex;flex-wrap:wrap;gap:14px}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 10px}
.panel h2{font-size:15px;margin:2px 0 6px}
.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}
.legend span{display:inline-block;margin-right:12px;font-size:12px;cursor:pointer;
user-select:none}
.legend span.off{opacity:.35;text-decoration:line-through}
.legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}
.readout{font-size:12px;color:#333;min-height:16px;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;margin-top:16px;font-size:13px;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
"""

_JS = """
(function(){
  var data = JSON.parse(document.getElementById('curve-data').textContent);
  data.panels.forEach(function(p, i){
    var svg = document.getElementById('chart-' + i);
    var out = document.getElementById('readout-' + i);
    var cursor = svg.querySelector('.cursor');
    var hidden = {};
    document.querySelectorAll('#legend-' + i + ' span').forEach(function(el){
      el.addEventListener('click', function(){
        var k = el.getAttribute('data-series');
        hidden[k] = !hidden[k];
        el.classList.toggle('off', hidden[k]);
        var g = svg.querySelector('g.series[data-series="' + k + '"]');
        if (g) g.setAttribute('visibility', hidden[k] ? 'hidden' : 'visible');
      });
    });
    svg.addEventListener('mousemove', function(ev){
      var r = svg.getBoundingClientRect();
      var x = (ev.clientX - r.left) * (data.w / r.width);
      var ep = p.x0 + (x - data.ml) / data.pw * (p.x1 - p.x0);
      var best = null;
      p.series.forEach(function(s){ s.x.forEach(function(e){
        if (best === null || Math.abs(e - ep) < Math.abs(best - ep)) best = e; }); });
      if (best === null) return;
      var sx = data.ml + (best - p.x0) / (p.x1 - p.x0) * data.pw;
      cursor.setAttribute('x1', sx); cursor.setAttribute('x2', sx);
      cursor.setAttribute('visibility', 'visible');
      var txt = 'epoch ' + best;
      p.series.forEach(function(s, k){
        if (hidden[k]) return;
        var j = s.x.indexOf(best);
        if (j >= 0) txt += '  |  ' + s.name + ' = ' +
          (s.y[j] === null ? 'nan' : Number(s.y[j]).toPrecision(6));
      });
      out.textContent = txt;
    });
    svg.addEventListener('mouseleave', function(){
      cursor.setAttribute('visibility', 'hidden'); out.textContent = '';
    });
  });
  // marks a page whose script ran to the end (checked by the headless-browser test)
  document.documentElement.setAttribute('data-curves-ready', String(data.panels.length));
})();
"""


def _json_safe(v: float) -> float | None:
    return v if math.isfinite(v) else None


def plot_html(
    path: str | PathLike,
    series: Any,
    *,
    title: str = "modjax training curves",
    unit: str = "",
    durations: Sequence[float] | None = None,
    log_y: bool | Sequence[str] = False,
) -> Path:
    """Write a self-contained HTML page with one chart per panel.

    Args:
        path: output ``.html`` (its directory must exist).
        series: one of: a list of :class:`Trend` (a chart each); a list of
            ``(name, [Trend, ...])`` panels (members overlaid, e.g. a tag group); a
            mapping ``{name: Trend | values | [Trend, ...]}``.
        title: page heading.
        unit: y-axis label (``"s"`` for timings).
        durations: per-epoch seconds; adds an "epoch duration" chart and the total.
        log_y: ``True`` for a log10 y axis on every chart, or the names of the charts
            to draw on one (losses spanning decades, learning rates); values <= 0 are
            left out of a log chart.

    Returns:
        The written path.

    Raises:
        ValueError: nothing to plot, or a panel without data (named).
        FileNotFoundError: the directory does not exist.

    Example:
        >>> import tempfile, os
        >>> p = plot_html(os.path.join(tempfile.mkdtemp(), "t.html"),
        ...               {"loss": [1.0, 0.5, 0.3]}, title="demo")
        >>> text = p.read_text()
        >>> "<svg" in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        True
    """
    panels = _normalise(series)
    if not panels:
        raise ValueError(f"plot_html({str(path)!r}): nothing to plot")
    for name, trends in panels:
        if not trends or all(len(t) == 0 for t in trends):
            raise ValueError(f"plot_html({str(path)!r}): panel {name!r} has no data")
    names = [name for name, _ in panels]
    if isinstance(log_y, bool):
        log_panels = set(names) if log_y else set()
    else:
        log_panels = {str(n) for n in log_y}
        unknown = sorted(log_panels - set(names))
        if unknown:
            raise ValueError(f"plot_html({str(path)!r}): log_y names {unknown}, which are not "
                             f"charts; charts: {names}")
    for name, trends in panels:
        if name in log_panels and not any((t.values() > 0).any() for t in trends):
            raise ValueError(f"plot_html({str(path)!r}): chart {name!r} has no positive "
                             f"value to draw on a log axis")
    if durations is not None and len(durations) > 0:
        d = [float(x) for x in durations]
        panels = [*panels, ("epoch duration", [Trend(d, tag="seconds/epoch")])]
    e = html.escape
    blocks, payload = [], []
    for i, (name, trends) in enumerate(panels):
        u = "s" if name == "epoch duration" else unit
        log = name in log_panels
        legend = "".join(
            f'<span data-series="{k}"><i style="background:{_PALETTE[k % len(_PALETTE)]}">'
            f'</i>{e(str(t.tag))}</span>' for k, t in enumerate(trends))
        blocks.append(
            f'<div class="panel"><h2>{e(name)}{" <small>(log scale)</small>" if log else ""}'
            f'</h2><div class="legend" id="legend-{i}">'
            f'{legend}</div>{_panel_svg(i, name, trends, u, log)}'
            f'<div class="readout" id="readout-{i}"></div></div>')
        eps = np.concatenate([t.epochs() for t in trends])
        x0, x1 = float(eps.min()), float(eps.max())
        if x0 == x1:
            x0, x1 = x0 - 0.5, x1 + 0.5
        payload.append({"name": name, "x0": x0, "x1": x1, "series": [
            {"name": str(t.tag), "x": t.epochs().tolist(),
             "y": [_json_safe(v) for v in t.values().tolist()]} for t in trends]})
    data = json.dumps({"w": _W, "ml": _ML, "pw": _W - _ML - _MR, "panels": payload})
    # the JSON sits in a <script>: escape markup characters so no tag name can end it
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    all_trends = [t for name, ts in panels if name != "epoch duration" for t in ts]
    n_epochs = max((int(t.epochs().max()) for t in all_trends if len(t)), default=0)
    meta = f"{n_epochs} epochs"
    if durations is not None and len(durations) > 0:
        meta += f" &middot; total {e(format_duration(sum(durations)))}"
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<div class="meta">{meta}</div>
<div class="grid">
{chr(10).join(blocks)}
</div>
<table><thead><tr><th>series</th><th>epochs</th><th>latest</th><th>min</th><th>max</th>
<th>slope (last 5)</th></tr></thead><tbody>
{_stats_rows(all_trends)}
</tbody></table>
<script type="application/json" id="curve-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""
    return write_text_atomic(path, doc)


def plot_timings_html(path: str | PathLike, series: Any, *,
                      title: str = "modjax node timings",
                      log_y: bool | Sequence[str] = False) -> Path:
    """:func:`plot_html` for timing trends (seconds per node per epoch)."""
    return plot_html(path, series, title=title, unit="s", log_y=log_y)
