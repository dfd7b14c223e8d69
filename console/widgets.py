"""Pure HTML builders for the console: an inline-SVG sparkline and the fleet status table.

Everything here returns a string and escapes every piece of text it interpolates, so a pipeline id or
an error message from a log line can never inject markup. Render the result with ``st.html``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from html import escape

from engine.model import Health
from engine.service.reports import FleetSnapshot, PipelineView, StageView

STATUS_COLOURS: dict[Health, str] = {
    Health.HEALTHY: "#21a366",
    Health.DEGRADED: "#f0a202",
    Health.FAILED: "#d93f3f",
}
_LINE = "#3b82c4"

# Scoped by the .sh-fleet class so nothing leaks into the rest of the page. Colours with alpha work on
# the light and the dark theme alike.
_CSS = """
<style>
.sh-fleet {width:100%; border-collapse:collapse; font-size:0.92rem; font-variant-numeric:tabular-nums;}
.sh-fleet th {text-align:left; font-weight:600; font-size:0.78rem; text-transform:uppercase;
  letter-spacing:0.04em; opacity:0.7; padding:6px 10px; border-bottom:1px solid rgba(128,128,128,0.35);}
.sh-fleet td {padding:6px 10px; border-bottom:1px solid rgba(128,128,128,0.18); vertical-align:middle;}
.sh-fleet tr:hover td {background:rgba(128,128,128,0.07);}
.sh-pid {font-weight:600;}
.sh-nowrap, .sh-fleet th {white-space:nowrap;}
.sh-badge {display:inline-block; margin-left:8px; padding:1px 8px; border-radius:10px; font-size:0.72rem;
  font-weight:600; color:#fff; vertical-align:1px;}
.sh-strip {display:flex; gap:3px;}
.sh-stage {flex:1 1 0; min-width:78px; padding:4px 6px; border-radius:4px; color:#fff; font-size:0.75rem;
  font-weight:600; text-align:center; cursor:default; white-space:nowrap;}
.sh-stage[data-status="degraded"] {color:#1f1f1f;}
.sh-stage {position:relative; overflow:hidden;}
.sh-score {position:absolute; left:0; bottom:0; height:3px; background:rgba(15,23,42,0.55);}
.sh-stage[data-status="failed"] {background-image:repeating-linear-gradient(135deg, rgba(255,255,255,0.16) 0 6px,
  transparent 6px 12px);}
.sh-fresh {white-space:nowrap;}
.sh-fresh-bar {height:4px; width:110px; margin-top:3px; border-radius:2px; background:rgba(128,128,128,0.22);}
.sh-fresh-bar span {display:block; height:4px; border-radius:2px;}
.sh-late {color:#d93f3f; font-weight:600;}
.sh-muted {opacity:0.55;}
.sh-inc {font-size:0.85rem;}
.sh-spark {display:block;}
.sh-dot {display:inline-block; width:9px; height:9px; border-radius:50%; background:#d93f3f; margin-right:6px;}
</style>
"""


def _finite(values: Iterable[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def sparkline_svg(values: Sequence[float | None], width: int = 120, height: int = 28, *,
                  colour: str = _LINE, label: str = "trend", zero_based: bool = False) -> str:
    """An inline SVG polyline of `values` (oldest first); missing / non-finite points are skipped.

    An empty series draws a dashed baseline; a constant one a flat line through the middle.
    `zero_based` puts the bottom at 0 (for non-negative series) so noise stays small and a drop to
    zero stands out; otherwise the series' own min and max span the height.
    """
    pts = _finite(values)
    pad = 2.0
    w, h = max(int(width), 8), max(int(height), 8)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'role="img" aria-label="{escape(label)}" class="sh-spark">')
    if not pts:
        mid = h / 2
        return (f'{head}<title>{escape(label)}: no data</title><line x1="{pad}" y1="{mid}" x2="{w - pad}" '
                f'y2="{mid}" stroke="rgba(128,128,128,0.6)" stroke-width="1" stroke-dasharray="3 3"/></svg>')
    lo, hi = min(pts), max(pts)
    if zero_based and lo >= 0:
        lo = 0.0
    span = hi - lo
    step = (w - 2 * pad) / (len(pts) - 1) if len(pts) > 1 else 0.0

    def y(v: float) -> float:
        return h / 2 if span == 0 else pad + (hi - v) / span * (h - 2 * pad)

    coords = [(pad + i * step if len(pts) > 1 else w / 2, y(v)) for i, v in enumerate(pts)]
    if len(coords) == 1:  # a single point still reads as a (short) flat line
        coords = [(pad, coords[0][1]), (w - pad, coords[0][1])]
    poly = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
    lx, ly = coords[-1]
    title = f"{label}: last {pts[-1]:,.0f}, min {min(pts):,.0f}, max {hi:,.0f}"
    return (f'{head}<title>{escape(title)}</title><polyline fill="none" stroke="{escape(colour)}" '
            f'stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round" points="{poly}"/>'
            f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="2" fill="{escape(colour)}"/></svg>')


def sparkline_img(values: Sequence[float | None], width: int = 120, height: int = 28, *, label: str = "trend",
                  zero_based: bool = False) -> str:
    """`sparkline_svg` as an ``<img>`` with a data URI, for ``st.html``: its sanitiser drops inline ``<svg>``."""
    svg = sparkline_svg(values, width, height, label=label, zero_based=zero_based)
    pts = _finite(values)
    title = f"{label}: last {pts[-1]:,.0f}, min {min(pts):,.0f}, max {max(pts):,.0f}" if pts else f"{label}: no data"
    data = base64.b64encode(svg.encode()).decode("ascii")
    return (f'<img class="sh-spark" src="data:image/svg+xml;base64,{data}" width="{int(width)}" '
            f'height="{int(height)}" alt="{_attr(title)}" title="{_attr(title)}">')


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _stage_cell(pipeline_id: str, stage_view: StageView) -> str:
    status = Health(stage_view.status)
    reason = stage_view.reason or status.value
    score = stage_view.score
    tooltip = f"{stage_view.component} ({stage_view.stage.value}): {reason}"
    gauge = ""
    if score is not None and math.isfinite(score):
        tooltip += f"; anomaly score {score:.3f}"
        gauge = f'<span class="sh-score" style="width:{100 * min(max(score, 0.0), 1.0):.0f}%"></span>'
    return (f'<div class="sh-stage" data-pipeline="{_attr(pipeline_id)}" data-stage="{_attr(stage_view.stage.value)}" '
            f'data-status="{_attr(status.value)}" data-score="{_attr("" if score is None else f"{score:.4f}")}" '
            f'title="{_attr(tooltip)}" style="background:{STATUS_COLOURS[status]}">'
            f'{escape(stage_view.stage.value)}{gauge}</div>')


def _freshness_cell(p: PipelineView) -> str:
    target = p.freshness_target_minutes
    if not math.isfinite(p.freshness_minutes):
        return f'<span class="sh-muted">unknown</span> / {target:g} min'
    late = p.freshness_minutes > target
    share = min(p.freshness_minutes / target, 1.0) if target > 0 else 1.0
    colour = STATUS_COLOURS[Health.FAILED if late else Health.HEALTHY]
    value = f'<span class="{"sh-late" if late else ""}">{p.freshness_minutes:.1f}</span>'
    return (f'<div class="sh-fresh" title="end-to-end freshness vs its target">{value} / {target:g} min'
            f'<div class="sh-fresh-bar"><span style="width:{100 * share:.0f}%;background:{colour}"></span></div>'
            "</div>")


def _incident_cell(p: PipelineView) -> str:
    inc = p.open_incident
    if inc is None:
        return '<span class="sh-muted">none</span>'
    where = f" at {inc.stage.value}" if inc.stage else ""
    since = inc.opened_at.strftime("%H:%M")
    tooltip = f"incident #{inc.id}: {inc.error_type}{where}, opened {inc.opened_at:%Y-%m-%d %H:%M} UTC"
    cause = inc.error_type.replace("_", " ")
    return (f'<span class="sh-inc" title="{_attr(tooltip)}" data-incident="{_attr(inc.id)}">'
            f'<span class="sh-dot"></span>{escape(cause)}{escape(where)} since {since}</span>')


def _row(p: PipelineView) -> str:
    status = Health(p.status)
    badge = (f'<span class="sh-badge" style="background:{STATUS_COLOURS[status]}'
             f'{";color:#1f1f1f" if status is Health.DEGRADED else ""}">{escape(status.value)}</span>'
             if status is not Health.HEALTHY else "")
    strip = "".join(_stage_cell(p.id, s) for s in p.stages)
    spark = sparkline_img(p.throughput, 120, 28, label=f"{p.id} throughput rows/s", zero_based=True)
    return (f'<tr data-pipeline="{_attr(p.id)}" data-status="{_attr(status.value)}">'
            f'<td class="sh-nowrap"><span class="sh-pid">{escape(p.id)}</span>{badge}</td>'
            f'<td><div class="sh-strip">{strip}</div></td>'
            f"<td>{_freshness_cell(p)}</td><td>{spark}</td><td>{_incident_cell(p)}</td></tr>")


def sort_worst_first(pipelines: Iterable[PipelineView]) -> list[PipelineView]:
    """Failed pipelines first, then degraded, then healthy; by id within each group (a stable order)."""
    return sorted(pipelines, key=lambda p: (-Health(p.status).rank, p.id))


def fleet_table_html(snapshot: FleetSnapshot, pipelines: Sequence[PipelineView] | None = None) -> str:
    """The fleet as an HTML table: one row per pipeline, worst first.

    Each stage cell carries ``data-pipeline``, ``data-stage`` and ``data-status`` and a tooltip with the
    component name and the reason for its status. `pipelines` narrows the rows (defaults to all).
    """
    rows = sort_worst_first(snapshot.pipelines if pipelines is None else pipelines)
    head = ("<thead><tr><th>Pipeline</th><th>Stages, in data-flow order</th><th>Freshness / target</th>"
            "<th>Throughput, 1 h</th><th>Open incident</th></tr></thead>")
    if rows:
        body = "".join(_row(p) for p in rows)
    else:
        body = '<tr><td colspan="5" class="sh-muted">No pipelines to show.</td></tr>'
    return f'{_CSS}<table class="sh-fleet">{head}<tbody>{body}</tbody></table>'


def percent(value: float | None, digits: int = 2) -> str:
    """0.99871 → "99.87 %"; None → "n/a"."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def minutes(value: float | None) -> str:
    """A duration in minutes for a metric tile; None / NaN → "n/a"."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if value < 10:
        return f"{value:.1f} min"  # 6.5 min of MTTR is not "6 min"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"
