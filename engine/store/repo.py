"""Repositories: functions over one connection that hand out domain values, never ORM rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, select, update

from engine.model import (
    METRICS,
    Event,
    EventKind,
    Incident,
    IncidentStatus,
    PipelineHealth,
    PipelineSpec,
    Stage,
    StageHealth,
    StageSample,
)
from engine.store.tables import (
    EventRow,
    IncidentRow,
    KeyValueRow,
    PipelineHealthRow,
    PipelineRow,
    StageMinuteRow,
)

# -- pipelines ------------------------------------------------------------------------------------


def upsert_pipelines(conn: Connection, specs: Iterable[PipelineSpec], source: str) -> None:
    """Register pipelines (or refresh their target and components)."""
    t = PipelineRow.__table__
    existing = set(conn.scalars(select(t.c.id)))
    for p in specs:
        values = {"freshness_target_minutes": p.freshness_target_minutes,
                  "components": {s.value: n for s, n in p.components.items()}, "source": source}
        if p.id in existing:
            conn.execute(update(t).where(t.c.id == p.id).values(**values))
        else:
            conn.execute(insert(t).values(id=p.id, **values))


def list_pipelines(conn: Connection) -> list[PipelineSpec]:
    t = PipelineRow.__table__
    rows = conn.execute(select(t.c.id, t.c.freshness_target_minutes, t.c.components).order_by(t.c.id))
    return [PipelineSpec(r.id, r.freshness_target_minutes, {Stage(k): v for k, v in (r.components or {}).items()})
            for r in rows]


# -- telemetry ------------------------------------------------------------------------------------


_STAGE_MINUTE_COLUMNS = ("pipeline_id", "stage", "ts", *METRICS, "status", "reason", "anomaly_score")


def insert_stage_minutes(conn: Connection, samples: Sequence[StageSample], health: Sequence[StageHealth],
                         scores: dict[tuple[str, Stage, datetime], float] | None = None) -> None:
    """Write each stage-minute's metrics together with its derived health and anomaly score.

    The tick's largest write (pipelines × stages rows a minute), so it goes to the driver in one
    executemany with timestamps already in the form the dialect stores (what `UTCDateTime` would do).
    """
    if not samples:
        return
    scores = scores or {}
    status = {(h.pipeline_id, h.stage, h.ts): h for h in health}
    to_db = _ts_for(conn.dialect.name)
    rows = []
    for s in samples:
        h = status.get((s.pipeline_id, s.stage, s.ts))
        v = s.values
        rows.append((s.pipeline_id, s.stage.value, to_db(s.ts), *(v.get(m) for m in METRICS),
                     h.status.value if h else "healthy", h.reason if h else "",
                     scores.get((s.pipeline_id, s.stage, s.ts))))
    marks = ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * len(_STAGE_MINUTE_COLUMNS))
    sql = f"INSERT INTO stage_minutes ({', '.join(_STAGE_MINUTE_COLUMNS)}) VALUES ({marks})"
    conn.exec_driver_sql(sql, rows)


def _ts_for(dialect: str) -> Callable[[datetime], object]:
    """How `UTCDateTime` binds a timestamp on this dialect: naive UTC text on SQLite, aware otherwise."""
    if dialect == "sqlite":
        return lambda ts: _utc(ts).strftime("%Y-%m-%d %H:%M:%S.%f")
    return _utc


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC datetimes")
    return ts.astimezone(UTC)


def insert_events(conn: Connection, events: Sequence[Event]) -> None:
    if events:
        conn.execute(insert(EventRow.__table__), [
            {"pipeline_id": e.pipeline_id, "stage": e.stage.value, "ts": e.ts, "kind": e.kind.value,
             "level": e.level, "message": e.message} for e in events])


def insert_pipeline_health(conn: Connection, pipelines: Sequence[PipelineHealth]) -> None:
    if pipelines:
        conn.execute(insert(PipelineHealthRow.__table__), [
            {"pipeline_id": h.pipeline_id, "ts": h.ts, "status": h.status.value, "slo_healthy": h.slo_healthy,
             "freshness_minutes": h.freshness_minutes if math.isfinite(h.freshness_minutes) else None}
            for h in pipelines])


def latest_health_ts(conn: Connection) -> datetime | None:
    """The newest minute with computed health: "now" as far as the store knows."""
    return conn.scalar(select(func.max(PipelineHealthRow.__table__.c.ts)))


def health_span(conn: Connection) -> tuple[datetime, datetime] | None:
    """(oldest, newest) minute with computed health, or None for an empty store."""
    t = PipelineHealthRow.__table__
    row = conn.execute(select(func.min(t.c.ts), func.max(t.c.ts))).one()
    return None if row[1] is None else (row[0], row[1])


def earliest_health_ts(conn: Connection) -> datetime | None:
    return conn.scalar(select(func.min(PipelineHealthRow.__table__.c.ts)))


def events_between(conn: Connection, start: datetime, end: datetime, pipeline_id: str | None = None,
                   min_level: str | None = None) -> list[Event]:
    t = EventRow.__table__
    q = select(t).where(t.c.ts >= start, t.c.ts < end).order_by(t.c.ts, t.c.id)
    if pipeline_id is not None:
        q = q.where(t.c.pipeline_id == pipeline_id)
    if min_level == "warning":
        q = q.where(t.c.level.in_(("warning", "error")))
    elif min_level == "error":
        q = q.where(t.c.level == "error")
    return [Event(r.pipeline_id, Stage(r.stage), r.ts, EventKind(r.kind), r.message, r.level)
            for r in conn.execute(q)]


def stage_frame(conn: Connection, start: datetime, end: datetime, *, pipeline_ids: Sequence[str] | None = None,
                stages: Sequence[Stage] | None = None, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Stage-minutes in [start, end) as a wide frame: pipeline_id, stage, ts, status, reason, anomaly_score,
    <metrics>."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; expected some of {list(METRICS)}")
    t = StageMinuteRow.__table__
    cols = [t.c.pipeline_id, t.c.stage, t.c.ts, t.c.status, t.c.reason, t.c.anomaly_score] + [t.c[m] for m in metrics]
    q = select(*cols).where(t.c.ts >= start, t.c.ts < end)
    if pipeline_ids is not None:
        q = q.where(t.c.pipeline_id.in_(list(pipeline_ids)))
    if stages is not None:
        q = q.where(t.c.stage.in_([s.value for s in stages]))
    rows = conn.execute(q.order_by(t.c.pipeline_id, t.c.stage, t.c.ts)).all()
    return pd.DataFrame(rows, columns=["pipeline_id", "stage", "ts", "status", "reason", "anomaly_score", *metrics])


def pipeline_health_frame(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    t = PipelineHealthRow.__table__
    rows = conn.execute(select(t.c.pipeline_id, t.c.ts, t.c.status, t.c.slo_healthy, t.c.freshness_minutes)
                        .where(t.c.ts >= start, t.c.ts < end).order_by(t.c.pipeline_id, t.c.ts)).all()
    frame = pd.DataFrame(rows, columns=["pipeline_id", "ts", "status", "slo_healthy", "freshness_minutes"])
    frame["slo_healthy"] = frame["slo_healthy"].astype(bool)
    frame["freshness_minutes"] = pd.to_numeric(frame["freshness_minutes"], errors="coerce")  # NULL (unknown): NaN
    return frame


# -- incidents ------------------------------------------------------------------------------------


def _incident(r: Any) -> Incident:
    return Incident(id=r.id, pipeline_id=r.pipeline_id, status=IncidentStatus(r.status), opened_at=r.opened_at,
                    onset_at=r.onset_at, stage=Stage(r.stage) if r.stage else None, error_type=r.error_type,
                    confidence=r.confidence, evidence=r.evidence or {}, closed_at=r.closed_at,
                    updated_at=r.updated_at)


def open_incidents(conn: Connection) -> list[Incident]:
    t = IncidentRow.__table__
    return [_incident(r) for r in conn.execute(select(t).where(t.c.status == IncidentStatus.OPEN.value)
                                               .order_by(t.c.id))]


def incidents_between(conn: Connection, start: datetime, end: datetime,
                      pipeline_id: str | None = None) -> list[Incident]:
    """Incidents whose life overlaps [start, end)."""
    t = IncidentRow.__table__
    q = select(t).where(t.c.onset_at < end, (t.c.closed_at.is_(None)) | (t.c.closed_at >= start))
    if pipeline_id is not None:
        q = q.where(t.c.pipeline_id == pipeline_id)
    return [_incident(r) for r in conn.execute(q.order_by(t.c.onset_at, t.c.id))]


def get_incident(conn: Connection, incident_id: int) -> Incident | None:
    """One incident by id (None when there is none)."""
    t = IncidentRow.__table__
    row = conn.execute(select(t).where(t.c.id == incident_id)).first()
    return None if row is None else _incident(row)


def save_incident(conn: Connection, incident: Incident) -> int:
    """Insert a new incident (id None) or update an existing one; returns its id."""
    t = IncidentRow.__table__
    values = {"pipeline_id": incident.pipeline_id, "status": incident.status.value,
              "onset_at": incident.onset_at, "opened_at": incident.opened_at,
              "updated_at": incident.updated_at or incident.opened_at, "closed_at": incident.closed_at,
              "stage": incident.stage.value if incident.stage else None, "error_type": incident.error_type,
              "confidence": incident.confidence, "evidence": incident.evidence}
    if incident.id is None:
        return int(conn.execute(insert(t).values(**values)).inserted_primary_key[0])
    conn.execute(update(t).where(t.c.id == incident.id).values(**values))
    return incident.id


# -- bookkeeping ----------------------------------------------------------------------------------


def get_value(conn: Connection, key: str) -> dict[str, Any] | None:
    return conn.scalar(select(KeyValueRow.__table__.c.value).where(KeyValueRow.__table__.c.key == key))


def set_value(conn: Connection, key: str, value: dict[str, Any]) -> None:
    t = KeyValueRow.__table__
    if conn.execute(update(t).where(t.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(t).values(key=key, value=value))
