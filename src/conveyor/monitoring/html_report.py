"""The monitoring report as one self-contained HTML page.

No scripts and nothing fetched at view time: the charts are inline SVG drawn from numbers the
result holds (each column's binned reference and current shares) and from earlier results
(drift over time). Every value from the data is escaped.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.monitoring.service import MonitorResult

__all__ = ["render"]

_REFERENCE = "#9e9e9e"
_CURRENT = "#1565c0"
_BAD = "#b00020"
_GOOD = "#1b5e20"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _text(value: Any) -> str:
    return html.escape(str(value))


def bars(histogram: dict[str, Any] | None, width: int = 300, height: int = 110) -> str:
    """Reference (grey) and current (blue) shares side by side per bin, as SVG."""
    if not histogram or not histogram.get("reference"):
        return ""
    ref, cur = histogram["reference"], histogram["current"]
    top = max(max(ref), max(cur), 1e-9)
    n = len(ref)
    plot_h = height - 22
    slot = width / n
    shapes = []
    for i, (a, b) in enumerate(zip(ref, cur, strict=True)):
        x = i * slot
        for j, (share, colour) in enumerate(((a, _REFERENCE), (b, _CURRENT))):
            h = plot_h * share / top
            shapes.append(
                f'<rect x="{x + 1 + j * (slot - 2) / 2:.1f}" y="{plot_h - h:.1f}" '
                f'width="{max((slot - 2) / 2, 0.5):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{_text(_bin_name(histogram, i))}: reference {a:.1%}, "
                f"current {b:.1%}</title></rect>"
            )
    if "edges" in histogram:
        edges = histogram["edges"]
        labels = (
            f'<text x="0" y="{height - 6}" font-size="10">{_cell(float(edges[0]))}</text>'
            f'<text x="{width}" y="{height - 6}" font-size="10" text-anchor="end">'
            f"{_cell(float(edges[-1]))}</text>"
        )
    else:
        shown = ", ".join(histogram["categories"][:4])
        more = "..." if len(histogram["categories"]) > 4 else ""
        labels = f'<text x="0" y="{height - 6}" font-size="10">{_text(shown + more)}</text>'
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}" stroke="#bbb"/>'
        + "".join(shapes)
        + labels
        + "</svg>"
    )


def _bin_name(histogram: dict[str, Any], i: int) -> str:
    if "edges" in histogram:
        edges = histogram["edges"]
        return f"{edges[i]:.4g} .. {edges[i + 1]:.4g}"
    return str(histogram["categories"][i])


def line(
    points: list[tuple[str, float | None]],
    threshold: float | None,
    *,
    width: int = 300,
    height: int = 80,
    label: str = "",
    p_values: bool = False,
) -> str:
    """A value over time (oldest first) with its threshold dashed, as SVG; points past the
    threshold in red (below it, for ``p_values``, drawn on a fixed 0..1 scale)."""
    values = [v for _, v in points if v is not None]
    if len(values) < 2:
        return ""
    top = 1.0 if p_values else (max([*values, threshold or 0.0]) * 1.1 or 1.0)

    def bad(v: float) -> bool:
        return threshold is not None and (v < threshold if p_values else v >= threshold)

    plot_h = height - 14
    step = width / (len(points) - 1)
    coords = [
        (i * step, plot_h - plot_h * v / top) for i, (_, v) in enumerate(points) if v is not None
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{i * step:.1f}" cy="{plot_h - plot_h * v / top:.1f}" r="2.5" '
        f'fill="{_BAD if bad(v) else _CURRENT}">'
        f"<title>{_text(when)}: {v:.4g}</title></circle>"
        for i, (when, v) in enumerate(points)
        if v is not None
    )
    rule = ""
    if threshold is not None:
        y = plot_h - plot_h * threshold / top
        rule = (
            f'<line x1="0" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="{_BAD}" '
            'stroke-dasharray="4 3"/>'
        )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{_text(label)}</title>"
        f'<line x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}" stroke="#bbb"/>{rule}'
        f'<polyline points="{path}" fill="none" stroke="{_CURRENT}"/>{dots}'
        f'<text x="0" y="{height - 2}" font-size="10">{_text(points[0][0])}</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">'
        f"{_text(points[-1][0])}</text></svg>"
    )


def _verdicts(result: MonitorResult) -> list[tuple[str, bool | None]]:
    """The headline checks, each (what, bad?)."""
    drift = result.drift
    columns = drift.get("columns", [])
    found = [
        (
            f"{len(drift.get('drifted_columns', []))} of {len(columns)} columns drifted",
            result.dataset_drifted,
        )
    ]
    predicted = drift.get("prediction_drifted")
    if predicted is not None:
        found.append(("predictions drifted" if predicted else "predictions steady", predicted))
    volume = result.quality.get("volume") or {}
    if volume.get("anomaly") is not None:
        ratio = volume.get("ratio")
        how = f"{ratio:.2f}x the usual rows" if ratio is not None else "rows unusual"
        found.append((how, bool(volume["anomaly"])))
    perf = result.performance
    if perf.get("status") == "ok":
        metric = "accuracy" if "accuracy" in perf else "rmse"
        value = perf.get(metric) or 0.0
        found.append((f"{metric} {value:.4g} on {perf['labelled_rows']} labels", None))
    fresh = result.service.get("feature_freshness") or {}
    if fresh.get("stale_share") is not None:
        found.append((f"{fresh['stale_share']:.1%} stale features", fresh["stale_share"] > 0))
    return found


def render(result: MonitorResult, history: list[MonitorResult]) -> str:
    drifted = result.dataset_drifted
    verdict = {True: "DATA DRIFTED", False: "no data drift", None: "not judged"}[drifted]
    if drifted is not True and result.drift.get("prediction_drifted"):
        verdict = "PREDICTIONS DRIFTED"
    colour = _BAD if verdict.isupper() else {False: _GOOD, None: "#555"}[drifted]
    ordered = sorted({r.id or str(r.end): r for r in [*history, result]}.values(), key=_end)
    columns = result.drift.get("columns", [])
    badges = "".join(
        f'<span class="badge" style="border-color:{_BAD if bad else "#999"}">{_text(what)}</span>'
        for what, bad in _verdicts(result)
    )
    drift_rows = "".join(
        "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td></tr>".format(
            ' class="bad"' if c.get("drifted") else "",
            _cell(c["column"]),
            _cell(c["kind"]),
            _cell(c["test"]),
            _cell(c.get("statistic")),
            _cell(c.get("p_value")),
            _cell(c.get("threshold")),
            {True: "yes", False: "no", None: "n/a"}[c.get("drifted")],
            _cell(c.get("note")),
        )
        for c in columns
    )
    cards = "".join(_card(c, ordered) for c in _worst_first(columns))
    predictions = "".join(
        _card({**c, "column": f"prediction of {ref}"}, [])
        for ref, c in result.drift.get("predictions", {}).items()
    )
    over_time = line(
        [(f"{r.end:%m-%d %H:%M}", r.drift.get("share_drifted")) for r in ordered],
        result.drift.get("dataset_threshold"),
        width=640,
        height=140,
        label="share of columns drifted",
    )
    perf = result.performance
    perf_rows = "".join(f"<tr><td>{_cell(k)}</td><td>{_cell(v)}</td></tr>" for k, v in perf.items())
    service_rows = "".join(
        f"<tr><td>{_cell(ref)}</td><td>{_cell(v['rows'])}</td><td>{_cell(v['p50_ms'])}</td>"
        f"<td>{_cell(v['p95_ms'])}</td><td>{_cell(v['p99_ms'])}</td></tr>"
        for ref, v in result.service.get("versions", {}).items()
    )
    fresh = result.service.get("feature_freshness")
    fresh_rows = (
        "".join(f"<tr><td>{_cell(k)}</td><td>{_cell(v)}</td></tr>" for k, v in fresh.items())
        if fresh
        else ""
    )
    quality_rows = "".join(
        f"<tr><td>{_cell(name)}</td><td>{_cell(q.get('reference_missing'))}</td>"
        f"<td>{_cell(q.get('current_missing'))}</td><td>{_cell(q.get('out_of_range'))}</td>"
        f"<td>{_cell(', '.join(q.get('unseen_values', [])))}</td></tr>"
        for name, q in result.quality.get("columns", {}).items()
    )
    volume = result.quality.get("volume") or {}
    volume_line = (
        f"<p>Rows: {_cell(volume.get('rows'))}; usual for this window: "
        f"{_cell(volume.get('usual'))} (from {_cell(volume.get('history'))} earlier windows)"
        f"{'; ' + _text(volume['note']) if volume.get('note') else ''}.</p>"
        if volume
        else ""
    )
    notes = "".join(f"<li>{_text(n)}</li>" for n in result.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{_text(result.monitor)}: {_text(verdict)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
h1 {{ color: {colour}; margin-bottom: 0.2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
tr.bad td {{ background: #fde7e9; }}
.badge {{ display: inline-block; border: 2px solid; border-radius: 1em; padding: 1px 10px;
  margin: 0 6px 6px 0; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px; width: 310px; }}
.card.bad {{ border-color: {_BAD}; }} .card h3 {{ margin: 0 0 4px; font-size: 14px; }}
.key span {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{_text(verdict)}</h1>
<p>{badges}</p>
<p>Monitor <b>{_text(result.monitor)}</b> of deployment <b>{_text(result.deployment)}</b>,
window {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC:
{result.rows:,} predictions.</p>
<ul>{notes}</ul>
<h2>Drift over time</h2>
{over_time or "<p>One result so far: the chart needs two.</p>"}
<h2>Distributions</h2>
<p class="key"><span style="background:{_REFERENCE}"></span>reference
<span style="background:{_CURRENT}"></span>this window</p>
<div class="cards">{predictions}{cards}</div>
<h2>Drift</h2>
<table><tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>
<th>threshold</th><th>drifted</th><th>note</th></tr>{drift_rows}</table>
<h2>Performance</h2><table>{perf_rows}</table>
<h2>Data quality</h2>
{volume_line}
<table><tr><th>column</th><th>missing (reference)</th><th>missing (window)</th>
<th>out of range</th><th>unseen values</th></tr>{quality_rows}</table>
<h2>Service</h2>
<table><tr><th>model version</th><th>rows</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>
{service_rows}</table>
{"<h3>Feature freshness</h3><table>" + fresh_rows + "</table>" if fresh_rows else ""}
</body></html>
"""


def _end(result: MonitorResult) -> Any:
    return result.end


def _worst_first(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drifted columns first, then by how close each came to its threshold."""

    def closeness(c: dict[str, Any]) -> float:
        statistic, threshold = c.get("statistic"), c.get("threshold")
        if c.get("p_value") is not None:
            return 1.0 - float(c["p_value"])
        if statistic is None or not threshold:
            return 0.0
        return float(statistic) / float(threshold)

    return sorted(columns, key=lambda c: (not c.get("drifted"), -closeness(c)))


def _card(column: dict[str, Any], ordered: list[MonitorResult]) -> str:
    name = column["column"]
    trend = line(
        [(f"{r.end:%m-%d %H:%M}", _statistic(r, name)) for r in ordered],
        column.get("threshold"),
        label=f"{name}: {column.get('test')} over time",
        p_values=column.get("p_value") is not None,
    )
    shown = column.get("p_value") if column.get("p_value") is not None else column.get("statistic")
    what = "p" if column.get("p_value") is not None else column.get("test", "")
    return (
        f'<div class="card{" bad" if column.get("drifted") else ""}">'
        f"<h3>{_text(name)}</h3><div>{_text(what)} = {_cell(shown)} "
        f"(threshold {_cell(column.get('threshold'))})</div>"
        f"{bars(column.get('histogram'))}{trend}</div>"
    )


def _statistic(result: MonitorResult, name: str) -> float | None:
    for c in result.drift.get("columns", []):
        if c["column"] == name:
            value = c.get("statistic") if c.get("p_value") is None else c.get("p_value")
            return None if value is None else float(value)
    return None
