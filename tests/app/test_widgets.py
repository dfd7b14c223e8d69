"""The console's pure helpers: HTML builders (escaping, data attributes, sparklines) and SLO charts."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from console import charts
from console.widgets import fleet_table_html, minutes, percent, sparkline_img, sparkline_svg
from engine.model import Health, Incident, IncidentStatus, Stage
from engine.service.reports import FleetSnapshot, PipelineView, SloReport, StageView, incidents_frame

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pipeline(pid: str, statuses: dict[Stage, Health] | None = None, *, reason: str = "", freshness: float = 4.0,
             target: float = 15.0, incident: Incident | None = None, throughput: list[float] | None = None
             ) -> PipelineView:
    statuses = statuses or {}
    stages = [StageView(s, f"{pid}-{s.value}", statuses.get(s, Health.HEALTHY),
                        reason if statuses.get(s, Health.HEALTHY) is not Health.HEALTHY else "") for s in Stage]
    worst = max((v.status for v in stages), key=lambda h: h.rank)
    return PipelineView(pid, target, worst, worst is not Health.FAILED, freshness, stages,
                        throughput if throughput is not None else [100.0, 120.0, 90.0], [freshness], incident)


def snapshot(*pipelines: PipelineView) -> FleetSnapshot:
    return FleetSnapshot(T0, list(pipelines), sum(p.open_incident is not None for p in pipelines), 1.0)


def incident(pid: str, error_type: str = "schema_drift", closed_after: int | None = None) -> Incident:
    return Incident(7, pid, IncidentStatus.CLOSED if closed_after else IncidentStatus.OPEN, T0 + timedelta(minutes=2),
                    T0, Stage.TRANSFORM, error_type, 0.9, {},
                    closed_at=T0 + timedelta(minutes=closed_after) if closed_after else None)


# -- fleet table ----------------------------------------------------------------------------------
def test_every_stage_cell_carries_pipeline_stage_and_status() -> None:
    html = fleet_table_html(snapshot(pipeline("orders", {Stage.TRANSFORM: Health.FAILED}, reason="column gone"),
                                     pipeline("payments", {Stage.SOURCE: Health.DEGRADED}, reason="lag")))
    cells = re.findall(r'data-pipeline="([^"]+)" data-stage="([^"]+)" data-status="([^"]+)"', html)
    assert len(cells) == 8
    assert ("orders", "transform", "failed") in cells
    assert ("payments", "source", "degraded") in cells
    assert ("orders", "warehouse", "healthy") in cells
    assert 'title="orders-transform (transform): column gone"' in html


def test_rows_are_worst_first_then_by_id() -> None:
    html = fleet_table_html(snapshot(pipeline("a-ok"), pipeline("b-late", {Stage.SOURCE: Health.DEGRADED}),
                                     pipeline("c-down", {Stage.WAREHOUSE: Health.FAILED}), pipeline("aa-ok")))
    assert re.findall(r'<tr data-pipeline="([^"]+)"', html) == ["c-down", "b-late", "a-ok", "aa-ok"]


def test_all_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    inc = incident(evil, error_type='<b onmouseover="x">')
    html = fleet_table_html(snapshot(pipeline(evil, {Stage.TRANSFORM: Health.FAILED}, reason='"><img src=x>',
                                              incident=inc)))
    assert "<script>" not in html
    assert "<b onmouseover" not in html
    assert '"><img src=x>' not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x&gt;" in html


def test_freshness_over_target_is_flagged_and_incident_marked() -> None:
    html = fleet_table_html(snapshot(pipeline("orders", freshness=22.5, target=15.0, incident=incident("orders"))))
    assert '<span class="sh-late">22.5</span> / 15 min' in html
    assert "schema drift at transform since 09:02" in html
    assert 'data-incident="7"' in html


def test_unknown_freshness_and_empty_fleet() -> None:
    assert "unknown" in fleet_table_html(snapshot(pipeline("orders", freshness=float("nan"))))
    empty = fleet_table_html(FleetSnapshot(None, [], 0, None))
    assert "No pipelines to show." in empty
    assert "data-stage" not in empty


def test_rows_can_be_narrowed() -> None:
    a, b = pipeline("a"), pipeline("b", {Stage.SOURCE: Health.FAILED})
    html = fleet_table_html(snapshot(a, b), [b])
    assert re.findall(r'<tr data-pipeline="([^"]+)"', html) == ["b"]


# -- sparklines -----------------------------------------------------------------------------------
def _points(svg: str) -> list[tuple[float, float]]:
    match = re.search(r'points="([^"]+)"', svg)
    assert match
    return [tuple(map(float, p.split(","))) for p in match.group(1).split()]


def test_sparkline_of_an_empty_series_is_a_dashed_baseline() -> None:
    svg = sparkline_svg([], 100, 20)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "stroke-dasharray" in svg and "no data" in svg
    assert "polyline" not in svg
    assert sparkline_svg([float("nan"), None], 100, 20) == svg


def test_sparkline_of_a_constant_series_is_flat_through_the_middle() -> None:
    pts = _points(sparkline_svg([5.0] * 10, 100, 20))
    assert len(pts) == 10
    assert {y for _, y in pts} == {10.0}
    assert pts[0][0] == pytest.approx(2.0) and pts[-1][0] == pytest.approx(98.0)


def test_sparkline_scales_into_the_box_and_skips_gaps() -> None:
    pts = _points(sparkline_svg([0.0, None, 10.0, float("inf"), 5.0], 100, 20))
    assert len(pts) == 3
    ys = [y for _, y in pts]
    assert max(ys) == pytest.approx(18.0) and min(ys) == pytest.approx(2.0)  # higher value = higher up
    assert sparkline_svg([1.0], 50, 10).count("polyline") == 1


def test_zero_based_sparkline_keeps_noise_small() -> None:
    ys = [y for _, y in _points(sparkline_svg([100.0, 101.0], 100, 20, zero_based=True))]
    assert max(ys) - min(ys) < 1.0


def test_sparkline_img_wraps_the_svg_as_a_data_uri_with_an_escaped_title() -> None:
    img = sparkline_img([1.0, 2.0], label='<x> "rows"')
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img)
    assert data and base64.b64decode(data.group(1)).decode().startswith("<svg")
    assert 'title="&lt;x&gt; &quot;rows&quot;: last 2' in img


# -- formatting and charts ------------------------------------------------------------------------
def test_formatting() -> None:
    assert percent(0.99871) == "99.87 %"
    assert percent(None) == "n/a"
    assert percent(float("nan")) == "n/a"
    assert minutes(12.4) == "12 min"
    assert minutes(6.5) == "6.5 min"
    assert minutes(150) == "2.5 h"
    assert minutes(None) == "n/a"


def test_report_window_clips_the_picked_days_to_the_data() -> None:
    first, last = T0 + timedelta(hours=3), T0 + timedelta(days=2, hours=1)
    assert charts.report_window((first.date(), last.date()), first, last) == (first, last + timedelta(minutes=1))
    day = date(2026, 3, 3)
    assert charts.report_window((day, day), first, last) == (datetime(2026, 3, 3, tzinfo=UTC),
                                                             datetime(2026, 3, 4, tzinfo=UTC))
    assert charts.report_window((first.date(),), first, last) is None  # still picking
    assert charts.report_window((date(2025, 1, 1), date(2025, 1, 2)), first, last) is None


def _report(incidents: list[Incident]) -> SloReport:
    per = pd.DataFrame({"pipeline_id": ["orders", "payments"], "minutes": [100, 100], "healthy_minutes": [90, 100],
                        "attainment": [0.9, 1.0], "target": [0.99, 0.99], "meets_target": [False, True],
                        "budget_minutes": [1.0, 1.0], "budget_spent_minutes": [10, 0],
                        "budget_remaining_pct": [-900.0, 100.0]})
    burn = pd.DataFrame({"ts": [T0, T0 + timedelta(hours=1)], "bad_minutes": [0, 10],
                         "allowed_bad_minutes": [1.2, 2.0], "burn_rate": [0.0, 12.5]})
    inc = incidents_frame(incidents)
    daily = pd.DataFrame({"day": [T0], "incidents": [len(incidents)], "mttd_mean_minutes": [2.0],
                          "mttr_mean_minutes": [30.0]})
    return SloReport(T0, T0 + timedelta(hours=2), 0.99, 0.95, per, burn, inc, daily)


def test_mttr_is_onset_to_healthy_again_and_close_time_is_kept_beside_it() -> None:
    # Unhealthy minutes 0-11 of orders (then healthy while every stage settles); closed at minute 30.
    health = pd.DataFrame({"pipeline_id": ["orders"] * 30 + ["payments"] * 3,
                           "ts": [T0 + timedelta(minutes=m) for m in range(30)] + [T0] * 3,
                           "slo_healthy": [m >= 12 for m in range(30)] + [False] * 3})
    frame = incidents_frame([incident("orders", closed_after=30), incident("payments", "timeout")], health)
    orders, payments = frame.to_dict("records")
    assert (orders["mttr_minutes"], orders["close_minutes"]) == (12.0, 30.0)
    assert pd.isna(payments["mttr_minutes"]) and pd.isna(payments["close_minutes"])  # still open
    # Without health rows (or none in the window) the close stands in.
    assert incidents_frame([incident("orders", closed_after=30)])["mttr_minutes"].tolist() == [30.0]


def test_headline_numbers() -> None:
    head = charts.headline(_report([incident("orders", closed_after=30), incident("payments", "timeout")]))
    assert (head.pipelines, head.meeting_target, head.incidents, head.open_incidents) == (2, 1, 2, 1)
    assert head.budget_remaining == pytest.approx(1 - 10 / 2.0)
    assert head.mttd_mean == pytest.approx(2.0)
    assert head.mttr_mean == pytest.approx(30.0)  # only the closed one
    empty = charts.headline(_report([]))
    assert (empty.incidents, empty.mttd_mean, empty.mttr_mean) == (0, None, None)


def test_charts_build_from_a_report() -> None:
    report = _report([incident("orders", closed_after=30), incident("payments", "timeout")])
    bars = charts.attainment_bars(report.per_pipeline, report.target)
    assert list(bars.data[0].y) == ["payments", "orders"]  # worst at the bottom of a horizontal bar chart
    assert bars.layout.shapes[0].x0 == pytest.approx(99.0)  # the target line
    assert len(charts.budget_burn(report.burn).data) == 2
    assert [t.name for t in charts.detection_recovery(report.incidents, report.daily).data] == ["MTTD", "MTTR"]
    with_open = charts.detection_recovery(report.incidents, report.daily, report.end)
    assert with_open.data[-1].name == "open so far"
    assert list(with_open.data[-1].y) == [120.0]  # the open incident's onset to the report's end
    causes = charts.incidents_by_cause(report.incidents)
    assert {t.name for t in causes.data} == {"open", "closed"}
    assert sorted(causes.data[0].y) == ["schema_drift", "timeout"]
    many = pd.concat([report.per_pipeline] * 20, ignore_index=True)
    assert len(charts.attainment_bars(many, 0.99, limit=30).data[0].y) == 30
