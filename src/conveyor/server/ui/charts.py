"""Charts drawn on the server as inline SVG: no script, no network at view time, and a page
never carries more points than it can show (long histories are downsampled by the store).

Every number printed is formatted here and every label escaped, so the markup is safe to
insert into a page as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["bars", "dag", "graph", "lines", "parallel", "smooth"]

#: Colour-blind-safe series colours (Okabe-Ito), in order.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")

Series = tuple[str, Sequence[tuple[float, float]]]


def _markup(svg: str) -> Markup:
    """The chart's markup as safe HTML: every label in it went through ``escape`` and every
    number through ``_fmt``, so nothing a user wrote can become markup."""
    return Markup(svg)  # noqa: S704 - built from escaped labels and formatted numbers only


def _fmt(value: float) -> str:
    if value == 0 or math.isnan(value):
        return "0" if value == 0 else "nan"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _clock(seconds: float) -> str:
    """Epoch seconds as a UTC date and time for an axis."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def smooth(points: Sequence[tuple[float, float]], weight: float) -> list[tuple[float, float]]:
    """Exponential moving average of the values (``weight`` in [0, 1), 0 = none), debiased
    so the first points are not pulled toward zero."""
    if weight <= 0:
        return list(points)
    out, average = [], 0.0
    for i, (x, y) in enumerate(points, 1):
        average = weight * average + (1 - weight) * y
        out.append((x, average / (1 - weight**i)))
    return out


def lines(
    series: Sequence[Series],
    *,
    width: int = 640,
    height: int = 220,
    log_y: bool = False,
    x_label: str = "step",
    title: str = "",
    x_range: tuple[float, float] | None = None,
    x_time: bool = False,
) -> Markup:
    """A line chart of ``series`` (name, [(x, y), ...]) with its ranges on the axes (the x
    axis spans ``x_range`` when given, say a whole time window)."""
    pad_left, pad_bottom, pad_top, pad_right = 56, 30, 10, 10
    cleaned = []
    for name, points in series:
        kept = [
            (float(x), float(y))
            for x, y in points
            if y is not None and math.isfinite(float(y)) and (not log_y or float(y) > 0)
        ]
        cleaned.append((name, kept))
    every = [p for _, pts in cleaned for p in pts]
    label = escape(title or ", ".join(n for n, _ in series))
    if not every:
        return _markup(
            f'<svg class="chart" width="{width}" height="{height // 3}" role="img" '
            f'aria-label="{label}: no points"><text x="8" y="20">no points</text></svg>'
        )
    xs = [x for x, _ in every]
    ys = [math.log10(y) if log_y else y for _, y in every]
    x0, x1 = x_range if x_range is not None else (min(xs), max(xs))
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    inner_w, inner_h = width - pad_left - pad_right, height - pad_top - pad_bottom

    def at(x: float, y: float) -> str:
        v = math.log10(y) if log_y else y
        px = pad_left + (x - x0) / (x1 - x0) * inner_w
        py = pad_top + (1 - (v - y0) / (y1 - y0)) * inner_h
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}">',
        f'<rect x="{pad_left}" y="{pad_top}" width="{inner_w}" height="{inner_h}" class="plot"/>',
    ]
    top = 10**y1 if log_y else y1
    bottom = 10**y0 if log_y else y0
    parts.append(f'<text x="4" y="{pad_top + 10}" class="tick">{_fmt(top)}</text>')
    parts.append(f'<text x="4" y="{pad_top + inner_h}" class="tick">{_fmt(bottom)}</text>')
    tick = _clock if x_time else _fmt
    parts.append(f'<text x="{pad_left}" y="{height - 8}" class="tick">{tick(x0)}</text>')
    parts.append(
        f'<text x="{width - pad_right}" y="{height - 8}" class="tick" text-anchor="end">'
        f"{tick(x1)}</text>"
    )
    parts.append(
        f'<text x="{pad_left + inner_w / 2:.0f}" y="{height - 8}" class="tick" '
        f'text-anchor="middle">{escape(x_label)}{" (log y)" if log_y else ""}</text>'
    )
    for i, (name, pts) in enumerate(cleaned):
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) == 1:
            x, y = at(*pts[0]).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
        else:
            coords = " ".join(at(x, y) for x, y in pts)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}">'
                f"<title>{escape(name)}</title></polyline>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{COLOURS[i % len(COLOURS)]}"></i>'
        f"{escape(name)}</span>"
        for i, (name, _) in enumerate(cleaned)
    )
    return _markup(
        "".join(parts) + (f'<div class="legend">{legend}</div>' if len(series) > 1 else "")
    )


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    compare: Sequence[float] | None = None,
    width: int = 320,
    height: int = 120,
    title: str = "",
) -> Markup:
    """Bars of ``values`` (and, beside each, ``compare``'s in a second colour)."""
    n = len(values)
    if n == 0:
        return _markup("")
    top = max([*values, *(compare or []), 1e-12])
    slot = width / n
    parts = [
        f'<svg class="chart" width="{width}" height="{height + 16}" '
        f'viewBox="0 0 {width} {height + 16}" role="img" aria-label="{escape(title)}">'
    ]
    for i, value in enumerate(values):
        groups = [(value, COLOURS[0])] + ([(compare[i], COLOURS[1])] if compare else [])
        bar_w = max(slot / len(groups) - 1, 1)
        for j, (v, colour) in enumerate(groups):
            h = (v / top) * height
            x = i * slot + j * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(str(labels[i]))}: {_fmt(v)}</title></rect>'
            )
    parts.append(
        f'<text x="0" y="{height + 13}" class="tick">{escape(str(labels[0]))}</text>'
        f'<text x="{width}" y="{height + 13}" class="tick" text-anchor="end">'
        f"{escape(str(labels[-1]))}</text></svg>"
    )
    return _markup("".join(parts))


def parallel(
    axes: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float | None]]],
    *,
    width: int = 720,
    height: int = 240,
) -> Markup:
    """Parallel coordinates: one vertical axis per name in ``axes`` (each scaled to its own
    range), one line per row (name, values); a missing value breaks the line."""
    if len(axes) < 2 or not rows:
        return _markup("")
    pad = 30
    span = (width - 2 * pad) / (len(axes) - 1)
    ranges: list[tuple[float, float]] = []
    for k in range(len(axes)):
        column = [x for _, v in rows if (x := v[k]) is not None and math.isfinite(x)]
        lo, hi = (min(column), max(column)) if column else (0.0, 1.0)
        ranges.append((lo, hi if hi > lo else lo + 1))
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="parallel coordinates">'
    ]
    for k, name in enumerate(axes):
        x = pad + k * span
        lo, hi = ranges[k]
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{height - pad}" class="axis"/>'
            f'<text x="{x:.1f}" y="{pad - 8}" class="tick" text-anchor="middle">{escape(name)}'
            f'</text><text x="{x + 3:.1f}" y="{pad + 4}" class="tick">{_fmt(hi)}</text>'
            f'<text x="{x + 3:.1f}" y="{height - pad}" class="tick">{_fmt(lo)}</text>'
        )
    for i, (name, values) in enumerate(rows):
        colour = COLOURS[i % len(COLOURS)]
        segment: list[str] = []
        for k, v in enumerate(values):
            if v is None or not math.isfinite(v):
                segment = _flush(parts, segment, colour, name)
                continue
            lo, hi = ranges[k]
            y = height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)
            segment.append(f"{pad + k * span:.1f},{y:.1f}")
        _flush(parts, segment, colour, name)
    parts.append("</svg>")
    return _markup("".join(parts))


def _flush(parts: list[str], segment: list[str], colour: str, name: str) -> list[str]:
    if len(segment) > 1:
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{" ".join(segment)}"><title>{escape(name)}</title></polyline>'
        )
    return []


_STATUS_COLOURS = {
    "succeeded": "#1b6e3a",
    "cached": "#0072b2",
    "failed": "#b00020",
    "running": "#e69f00",
    "pending": "#767676",
    "skipped": "#767676",
    "cancelled": "#767676",
}


def dag(boxes: dict[str, tuple[float, float, Any]], edges: Sequence[tuple[str, str]]) -> Markup:
    """Steps as boxes at (x, y), each saying its status, duration and cache hit, with arrows
    from a step to the steps that read its outputs."""
    box_w, box_h = 160, 50
    if not boxes:
        return _markup("")
    width = max(x for x, _, _ in boxes.values()) + box_w + 20
    height = max(y for _, y, _ in boxes.values()) + box_h + 20
    parts = [
        f'<svg class="chart dag" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="pipeline steps">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#767676"/></marker>'
        "</defs>"
    ]
    for src, dst in edges:
        x1, y1, _ = boxes[src]
        x2, y2, _ = boxes[dst]
        parts.append(
            f'<line x1="{x1 + box_w:.0f}" y1="{y1 + box_h / 2:.0f}" x2="{x2:.0f}" '
            f'y2="{y2 + box_h / 2:.0f}" stroke="#767676" marker-end="url(#arrow)"/>'
        )
    for name, (x, y, step) in boxes.items():
        status = str(step.status).lower()
        cached = bool(step.cached_from)
        colour = (
            _STATUS_COLOURS["cached" if cached else status]
            if (cached or status in _STATUS_COLOURS)
            else "#767676"
        )
        seconds = (
            (step.ended_at - step.started_at).total_seconds()
            if step.started_at and step.ended_at
            else None
        )
        detail = "cache hit" if cached else status
        if seconds is not None and not cached:
            detail += f" · {_fmt(seconds)} s"
        parts.append(
            f'<g><rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="#fff" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x + 8:.0f}" y="{y + 20:.0f}" font-weight="600">{escape(name[:22])}</text>'
            f'<text x="{x + 8:.0f}" y="{y + 38:.0f}" class="tick" fill="{colour}">'
            f"{escape(detail)}</text><title>{escape(name)}: {escape(detail)}</title></g>"
        )
    parts.append("</svg>")
    return _markup("".join(parts))


def graph(
    nodes: dict[str, tuple[int, str, str]],
    edges: Sequence[tuple[str, str, str]],
    root: str,
) -> Markup:
    """Objects in columns by their distance from ``root`` (upstream to the left), each a
    link (``nodes``: key -> (column, label, href)), with arrows for ``edges`` (src, dst,
    relation)."""
    box_w, box_h, gap_x, gap_y = 170, 34, 60, 16
    columns: dict[int, list[str]] = {}
    for key, (column, _, _) in sorted(nodes.items(), key=lambda kv: kv[1][1]):
        columns.setdefault(column, []).append(key)
    if not columns:
        return _markup("")
    first = min(columns)
    tallest = max(len(v) for v in columns.values())
    at: dict[str, tuple[float, float]] = {}
    for column, keys in columns.items():
        top = (tallest - len(keys)) * (box_h + gap_y) / 2
        for row, key in enumerate(keys):
            at[key] = (10 + (column - first) * (box_w + gap_x), 10 + top + row * (box_h + gap_y))
    width = 20 + len(columns) * (box_w + gap_x) - gap_x
    height = 20 + tallest * (box_h + gap_y) - gap_y
    parts = [
        f'<svg class="chart lineage-graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="lineage graph">'
        '<defs><marker id="arrow-l" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#767676"/></marker>'
        "</defs>"
    ]
    for src, dst, relation in edges:
        if src not in at or dst not in at:
            continue
        (x1, y1), (x2, y2) = at[src], at[dst]
        parts.append(
            f'<line x1="{x1 + box_w:.0f}" y1="{y1 + box_h / 2:.0f}" x2="{x2:.0f}" '
            f'y2="{y2 + box_h / 2:.0f}" stroke="#767676" marker-end="url(#arrow-l)">'
            f"<title>{escape(relation)}</title></line>"
        )
    for key, (_, label, href) in nodes.items():
        x, y = at[key]
        stroke = "#12263f" if key == root else "#0b5cad"
        width_px = 3 if key == root else 1.5
        parts.append(
            f'<a href="{escape(href)}"><rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" '
            f'height="{box_h}" rx="6" fill="#fff" stroke="{stroke}" stroke-width="{width_px}"/>'
            f'<text x="{x + 8:.0f}" y="{y + 21:.0f}">{escape(_clip(label, 20))}</text>'
            f"<title>{escape(label)}</title></a>"
        )
    parts.append("</svg>")
    return _markup("".join(parts))
