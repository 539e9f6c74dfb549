"""Hand-written SVG charts for the report: no plotting library, no script, opens offline.

Three chart kinds cover the report's plots: :func:`scatter` (optionally with a log x axis),
:func:`lines` (series over shared x positions, with optional dashed reference lines) and
:func:`bars` (grouped bars). Each returns one ``<svg>`` element as a string; with no data it
draws the axes' frame and a sentence saying why, so a plot is never blank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["PARADIGM_COLOURS", "Series", "bars", "error_bar", "lines", "scatter"]

PARADIGM_COLOURS = {
    "classic": "#6b6b6b",
    "embeddings": "#1f77b4",
    "tokens": "#2ca02c",
    "direct": "#d62728",
}
_DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2"]
W, H = 640, 360
L, R, T, B = 64, 170, 34, 52  # margins: the legend lives in the right margin


@dataclass
class Series:
    """One named series: ``ys`` aligned with the chart's x positions; ``None`` = no value."""

    label: str
    ys: Sequence[float | None]
    colour: str = "#333333"
    dash: str = ""
    xs: Sequence[float] = field(default_factory=list)


def colour_of(paradigm: str) -> str:
    return PARADIGM_COLOURS.get(paradigm, "#9467bd")


def dash_for(index: int) -> str:
    return _DASHES[index % len(_DASHES)]


def _open(title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>',
        f'<text x="{L}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]


def _frame(x_label: str, y_label: str) -> list[str]:
    x1, y1 = W - R, H - B
    return [
        f'<rect x="{L}" y="{T}" width="{x1 - L}" height="{y1 - T}" fill="none" stroke="#999"/>',
        f'<text x="{(L + x1) / 2:.1f}" y="{H - 12}" font-size="12" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="14" y="{(T + y1) / 2:.1f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(T + y1) / 2:.1f})">{escape(y_label)}</text>',
    ]


def _empty(title: str, x_label: str, y_label: str, reason: str) -> str:
    parts = _open(title, reason) + _frame(x_label, y_label)
    parts.append(
        f'<text x="{(L + W - R) / 2:.1f}" y="{(T + H - B) / 2:.1f}" font-size="13" '
        f'text-anchor="middle" fill="#666" class="no-data">{escape(reason)}</text>'
    )
    return "\n".join([*parts, "</svg>"])


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _y_axis(y_max: float) -> tuple[list[str], float]:
    """Five ticks from 0 to a round maximum; returns the marks and the maximum used."""
    top = _nice_max(y_max * 1.02)
    out = []
    for i in range(6):
        v = top * i / 5
        y = _ys(v, 0.0, top)
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_tick(v)}</text>'
        )
    return out, top


def _tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _ys(v: float, lo: float, hi: float) -> float:
    return H - B - (v - lo) / (hi - lo or 1.0) * (H - B - T)


def _xs(v: float, lo: float, hi: float) -> float:
    return L + (v - lo) / (hi - lo or 1.0) * (W - R - L)


def _legend(items: Sequence[tuple[str, str, str, str]]) -> list[str]:
    """(label, colour, dash, kind) rows in the right margin; kind is ``line`` or ``dot``."""
    out = []
    for i, (label, colour, dash, kind) in enumerate(items[:16]):
        y = T + 8 + 18 * i
        x = W - R + 12
        if kind == "dot":
            out.append(f'<circle cx="{x + 8}" cy="{y}" r="5" fill="{colour}"/>')
        else:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(
                f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{colour}" '
                f'stroke-width="2"{dash_attr}/>'
            )
        out.append(f'<text x="{x + 24}" y="{y + 4}" font-size="11">{escape(label[:22])}</text>')
    return out


def scatter(
    points: Sequence[tuple[str, float, float, str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = True,
    legend: Sequence[tuple[str, str]] = (),
    empty_reason: str = "no data",
    errors: Sequence[tuple[float | None, float | None]] | None = None,
) -> str:
    """Labelled points ``(label, x, y, colour)``; ``legend`` lists ``(name, colour)``;
    ``errors`` (aligned with ``points``) the ``(low, high)`` of each y, drawn as error bars."""
    errs = list(errors) if errors is not None else [(None, None)] * len(points)
    kept = [
        (p, e) for p, e in zip(points, errs, strict=True) if p[1] is not None and p[2] is not None
    ]
    if log_x:
        kept = [(p, e) for p, e in kept if p[1] > 0]
    pts = [p for p, _ in kept]
    if not pts:
        return _empty(title, x_label, y_label, empty_reason)
    parts = _open(title, f"{len(pts)} points") + _frame(x_label, y_label)
    highs = [e[1] for _, e in kept if e[1] is not None]
    grid, top = _y_axis(max([p[2] for p in pts] + highs))
    parts += grid
    xs = [math.log10(p[1]) if log_x else p[1] for p in pts]
    lo, hi = (math.floor(min(xs)), math.ceil(max(xs))) if log_x else (0.0, _nice_max(max(xs)))
    if hi <= lo:
        hi = lo + 1
    ticks = range(int(lo), int(hi) + 1) if log_x else [lo + (hi - lo) * i / 5 for i in range(6)]
    for t in ticks:
        x = _xs(float(t), lo, hi)
        label = _tick(10.0**t) if log_x else _tick(float(t))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{H - B + 16}" font-size="11" text-anchor="middle">{label}</text>'
        )
    for ((label, x_raw, y, colour), err), x_val in zip(kept, xs, strict=True):
        cx, cy = _xs(x_val, lo, hi), _ys(y, 0.0, top)
        parts += error_bar(cx, err, top, colour, label)
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{colour}" fill-opacity="0.85">'
            f"<title>{escape(label)}: x={x_raw:.4g}, y={y:.4f}</title></circle>"
        )
        parts.append(
            f'<text x="{cx + 8:.1f}" y="{cy - 8:.1f}" font-size="10">{escape(label[:24])}</text>'
        )
    parts += _legend([(name, colour, "", "dot") for name, colour in legend])
    return "\n".join([*parts, "</svg>"])


def error_bar(
    x: float, err: tuple[float | None, float | None], top: float, colour: str, label: str
) -> list[str]:
    """A vertical error bar with caps at ``x`` from ``err[0]`` to ``err[1]`` (y units);
    nothing when either bound is missing."""
    low, high = err
    if low is None or high is None:
        return []
    y0, y1 = _ys(low, 0.0, top), _ys(high, 0.0, top)
    return [
        f'<g class="errbar" stroke="{colour}" stroke-width="1.5">'
        f"<title>{escape(label)}: 95% CI [{low:.4f}, {high:.4f}]</title>"
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0:.1f}" y2="{y1:.1f}"/>'
        f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{y0:.1f}" y2="{y0:.1f}"/>'
        f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{y1:.1f}" y2="{y1:.1f}"/></g>'
    ]


def lines(
    x_ticks: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    empty_reason: str = "no data",
) -> str:
    """Series over the shared, evenly spaced x positions named by ``x_ticks``."""
    values = [y for s in series for y in s.ys if y is not None]
    if not series or not values or not x_ticks:
        return _empty(title, x_label, y_label, empty_reason)
    parts = _open(title, f"{len(series)} series") + _frame(x_label, y_label)
    grid, top = _y_axis(max(values))
    parts += grid
    n = len(x_ticks)
    positions = [_xs(i, -0.5, n - 0.5) for i in range(n)]
    for x, name in zip(positions, x_ticks, strict=True):
        parts.append(
            f'<text x="{x:.1f}" y="{H - B + 16}" font-size="11" text-anchor="middle">'
            f"{escape(name)}</text>"
        )
    for s in series:
        pts = [(positions[i], _ys(y, 0.0, top)) for i, y in enumerate(s.ys[:n]) if y is not None]
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}>'
            f"<title>{escape(s.label)}</title></polyline>"
        )
        for (x, y), v in zip(pts, [y for y in s.ys[:n] if y is not None], strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.colour}">'
                f"<title>{escape(s.label)}: {v:.4f}</title></circle>"
            )
    parts += _legend([(s.label, s.colour, s.dash, "line") for s in series])
    return "\n".join([*parts, "</svg>"])


def bars(
    groups: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    empty_reason: str = "no data",
    errors: Sequence[Sequence[tuple[float | None, float | None]]] | None = None,
) -> str:
    """Grouped bars: one group per name in ``groups``, one bar per series within it;
    ``errors[j][g]`` the ``(low, high)`` of series j's bar in group g (error bars)."""
    values = [y for s in series for y in s.ys if y is not None]
    values += [e[1] for row in errors or [] for e in row if e[1] is not None]
    if not series or not values or not groups:
        return _empty(title, x_label, y_label, empty_reason)
    parts = _open(title, f"{len(groups)} groups, {len(series)} series") + _frame(x_label, y_label)
    grid, top = _y_axis(max(values))
    parts += grid
    group_w = (W - R - L) / len(groups)
    bar_w = group_w * 0.8 / len(series)
    for g, name in enumerate(groups):
        gx = L + g * group_w
        parts.append(
            f'<text x="{gx + group_w / 2:.1f}" y="{H - B + 16}" font-size="11" '
            f'text-anchor="middle">{escape(name[:18])}</text>'
        )
        for j, s in enumerate(series):
            v = s.ys[g] if g < len(s.ys) else None
            if v is None:
                continue
            x = gx + group_w * 0.1 + j * bar_w
            y = _ys(v, 0.0, top)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{H - B - y:.1f}" fill="{s.colour}" fill-opacity="0.85">'
                f"<title>{escape(s.label)} / {escape(name)}: {v:.4f}</title></rect>"
            )
            if errors is not None and g < len(errors[j]):
                parts += error_bar(x + bar_w * 0.45, errors[j][g], top, "#222222", name)
    parts += _legend([(s.label, s.colour, "", "dot") for s in series])
    return "\n".join([*parts, "</svg>"])
