"""Read-only queries behind the Approvals page: where a proposal's evidence sits in the twin's telemetry.

Proposal times (created_at, decided_at) are wall-clock UTC; the twin's telemetry runs on simulated time. The
evidence carries the simulated minute the agent decided at (`sim_time`), which anchors the metrics chart; a
proposal without one (the chat's) falls back to its incident's opening.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from engine.model import Incident, Stage
from engine.store import repo

BEFORE = timedelta(minutes=60)
AFTER = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class EvidenceWindow:
    """The stretch of one stage's telemetry to chart for a proposal, and the simulated minute it was proposed."""

    pipeline_id: str
    stage: Stage
    start: datetime
    end: datetime
    at: datetime | None
    incident: Incident | None


def incident(conn: Connection, incident_id: int | None) -> Incident | None:
    """The incident a proposal answers, or None."""
    return None if incident_id is None else repo.get_incident(conn, incident_id)


def _sim_time(evidence: dict[str, Any]) -> datetime | None:
    raw = evidence.get("sim_time")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def evidence_window(conn: Connection, proposal: dict[str, Any]) -> EvidenceWindow | None:
    """Where to look in the telemetry for `proposal` (a `queue.proposal` dict); None when the store has none."""
    span = repo.health_span(conn)
    if span is None:
        return None
    first, last = span
    inc = incident(conn, proposal.get("incident_id"))
    evidence = proposal.get("evidence") or {}
    at = _sim_time(evidence) or (inc.opened_at if inc is not None else None)
    diagnosed = (evidence.get("diagnosis") or {}).get("stage")
    stage_name = diagnosed or (inc.stage.value if inc is not None and inc.stage else None) or proposal["stage"]
    try:
        stage = Stage(stage_name)
    except ValueError:
        stage = Stage(proposal["stage"])
    anchor = min(max(at, first), last) if at is not None else last
    end = min(anchor + AFTER, last + timedelta(minutes=1))
    start = max(first, anchor - BEFORE)
    return EvidenceWindow(proposal["pipeline_id"], stage, start, end, at, inc)
