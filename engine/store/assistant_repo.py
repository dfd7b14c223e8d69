"""Repositories the assistant reads (aggregates, anomaly scores, one incident) and the one it writes (proposals).

Plain functions over one connection with typed arguments; nothing here builds SQL from text it is given.
Aggregates run in the database so fleet-wide questions stay cheap on a thousand pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, case, func, insert, select

from engine.model import METRICS, Incident, Stage
from engine.store import repo
from engine.store.tables import EventRow, PipelineHealthRow, ProposalRow, StageMinuteRow


def error_totals(conn: Connection, start: datetime, end: datetime, *, pipeline_ids: Sequence[str] | None = None,
                 stages: Sequence[Stage] | None = None) -> pd.DataFrame:
    """Per (pipeline, stage) in [start, end): sum of the error_count metric and the number of minutes."""
    t = StageMinuteRow.__table__
    q = (select(t.c.pipeline_id, t.c.stage, func.coalesce(func.sum(t.c.error_count), 0.0),
                func.count())
         .where(t.c.ts >= start, t.c.ts < end).group_by(t.c.pipeline_id, t.c.stage))
    if pipeline_ids is not None:
        q = q.where(t.c.pipeline_id.in_(list(pipeline_ids)))
    if stages is not None:
        q = q.where(t.c.stage.in_([s.value for s in stages]))
    rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["pipeline_id", "stage", "error_metric_total", "minutes"])


def event_counts(conn: Connection, start: datetime, end: datetime, *, pipeline_ids: Sequence[str] | None = None,
                 stages: Sequence[Stage] | None = None, levels: Sequence[str] = ("error", "warning")
                 ) -> pd.DataFrame:
    """Per (pipeline, stage, kind, level) in [start, end): the number of events."""
    t = EventRow.__table__
    q = (select(t.c.pipeline_id, t.c.stage, t.c.kind, t.c.level, func.count())
         .where(t.c.ts >= start, t.c.ts < end, t.c.level.in_(list(levels)))
         .group_by(t.c.pipeline_id, t.c.stage, t.c.kind, t.c.level))
    if pipeline_ids is not None:
        q = q.where(t.c.pipeline_id.in_(list(pipeline_ids)))
    if stages is not None:
        q = q.where(t.c.stage.in_([s.value for s in stages]))
    return pd.DataFrame(conn.execute(q).all(), columns=["pipeline_id", "stage", "kind", "level", "count"])


def log_messages(conn: Connection, start: datetime, end: datetime, *, pipeline_ids: Sequence[str] | None = None,
                 levels: Sequence[str] = ("error", "warning"), limit: int = 2000) -> pd.DataFrame:
    """Distinct log messages in [start, end) per (pipeline, stage, level): count, first and last seen."""
    t = EventRow.__table__
    q = (select(t.c.pipeline_id, t.c.stage, t.c.level, t.c.message, func.count(), func.min(t.c.ts),
                func.max(t.c.ts))
         .where(t.c.ts >= start, t.c.ts < end, t.c.level.in_(list(levels)))
         .group_by(t.c.pipeline_id, t.c.stage, t.c.level, t.c.message)
         .order_by(func.max(t.c.ts).desc()).limit(limit))
    if pipeline_ids is not None:
        q = q.where(t.c.pipeline_id.in_(list(pipeline_ids)))
    frame = pd.DataFrame(conn.execute(q).all(),
                         columns=["pipeline_id", "stage", "level", "message", "count", "first_ts", "last_ts"])
    for col in ("first_ts", "last_ts"):  # aggregates lose the column type: SQLite hands back text
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def anomaly_scores(conn: Connection, start: datetime, end: datetime, *, pipeline_ids: Sequence[str] | None = None,
                   min_score: float = 0.0) -> tuple[pd.DataFrame, int]:
    """Stage-minutes in [start, end) scored at least `min_score`, and how many minutes have a score at all."""
    t = StageMinuteRow.__table__
    scored = (select(func.count()).where(t.c.ts >= start, t.c.ts < end, t.c.anomaly_score.is_not(None)))
    q = (select(t.c.pipeline_id, t.c.stage, t.c.ts, t.c.anomaly_score, t.c.status, t.c.reason)
         .where(t.c.ts >= start, t.c.ts < end, t.c.anomaly_score >= min_score)
         .order_by(t.c.pipeline_id, t.c.stage, t.c.ts))
    if pipeline_ids is not None:
        scored = scored.where(t.c.pipeline_id.in_(list(pipeline_ids)))
        q = q.where(t.c.pipeline_id.in_(list(pipeline_ids)))
    frame = pd.DataFrame(conn.execute(q).all(),
                         columns=["pipeline_id", "stage", "ts", "anomaly_score", "status", "reason"])
    return frame, int(conn.scalar(scored) or 0)


def health_summary(conn: Connection, start: datetime, end: datetime, *, pipeline_id: str | None = None
                   ) -> pd.DataFrame:
    """Per pipeline in [start, end): minutes, minutes that missed the SLO, minutes with a failed stage."""
    t = PipelineHealthRow.__table__
    q = (select(t.c.pipeline_id, func.count(), func.sum(case((t.c.slo_healthy.is_(False), 1), else_=0)),
                func.sum(case((t.c.status == "failed", 1), else_=0)))
         .where(t.c.ts >= start, t.c.ts < end).group_by(t.c.pipeline_id).order_by(t.c.pipeline_id))
    if pipeline_id is not None:
        q = q.where(t.c.pipeline_id == pipeline_id)
    return pd.DataFrame(conn.execute(q).all(), columns=["pipeline_id", "minutes", "unhealthy_minutes",
                                                        "failed_minutes"])


def metric_by_component(conn: Connection, start: datetime, end: datetime, metric: str, how: str, *,
                        stages: Sequence[Stage] | None = None) -> pd.DataFrame:
    """Per (pipeline, stage) in [start, end): `metric` aggregated in the database (avg, max, min or sum).

    `metric` must be one of the canonical METRICS; it picks a column, it is never spliced into SQL text.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    t = StageMinuteRow.__table__
    column = t.c[metric]
    agg = {"avg": func.avg, "max": func.max, "min": func.min, "sum": func.sum}[how]
    q = (select(t.c.pipeline_id, t.c.stage, agg(column), func.count(column))
         .where(t.c.ts >= start, t.c.ts < end, column.is_not(None)).group_by(t.c.pipeline_id, t.c.stage))
    if stages is not None:
        q = q.where(t.c.stage.in_([s.value for s in stages]))
    return pd.DataFrame(conn.execute(q).all(), columns=["pipeline_id", "stage", "value", "samples"])


def get_incident(conn: Connection, incident_id: int) -> Incident | None:
    return repo.get_incident(conn, incident_id)


# -- proposals ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewProposal:
    pipeline_id: str
    action: str
    stage: str | None
    params: dict[str, Any]
    origin: str
    risk: str
    confidence: float
    evidence: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    incident_id: int | None = None


def insert_proposal(conn: Connection, p: NewProposal) -> int:
    """Queue a proposal with status "pending"; returns its id."""
    t = ProposalRow.__table__
    result = conn.execute(insert(t).values(
        incident_id=p.incident_id, pipeline_id=p.pipeline_id, action=p.action, stage=p.stage, params=p.params,
        origin=p.origin, status="pending", risk=p.risk, confidence=p.confidence, evidence=p.evidence,
        created_at=p.created_at, expires_at=p.expires_at))
    return int(result.inserted_primary_key[0])


def pending_proposals(conn: Connection, pipeline_id: str, action: str) -> list[dict[str, Any]]:
    """Pending proposals for one pipeline and action (to avoid queueing the same fix twice)."""
    t = ProposalRow.__table__
    rows = conn.execute(select(t).where(t.c.pipeline_id == pipeline_id, t.c.action == action,
                                        t.c.status == "pending").order_by(t.c.id))
    return [dict(r._mapping) for r in rows]


def get_proposal(conn: Connection, proposal_id: int) -> dict[str, Any] | None:
    t = ProposalRow.__table__
    row = conn.execute(select(t).where(t.c.id == proposal_id)).first()
    return dict(row._mapping) if row is not None else None
