"""Plotly figures and small summaries for the SLO & MTTR page, built from an engine ``SloReport``.

Pure functions of data frames (no Streamlit), so they are easy to test and reuse for exports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from console.widgets import STATUS_COLOURS
from engine.model import Health
from engine.service.reports import AnomalyView, SloReport

GOOD, BAD, WARN = STATUS_COLOURS[Health.HEALTHY], STATUS_COLOURS[Health.FAILED], STATUS_COLOURS[Health.DEGRADED]
NEUTRAL, ACCENT = "#8a8f98", "#3b82c4"
MAX_BARS = 30


def report_window(period: Sequence[date], first: datetime, last: datetime) -> tuple[datetime, datetime] | None:
    """[start, end) in UTC for a (start day, end day) pick, clipped to the data [first, last].

    None while the picker holds a single day (the user is still choosing) or the days hold no data.
    """
    if len(period) != 2:
        return None
    d0, d1 = period
    start = max(first, datetime.combine(d0, time.min, tzinfo=UTC))
    end = min(last + timedelta(minutes=1), datetime.combine(d1 + timedelta(days=1), time.min, tzinfo=UTC))
    return (start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class Headline:
    """The numbers above the charts."""

    overall: float | None
    pipelines: int
    meeting_target: int
    budget_remaining: float | None  # share of the fleet's error budget left, may be negative
    incidents: int
    open_incidents: int
    mttd_mean: float | None
    mttr_mean: float | None  # closed incidents only


def headline(report: SloReport) -> Headline:
    per, inc, burn = report.per_pipeline, report.incidents, report.burn
    remaining = None
    if len(burn):
        allowed, bad = float(burn["allowed_bad_minutes"].iloc[-1]), float(burn["bad_minutes"].iloc[-1])
        remaining = 1 - bad / allowed if allowed > 0 else None
    mttd = pd.to_numeric(inc["mttd_minutes"]).mean() if len(inc) else math.nan
    mttr = pd.to_numeric(inc["mttr_minutes"]).mean() if len(inc) else math.nan
    return Headline(report.overall, len(per), int(per["meets_target"].sum()) if len(per) else 0, remaining,
                    len(inc), int((inc["status"] == "open").sum()) if len(inc) else 0,
                    None if math.isnan(mttd) else float(mttd), None if math.isnan(mttr) else float(mttr))


def _layout(fig: go.Figure, title: str, height: int = 340) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}}, height=height,
                      margin={"l": 8, "r": 8, "t": 48, "b": 8},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1})
    return fig


def attainment_bars(per_pipeline: pd.DataFrame, target: float, limit: int = MAX_BARS) -> go.Figure:
    """Per-pipeline SLO attainment (worst `limit` pipelines), green when meeting target, with the target line."""
    df = per_pipeline.sort_values("attainment").head(limit).iloc[::-1]
    pct = 100 * df["attainment"].astype(float)
    colours = [GOOD if ok else BAD for ok in df["meets_target"]]
    hover = [f"{p}: {a:.2f} % ({h} of {m} min healthy)<br>error budget left: {b} %"
             for p, a, h, m, b in zip(df["pipeline_id"], pct, df["healthy_minutes"], df["minutes"],
                                      df["budget_remaining_pct"], strict=True)]
    fig = go.Figure(go.Bar(x=pct, y=df["pipeline_id"], orientation="h", marker_color=colours,
                           hovertext=hover, hoverinfo="text", name="attainment"))
    lo = min([100 * target, *pct.tolist()]) if len(pct) else 100 * target
    span = max(100 - lo, 0.5)
    fig.add_vline(x=100 * target, line_dash="dash", line_color=NEUTRAL,
                  annotation_text=f"target {100 * target:g} %", annotation_position="top left")
    fig.update_xaxes(range=[max(0.0, lo - 0.15 * span), 100 + 0.02 * span], ticksuffix=" %", title=None)
    fig.update_yaxes(title=None, type="category")
    shown = f"worst {limit} of {len(per_pipeline)}" if len(per_pipeline) > limit else "all pipelines"
    return _layout(fig, f"SLO attainment per pipeline ({shown})", height=max(300, 22 * len(df) + 90))


def budget_burn(burn: pd.DataFrame) -> go.Figure:
    """Cumulative bad pipeline-minutes against the minutes the target allows, hour by hour."""
    fig = go.Figure()
    fig.add_scatter(x=burn["ts"], y=burn["allowed_bad_minutes"], name="allowed by the target", mode="lines",
                    line={"color": NEUTRAL, "dash": "dash"})
    fig.add_scatter(x=burn["ts"], y=burn["bad_minutes"], name="bad minutes (cumulative)", mode="lines+markers",
                    line={"color": BAD}, fill="tozeroy", fillcolor="rgba(217,63,63,0.12)",
                    customdata=burn["burn_rate"], hovertemplate="%{y:.0f} bad min<br>burn rate %{customdata}x"
                                                                "<extra></extra>")
    fig.update_yaxes(title="pipeline-minutes", rangemode="tozero")
    fig.update_xaxes(title=None)
    return _layout(fig, "Error budget burn")


def detection_recovery(incidents: pd.DataFrame, daily: pd.DataFrame, until: datetime | None = None) -> go.Figure:
    """MTTD and MTTR per incident (by onset), with the daily means as lines when there are several days.

    With `until` (the report's end), incidents still open show how long they have been open so far.
    """
    fig = go.Figure()
    hover = [f"#{i} {p}: {e}" for i, p, e in zip(incidents["id"], incidents["pipeline_id"],
                                                    incidents["error_type"], strict=True)]
    for col, name, colour in (("mttd_minutes", "MTTD", WARN), ("mttr_minutes", "MTTR", ACCENT)):
        fig.add_scatter(x=incidents["onset_at"], y=pd.to_numeric(incidents[col]), mode="markers", name=name,
                        marker={"color": colour, "size": 9, "opacity": 0.85}, hovertext=hover,
                        hovertemplate="%{hovertext}<br>" + name + " %{y:.0f} min<extra></extra>")
    still_open = incidents["status"] == "open"
    if until is not None and still_open.any():
        onset = pd.to_datetime(incidents.loc[still_open, "onset_at"], utc=True)
        age = (pd.Timestamp(until) - onset).dt.total_seconds() / 60
        fig.add_scatter(x=incidents.loc[still_open, "onset_at"], y=age, mode="markers", name="open so far",
                        marker={"color": ACCENT, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
                        hovertext=[h for h, o in zip(hover, still_open, strict=True) if o],
                        hovertemplate="%{hovertext}<br>open for %{y:.0f} min<extra></extra>")
    if len(daily) > 1:
        for col, name, colour in (("mttd_mean_minutes", "MTTD daily mean", WARN),
                                  ("mttr_mean_minutes", "MTTR daily mean", ACCENT)):
            fig.add_scatter(x=daily["day"], y=pd.to_numeric(daily[col]), mode="lines", name=name,
                            line={"color": colour, "dash": "dot"})
    fig.update_yaxes(title="minutes from onset", rangemode="tozero")
    fig.update_xaxes(title=None)
    return _layout(fig, "Time to detect and to recover, per incident")


def incidents_by_cause(incidents: pd.DataFrame) -> go.Figure:
    """Incident counts per diagnosed cause, split into still open and closed."""
    counts = (incidents.assign(n=1).pivot_table(index="error_type", columns="status", values="n", aggfunc="sum",
                                               fill_value=0))
    counts = counts.reindex(columns=["open", "closed"], fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values().index]
    fig = go.Figure()
    for status, colour in (("closed", NEUTRAL), ("open", BAD)):
        fig.add_bar(x=counts[status], y=counts.index, orientation="h", name=status, marker_color=colour)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="incidents", dtick=1 if counts.to_numpy().sum() <= 10 else None)
    fig.update_yaxes(title=None, type="category")
    return _layout(fig, "Incidents by cause", height=max(260, 34 * len(counts) + 110))


def png_config(filename: str) -> dict:
    """Plotly modebar settings: the camera button exports a crisp PNG named after the chart."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


INCIDENT_COLOURS = {"open": "rgba(217,48,37,0.12)", "closed": "rgba(100,116,139,0.10)"}


def anomaly_chart(view: AnomalyView, metrics: Sequence[str]) -> go.Figure:
    """A stage's metrics (left axis) with its anomaly score (right axis, 0-1), the alarm level and incidents."""
    frame = view.series
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for m in metrics:
        if m in frame:
            fig.add_trace(go.Scatter(x=frame["ts"], y=frame[m], name=m, mode="lines", line={"width": 1.5}),
                          secondary_y=False)
    if "anomaly_score" in frame:
        fig.add_trace(go.Scatter(x=frame["ts"], y=frame["anomaly_score"], name="anomaly score", mode="lines",
                                 line={"color": "#7c3aed", "width": 1}, fill="tozeroy",
                                 fillcolor="rgba(124,58,237,0.12)"), secondary_y=True)
    fig.add_hline(y=view.alarm_at, line={"color": "#7c3aed", "dash": "dash", "width": 1}, secondary_y=True,
                  annotation_text=f"alarm level {view.alarm_at:g}", annotation_position="top right")
    end = frame["ts"].max() if len(frame) else view.end
    for inc in view.incidents:
        fig.add_vrect(x0=max(inc.onset_at, view.start), x1=inc.closed_at or end,
                      fillcolor=INCIDENT_COLOURS[inc.status.value], line_width=0,
                      annotation_text=f"#{inc.id} {inc.error_type.replace('_', ' ')}",
                      annotation_position="top left")
    fig.update_yaxes(title_text="metric value", secondary_y=False)
    fig.update_yaxes(title_text="anomaly score", range=[0, 1.02], tickvals=[0, 0.25, 0.5, 0.75, 1], showgrid=False,
                     secondary_y=True)
    return _layout(fig, f"{view.pipeline_id} / {view.stage.value}", height=420)
