"""One tick of the loop: pull telemetry → anomaly scores → health → incidents, in one transaction.

A tick is a plain function of (store, source, clock time). Later layers add scoring, decisions and
execution to the same sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from engine.detection import health as health_mod
from engine.detection.incidents import update_incidents
from engine.detection.stage_scores import StageScore, StageScorer
from engine.model import Incident, IncidentStatus, TelemetryBatch
from engine.store import repo
from engine.store.db import Store
from engine.telemetry.source import TelemetrySource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TickResult:
    start: datetime
    end: datetime
    minutes: int
    samples: int
    events: int
    opened: list[Incident] = field(default_factory=list)
    closed: list[Incident] = field(default_factory=list)


def register(store: Store, source: TelemetrySource) -> None:
    """Make sure the store knows the source's pipelines."""
    with store.transaction() as conn:
        repo.upsert_pipelines(conn, source.pipelines(), source.name)


def tick(store: Store, source: TelemetrySource, now: datetime, scorer: StageScorer | None = None) -> TickResult:
    """Pull what is new up to `now`, score it, assess health, advance incidents; one transaction."""
    batch = source.pull(now)
    return ingest(store, source, batch, scorer)


def ingest(store: Store, source: TelemetrySource, batch: TelemetryBatch,
           scorer: StageScorer | None = None) -> TickResult:
    """Write a pulled batch and everything derived from it, atomically."""
    pipelines = source.pipelines()
    scored = {(s.pipeline_id, s.stage, s.ts): s for s in scorer.score(batch.samples)} if scorer else {}
    stage_rows, pipe_rows = health_mod.assess(batch, pipelines, scores=scored)
    opened: list[Incident] = []
    closed: list[Incident] = []
    with store.transaction() as conn:
        repo.insert_stage_minutes(conn, batch.samples, stage_rows, {k: v.score for k, v in scored.items()})
        repo.insert_events(conn, batch.events)
        repo.insert_pipeline_health(conn, pipe_rows)
        changed = update_incidents(repo.open_incidents(conn), pipe_rows, stage_rows, batch.events,
                                   _onsets(scored.values()))
        for inc in changed:
            new = inc.id is None
            saved = replace(inc, id=repo.save_incident(conn, inc))
            if new:
                opened.append(saved)
            if saved.status is IncidentStatus.CLOSED:
                closed.append(saved)
        repo.set_value(conn, f"watermark:{source.name}", {"end": batch.end.isoformat()})
    minutes = int((batch.end - batch.start).total_seconds() // 60)
    if opened or closed:
        log.info("tick %s: %d incident(s) opened, %d closed", batch.end.isoformat(), len(opened), len(closed))
    return TickResult(batch.start, batch.end, minutes, len(batch.samples), len(batch.events), opened, closed)


def _onsets(scores: Iterable[StageScore]) -> dict[tuple[str, datetime], datetime]:
    """Per (pipeline, minute), the earliest start of any of its stages' elevated-score runs."""
    out: dict[tuple[str, datetime], datetime] = {}
    for s in scores:
        if s.elevated_since is not None:
            key = (s.pipeline_id, s.ts)
            out[key] = min(out.get(key, s.elevated_since), s.elevated_since)
    return out
