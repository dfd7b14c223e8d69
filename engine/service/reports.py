"""Read models for the console and exports: the fleet right now, and SLO / MTTD / MTTR over a window.

Definitions (DESIGN.md): a pipeline-minute is healthy when freshness is within target and no stage
failed; SLO attainment = healthy minutes / minutes; MTTD = onset → incident opened; MTTR = onset →
pipeline healthy again (the incident's close).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from engine.model import STAGES, Health, Incident, Stage
from engine.store import repo
from engine.store.db import Store


@dataclass(frozen=True, slots=True)
class StageView:
    stage: Stage
    component: str
    status: Health
    reason: str
    score: float | None = None  # anomaly score of the newest minute, [0, 1]


@dataclass(frozen=True, slots=True)
class PipelineView:
    id: str
    freshness_target_minutes: float
    status: Health
    slo_healthy: bool
    freshness_minutes: float
    stages: list[StageView]
    throughput: list[float]  # rows/s landing in the warehouse, oldest first
    freshness: list[float]  # minutes, oldest first
    open_incident: Incident | None


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    as_of: datetime | None
    pipelines: list[PipelineView]
    open_incidents: int
    slo_window: float | None  # fleet attainment over the snapshot's window

    def count(self, status: Health) -> int:
        return sum(p.status is status for p in self.pipelines)


def fleet_snapshot(store: Store, window_minutes: int = 60) -> FleetSnapshot:
    """Every pipeline's newest minute, with `window_minutes` of history for sparklines."""
    with store.read() as conn:
        as_of = repo.latest_health_ts(conn)
        specs = repo.list_pipelines(conn)
        if as_of is None:
            return FleetSnapshot(None, [], 0, None)
        start = as_of - timedelta(minutes=window_minutes - 1)
        end = as_of + timedelta(minutes=1)
        health = repo.pipeline_health_frame(conn, start, end)
        latest_stages = repo.stage_frame(conn, as_of, end, metrics=())
        thr = repo.stage_frame(conn, start, end, stages=[Stage.WAREHOUSE], metrics=("throughput_rows_s",))
        incidents = {i.pipeline_id: i for i in repo.open_incidents(conn)}
    h_by = {pid: g for pid, g in health.groupby("pipeline_id", sort=False)}
    thr_by = {pid: g["throughput_rows_s"].tolist() for pid, g in thr.groupby("pipeline_id", sort=False)}
    st_by = {(r.pipeline_id, r.stage): (r.status, r.reason, r.anomaly_score) for r in latest_stages.itertuples()}
    views = []
    for spec in specs:
        h = h_by.get(spec.id)
        if h is None or h.empty:
            continue
        last = h.iloc[-1]
        stages = []
        for s in STAGES:
            status, reason, score = st_by.get((spec.id, s.value), ("healthy", "", None))
            score = None if score is None or pd.isna(score) else float(score)
            stages.append(StageView(s, spec.component(s), Health(status), reason, score))
        views.append(PipelineView(spec.id, spec.freshness_target_minutes, Health(last.status),
                                  bool(last.slo_healthy), float(last.freshness_minutes), stages,
                                  thr_by.get(spec.id, []), h["freshness_minutes"].tolist(), incidents.get(spec.id)))
    slo = float(health["slo_healthy"].mean()) if len(health) else None
    return FleetSnapshot(as_of, views, len(incidents), slo)


@dataclass(frozen=True, slots=True)
class SloReport:
    start: datetime
    end: datetime
    target: float
    overall: float | None
    per_pipeline: pd.DataFrame  # pipeline_id, minutes, healthy_minutes, attainment, meets_target, budget_*
    burn: pd.DataFrame  # ts (hourly), bad_minutes, allowed_bad_minutes (both cumulative), burn_rate
    incidents: pd.DataFrame  # one row per incident overlapping the window, with mttd/mttr minutes
    daily: pd.DataFrame  # day, incidents, mttd_mean_minutes, mttr_mean_minutes


def data_range(store: Store) -> tuple[datetime, datetime] | None:
    """First and last minute with health data, or None for an empty store."""
    with store.read() as conn:
        return repo.health_span(conn)


def slo_report(store: Store, start: datetime, end: datetime, target: float) -> SloReport:
    """SLO attainment, error-budget burn and incident timing in [start, end)."""
    with store.read() as conn:
        health = repo.pipeline_health_frame(conn, start, end)
        incidents = repo.incidents_between(conn, start, end)
    per = _per_pipeline(health, target)
    overall = float(health["slo_healthy"].mean()) if len(health) else None
    frame = incidents_frame(incidents, health)
    return SloReport(start, end, target, overall, per, _burn(health, target), frame, _daily(frame))


def _per_pipeline(health: pd.DataFrame, target: float) -> pd.DataFrame:
    cols = ["pipeline_id", "minutes", "healthy_minutes", "attainment", "target", "meets_target",
            "budget_minutes", "budget_spent_minutes", "budget_remaining_pct"]
    if health.empty:
        return pd.DataFrame(columns=cols)
    g = health.groupby("pipeline_id")["slo_healthy"].agg(minutes="size", healthy_minutes="sum").reset_index()
    g["attainment"] = g["healthy_minutes"] / g["minutes"]
    g["target"] = target
    g["meets_target"] = g["attainment"] >= target
    g["budget_minutes"] = (1 - target) * g["minutes"]
    g["budget_spent_minutes"] = g["minutes"] - g["healthy_minutes"]
    remaining = 1 - g["budget_spent_minutes"] / g["budget_minutes"].where(g["budget_minutes"] > 0)
    g["budget_remaining_pct"] = (100 * remaining).round(1)
    return g[cols].sort_values("attainment").reset_index(drop=True)


def _burn(health: pd.DataFrame, target: float) -> pd.DataFrame:
    cols = ["ts", "bad_minutes", "allowed_bad_minutes", "burn_rate"]
    if health.empty:
        return pd.DataFrame(columns=cols)
    h = health.assign(bad=~health["slo_healthy"], ts=pd.to_datetime(health["ts"], utc=True).dt.floor("h"))
    hourly = h.groupby("ts").agg(minutes=("bad", "size"), bad=("bad", "sum")).reset_index()
    hourly["bad_minutes"] = hourly["bad"].cumsum()
    hourly["allowed_bad_minutes"] = ((1 - target) * hourly["minutes"]).cumsum()
    hourly["burn_rate"] = (hourly["bad"] / ((1 - target) * hourly["minutes"])).round(2)
    return hourly[cols]


def incidents_frame(incidents: list[Incident], health: pd.DataFrame | None = None) -> pd.DataFrame:
    """Incidents as rows with MTTD (onset → opened) and MTTR (onset → healthy again) in minutes.

    "Healthy again" is the minute after the pipeline's last SLO-unhealthy minute before the incident closed,
    read from `health` (the window's per-minute pipeline health); without it, or when none of the incident's
    unhealthy minutes fall in the window, the incident's close stands in (stricter: it also waits for every
    stage to be back to normal). `close_minutes` is onset → closed.
    """
    bad = _unhealthy_minutes(health)
    rows = []
    for i in incidents:
        close = (i.closed_at - i.onset_at).total_seconds() / 60 if i.closed_at else None
        mttr = close
        times = bad.get(i.pipeline_id)
        if close is not None and times is not None:
            k = times.searchsorted(pd.Timestamp(i.closed_at), side="left")
            if k and times[k - 1] >= pd.Timestamp(i.onset_at):
                mttr = (times[k - 1] + pd.Timedelta(minutes=1) - pd.Timestamp(i.onset_at)).total_seconds() / 60
        rows.append({"id": i.id, "pipeline_id": i.pipeline_id, "status": i.status.value,
                     "stage": i.stage.value if i.stage else None, "error_type": i.error_type,
                     "confidence": i.confidence, "onset_at": i.onset_at, "opened_at": i.opened_at,
                     "closed_at": i.closed_at, "mttd_minutes": (i.opened_at - i.onset_at).total_seconds() / 60,
                     "mttr_minutes": mttr, "close_minutes": close})
    cols = ["id", "pipeline_id", "status", "stage", "error_type", "confidence", "onset_at", "opened_at",
            "closed_at", "mttd_minutes", "mttr_minutes", "close_minutes"]
    return pd.DataFrame(rows, columns=cols)


def _unhealthy_minutes(health: pd.DataFrame | None) -> dict[str, pd.DatetimeIndex]:
    """Per pipeline, the sorted minutes it missed its SLO in `health`."""
    if health is None or health.empty:
        return {}
    bad = health.loc[~health["slo_healthy"].astype(bool), ["pipeline_id", "ts"]]
    return {pid: pd.DatetimeIndex(pd.to_datetime(g["ts"], utc=True)).sort_values()
            for pid, g in bad.groupby("pipeline_id")}


def _daily(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["day", "incidents", "mttd_mean_minutes", "mttr_mean_minutes"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    f = frame.assign(day=pd.to_datetime(frame["onset_at"], utc=True).dt.floor("D"),
                     mttr_minutes=pd.to_numeric(frame["mttr_minutes"]))
    d = f.groupby("day").agg(incidents=("id", "size"), mttd_mean_minutes=("mttd_minutes", "mean"),
                             mttr_mean_minutes=("mttr_minutes", "mean")).reset_index()
    return d[cols]


@dataclass(frozen=True, slots=True)
class AnomalyView:
    pipeline_id: str
    stage: Stage
    start: datetime
    end: datetime
    series: pd.DataFrame  # ts, status, reason, anomaly_score, <metrics of the stage>
    incidents: list[Incident]
    alarm_at: float


def anomaly_view(store: Store, pipeline_id: str, stage: Stage, start: datetime, end: datetime, *,
                 alarm_at: float) -> AnomalyView:
    """One stage's metrics and anomaly score over [start, end), with the pipeline's incidents there."""
    with store.read() as conn:
        frame = repo.stage_frame(conn, start, end, pipeline_ids=[pipeline_id], stages=[stage])
        incidents = repo.incidents_between(conn, start, end, pipeline_id=pipeline_id)
    frame = frame.drop(columns=["pipeline_id", "stage"]).dropna(axis=1, how="all")
    return AnomalyView(pipeline_id, stage, start, end, frame, incidents, alarm_at)


def incidents_in(store: Store, start: datetime, end: datetime) -> list[Incident]:
    """Every incident whose life overlaps [start, end), oldest onset first."""
    with store.read() as conn:
        return repo.incidents_between(conn, start, end)
