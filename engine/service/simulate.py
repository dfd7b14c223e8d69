"""`selfheal simulate`: run a scenario through the real tick as fast as possible and score it.

The run uses the twin's ground truth (when each fault began) only here, to measure MTTD and MTTR;
the tick itself never sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from engine.decision.qlearning import QLearningPolicy
from engine.detection.stage_scores import StageScorer
from engine.errors import SelfhealError
from engine.execution.executor import TwinExecutor
from engine.feedback.bench import make_policy
from engine.feedback.evaluate import decision_summary, recovery_minutes
from engine.feedback.loop import Healer
from engine.model import Incident
from engine.service.tick import register, tick
from engine.sim.faults import Fault
from engine.sim.scenario import Scenario
from engine.sim.twin import Twin
from engine.store import repo
from engine.store.db import Store
from engine.telemetry.simulator import SimulatorSource

log = logging.getLogger(__name__)
POLICIES = ("none", "qlearning", "rules", "manual", "oracle")
CHUNK_MINUTES = 60
DECISION_CHUNK_MINUTES = 1  # with a policy the loop decides every simulated minute, as it trains


def run_scenario(scenario: Scenario, *, store_url: str = "sqlite://", policy: str = "none",
                 progress: Callable[[int, int], None] | None = None, agent: QLearningPolicy | None = None,
                 ) -> dict[str, Any]:
    """Simulate `scenario` to its end and return the report (plain JSON-able data, deterministic by seed).

    With a policy other than "none" the tick also decides, acts in the twin, verifies and learns (the learned
    policy is greedy and frozen here: `agent` is its trained table, e.g. `memory.load_policy`).
    """
    if policy not in POLICIES:
        raise SelfhealError(f"unknown policy {policy!r}; available: {list(POLICIES)}")
    if policy == "qlearning" and (agent is None or not len(agent.table)):
        raise SelfhealError("the qlearning policy has no trained Q-table: run `selfheal train` first "
                            "(or give the store that holds one)")
    store = Store.open(store_url)
    try:
        with store.read() as conn:
            if repo.latest_health_ts(conn) is not None:
                raise SelfhealError("simulate needs an empty store; give --store a new SQLite file or empty database")
        twin = Twin.from_scenario(scenario)
        source = SimulatorSource(twin)
        scorer = StageScorer(seed=scenario.seed)
        register(store, source)
        healer = None if policy == "none" else _healer(policy, twin, source, scorer, agent=agent, seed=scenario.seed)
        chunk = CHUNK_MINUTES if healer is None else DECISION_CHUNK_MINUTES
        total = scenario.duration_minutes
        done = 0
        decisions: list = []
        while done < total:
            done = min(total, done + chunk)
            result = tick(store, source, twin.time_of(done), scorer, healer)
            decisions.extend(result.decisions)
            if progress and (done % CHUNK_MINUTES == 0 or done == total):
                progress(done, total)
        report = evaluate(store, twin, scenario, policy)
        if healer is not None:
            with store.read() as conn:
                incidents = repo.incidents_between(conn, twin.start, twin.time_of(total))
            report["decisions"] = decision_summary(decisions, incidents)
        return report
    finally:
        store.dispose()


def _healer(policy: str, twin: Twin, source: SimulatorSource, scorer: StageScorer, *,
            agent: QLearningPolicy | None, seed: int) -> Healer:
    """The decision loop for a simulate run: the named policy acting on the twin."""
    chosen = make_policy(policy, lambda: _Truth(twin), agent)  # the oracle reads the twin's truth
    return Healer(chosen, TwinExecutor(twin, source.lock), rng=np.random.default_rng([0, seed]),
                  on_capacity_change=scorer.rebaseline)


class _Truth:
    """The oracle's view of the twin's ground truth (benchmarks only)."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin

    def truth(self, pipeline_id: str, ts: datetime) -> list:
        minute = round((ts - self.twin.start).total_seconds() / 60)
        return [(f.kind, f.stage) for f in self.twin.faults if f.pipeline == pipeline_id and f.active(minute)]


def evaluate(store: Store, twin: Twin, scenario: Scenario, policy: str) -> dict[str, Any]:
    """Per pipeline: SLO attainment and incidents; per fault: detection (MTTD) and recovery (MTTR)."""
    start, end = twin.start, twin.time_of(scenario.duration_minutes)
    with store.read() as conn:
        health = repo.pipeline_health_frame(conn, start, end)
        incidents = repo.incidents_between(conn, start, end)
    minute = lambda ts: round((ts - start).total_seconds() / 60)  # noqa: E731
    slo = {(pid, minute(ts)): bool(ok)
           for pid, ts, ok in zip(health["pipeline_id"], health["ts"], health["slo_healthy"], strict=True)}
    faults = [_score_fault(i, f, incidents, minute, lambda p, m: slo.get((p, m), True))
              for i, f in enumerate(twin.faults)]
    matched = {f["incident_id"] for f in faults if f["incident_id"] is not None}
    pipelines = []
    for spec in twin.pipelines:
        h = health[health["pipeline_id"] == spec.id]
        mine = [i for i in incidents if i.pipeline_id == spec.id]
        pipelines.append({
            "id": spec.id, "freshness_target_minutes": spec.freshness_target_minutes, "minutes": len(h),
            "healthy_minutes": int(h["slo_healthy"].sum()),
            "slo_attainment": _r(h["slo_healthy"].mean()) if len(h) else None,
            "incidents": [_incident(i, minute, matched) for i in mine],
            "mttd_minutes_mean": _mean([f["mttd_minutes"] for f in faults if f["pipeline"] == spec.id]),
            "mttr_minutes_mean": _mean([f["mttr_minutes"] for f in faults if f["pipeline"] == spec.id]),
        })
    mttr = [f["mttr_minutes"] for f in faults if f["mttr_minutes"] is not None]
    summary = {
        "slo_attainment": _r(health["slo_healthy"].mean()) if len(health) else None,
        "faults": len(faults), "detected": sum(f["detected"] for f in faults),
        "recovered": sum(f["recovered"] for f in faults), "incidents": len(incidents),
        "false_incidents": sum(i.id not in matched for i in incidents),
        "mttd_minutes_mean": _mean([f["mttd_minutes"] for f in faults]),
        "mttr_minutes_mean": _mean(mttr),
        "mttr_minutes_p95": _r(float(np.percentile(mttr, 95))) if mttr else None,
        "close_minutes_mean": _mean([f["close_minutes"] for f in faults]),
    }
    return {"scenario": scenario.name, "seed": scenario.seed, "policy": policy,
            "start": start.isoformat(), "duration_minutes": scenario.duration_minutes,
            "summary": summary, "pipelines": pipelines, "faults": faults}


def _score_fault(index: int, fault: Fault, incidents: list[Incident], minute: Callable[[datetime], int],
                 healthy: Callable[[str, int], bool]) -> dict[str, Any]:
    """Match a fault to the first incident on its pipeline that is open at or after the fault's onset.

    MTTR is DESIGN's: fault onset → the pipeline healthy again (freshness within target, no stage failed),
    i.e. the minute after its last SLO-unhealthy minute before the incident closed (0 if the fault never
    made it unhealthy). `close_minutes` is onset → incident closed, which also waits for every stage to be
    back to normal for a few minutes (stricter; kept for comparison). `healthy(pipeline, minute)` reads
    the run's SLO health per minute since its start.
    """
    onset = fault.start
    candidates = [i for i in incidents if i.pipeline_id == fault.pipeline
                  and (i.closed_at is None or minute(i.closed_at) > onset)]
    inc = min(candidates, key=lambda i: i.opened_at, default=None)
    out: dict[str, Any] = {"index": index, "pipeline": fault.pipeline, "stage": fault.stage.value,
                           "kind": fault.kind.value, "at_minute": onset, "duration_minutes": fault.duration,
                           "severity": fault.severity, "detected": inc is not None,
                           "incident_id": inc.id if inc else None, "mttd_minutes": None,
                           "recovered": False, "mttr_minutes": None, "close_minutes": None}
    if inc is not None:
        out["mttd_minutes"] = max(0, minute(inc.opened_at) - onset)
        if inc.closed_at is not None:
            closed = minute(inc.closed_at)
            out["recovered"] = True
            out["mttr_minutes"] = recovery_minutes(onset, closed, lambda m: healthy(fault.pipeline, m))
            out["close_minutes"] = closed - onset
    return out


def _incident(i: Incident, minute: Callable[[datetime], int], matched: set[int | None]) -> dict[str, Any]:
    return {"id": i.id, "stage": i.stage.value if i.stage else None, "error_type": i.error_type,
            "onset_minute": minute(i.onset_at), "opened_minute": minute(i.opened_at),
            "closed_minute": minute(i.closed_at) if i.closed_at else None, "matched_fault": i.id in matched}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return _r(sum(vals) / len(vals)) if vals else None


def _r(x: float) -> float:
    return round(float(x), 4)
