"""One tick of the loop: pull telemetry → anomaly scores → health → incidents, in one transaction.

A tick is a plain function of (store, source, clock time). Later layers add scoring, decisions and
execution to the same sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection

from engine.decision.state import minute_views
from engine.detection import health as health_mod
from engine.detection.incidents import update_incidents
from engine.detection.stage_scores import StageScore, StageScorer
from engine.feedback import memory
from engine.feedback.loop import Decision, Healer, Learned
from engine.model import (
    METRICS,
    ActionKind,
    Incident,
    IncidentStatus,
    PipelineHealth,
    Stage,
    StageHealth,
    StageSample,
    TelemetryBatch,
)
from engine.service import audit
from engine.store import decision_repo, repo
from engine.store.db import Store
from engine.telemetry.source import TelemetrySource

log = logging.getLogger(__name__)
WARM_MINUTES = 120  # history replayed into the anomaly scorer when a loop resumes a store


@dataclass(frozen=True, slots=True)
class TickResult:
    start: datetime
    end: datetime
    minutes: int
    samples: int
    events: int
    opened: list[Incident] = field(default_factory=list)
    closed: list[Incident] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    learned: list[Learned] = field(default_factory=list)


def register(store: Store, source: TelemetrySource) -> None:
    """Make sure the store knows the source's pipelines."""
    with store.transaction() as conn:
        repo.upsert_pipelines(conn, source.pipelines(), source.name)


def warm_scorer(store: Store, scorer: StageScorer, newest: datetime, *, pipeline_ids: Sequence[str] | None = None,
                minutes: int = WARM_MINUTES) -> None:
    """Rebuild the scorer's baselines from the stored recent past, so a restarted loop does not go blind."""
    with store.read() as conn:
        frame = repo.stage_frame(conn, newest - timedelta(minutes=minutes), newest + timedelta(minutes=1),
                                 pipeline_ids=pipeline_ids)
    samples = [StageSample(r.pipeline_id, Stage(r.stage), r.ts,
                           {m: float(getattr(r, m)) for m in METRICS if pd.notna(getattr(r, m))})
               for r in frame.itertuples(index=False)]
    scorer.score(samples)


def tick(store: Store, source: TelemetrySource, now: datetime, scorer: StageScorer | None = None,
         healer: Healer | None = None) -> TickResult:
    """Pull what is new up to `now`, score it, assess health, advance incidents and (with a healer) decide,
    act, verify and learn; one transaction."""
    batch = source.pull(now)
    return ingest(store, source, batch, scorer, healer)


def ingest(store: Store, source: TelemetrySource, batch: TelemetryBatch,
           scorer: StageScorer | None = None, healer: Healer | None = None) -> TickResult:
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
        decisions, learned = _heal(conn, healer, source, batch, stage_rows=stage_rows,
                                        pipe_rows=pipe_rows, closed=closed) if healer else ([], [])
        repo.set_value(conn, f"watermark:{source.name}", {"end": batch.end.isoformat()})
    minutes = int((batch.end - batch.start).total_seconds() // 60)
    if opened or closed:
        log.info("tick %s: %d incident(s) opened, %d closed", batch.end.isoformat(), len(opened), len(closed))
    return TickResult(batch.start, batch.end, minutes, len(batch.samples), len(batch.events), opened, closed,
                      decisions, learned)


def _heal(conn: Connection, healer: Healer, source: TelemetrySource, batch: TelemetryBatch, *,
          stage_rows: list[StageHealth], pipe_rows: list[PipelineHealth], closed: list[Incident],
          ) -> tuple[list[Decision], list[Learned]]:
    """The decision and feedback steps of the tick, on the batch's newest minute (same code as training)."""
    if not pipe_rows:
        return [], []
    last = max(h.ts for h in pipe_rows)
    targets = {p.id: p.freshness_target_minutes for p in source.pipelines()}
    views = {pid: v for (pid, ts), v in minute_views(batch.samples, stage_rows, pipe_rows, targets).items()
             if ts == last}
    elapsed: dict[str, tuple[int, int]] = {}
    for h in pipe_rows:
        minutes, unhealthy = elapsed.get(h.pipeline_id, (0, 0))
        elapsed[h.pipeline_id] = (minutes + 1, unhealthy + (not h.slo_healthy))
    open_now = {i.pipeline_id: i for i in repo.open_incidents(conn)}
    bind = getattr(healer.executor, "bound", None)  # a proposal gateway writes in this tick's transaction
    with bind(conn) if bind is not None else nullcontext():
        result = healer.step(last, views, open_now, {i.pipeline_id: i for i in closed}, elapsed)
    policy = healer.policy.name
    table = getattr(healer.policy, "table", None)
    if table is not None and getattr(healer.policy, "learning", False):
        memory.persist_learning(conn, table, result.learned, policy=policy, now=last)
    elif result.learned:
        decision_repo.insert_transitions(conn, memory.records_of(result.learned, policy=policy))
    for d in result.decisions:
        req = d.execution.request
        if req.action is ActionKind.WAIT:
            continue
        subject = d.execution.ref if d.execution.ref.startswith("proposal:") else f"pipeline:{d.pipeline_id}"
        audit.append(conn, actor=f"agent:{policy}", kind="agent_decision", subject=subject,
                     detail={"incident_id": d.incident_id, "action": req.action.value, "stage": req.stage.value,
                             "params": req.params, "state": d.state, "reason": d.choice.reason,
                             "execution": d.execution.ref, "status": d.execution.status.value,
                             "sim_time": last.isoformat()})
    for x in result.learned:
        t = x.transition
        subject = x.ref if x.ref and x.ref.startswith("proposal:") else f"pipeline:{t.pipeline_id}"
        audit.append(conn, actor=f"agent:{policy}", kind="agent_feedback", subject=subject,
                     detail={"pipeline": t.pipeline_id, "incident_id": t.incident_id, "action": t.action.value,
                             "outcome": x.status.value,
                             "recovered": t.done, "reward": round(t.reward, 3), "minutes": t.minutes,
                             "sim_time": t.ts.isoformat()})
    return result.decisions, result.learned


def _onsets(scores: Iterable[StageScore]) -> dict[tuple[str, datetime], datetime]:
    """Per (pipeline, minute), the earliest start of any of its stages' elevated-score runs."""
    out: dict[tuple[str, datetime], datetime] = {}
    for s in scores:
        if s.elevated_since is not None:
            key = (s.pipeline_id, s.ts)
            out[key] = min(out.get(key, s.elevated_since), s.elevated_since)
    return out
