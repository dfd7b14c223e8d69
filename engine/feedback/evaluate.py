"""Scoring a run: per fault MTTD and MTTR (as `selfheal simulate` does), SLO, and what the policy did.

`decision_summary` is shared by the store path (`simulate --policy`) and the in-memory arena, so both report
the same numbers for the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from engine.execution.catalog import CATALOG
from engine.feedback.arena import Arena
from engine.feedback.loop import Decision
from engine.model import ActionKind, Incident
from engine.sim.scenario import Scenario


def _r(x: float) -> float:
    return round(float(x), 4)


def recovery_minutes(onset: int, closed: int, healthy: Callable[[int], bool]) -> int:
    """DESIGN's MTTR of a fault whose incident closed in minute `closed`: onset → the pipeline healthy again,
    i.e. the minute after its last SLO-unhealthy minute in [onset, closed) (0 if it never was unhealthy)."""
    last_bad = next((m for m in range(closed - 1, onset - 1, -1) if not healthy(m)), None)
    return 0 if last_bad is None else last_bad + 1 - onset


def decision_summary(decisions: Iterable[Decision], incidents: Iterable[Incident]) -> dict[str, Any]:
    """Actions taken (waiting excluded), their cost, and the share of incidents closed without a human."""
    acts = [d for d in decisions if d.choice.action is not ActionKind.WAIT]
    incidents = list(incidents)
    escalated = {d.incident_id for d in acts if d.choice.action is ActionKind.ESCALATE_TO_HUMAN}
    closed = [i for i in incidents if i.closed_at is not None]
    auto = [i for i in closed if i.id not in escalated]
    by_action: dict[str, int] = {}
    for d in acts:
        by_action[d.choice.action.value] = by_action.get(d.choice.action.value, 0) + 1
    return {"actions": len(acts), "cost": _r(sum(CATALOG[d.choice.action].cost for d in acts)),
            "actions_per_incident": _r(len(acts) / len(incidents)) if incidents else None,
            "auto_resolved_share": _r(len(auto) / len(incidents)) if incidents else None,
            "escalations": len(escalated), "by_action": dict(sorted(by_action.items()))}


def arena_report(arena: Arena, scenario: Scenario, policy: str) -> dict[str, Any]:
    """The `simulate` report of an arena run (plus a decision section)."""
    # The per-fault scoring is `selfheal simulate`'s own, so both paths measure MTTD and MTTR identically
    # (imported here: the service layer imports this module).
    from engine.service.simulate import _incident, _mean, _score_fault

    twin = arena.twin
    start = twin.start
    minute = lambda ts: round((ts - start).total_seconds() / 60)  # noqa: E731
    incidents = sorted(arena.incidents.values(), key=lambda i: (i.onset_at, i.id))
    slo = arena.slo  # per pipeline, one SLO-health flag per minute since the start
    healthy = lambda p, m: slo[p][m] if 0 <= m < len(slo.get(p, ())) else True  # noqa: E731
    faults = [_score_fault(i, f, incidents, minute, healthy) for i, f in enumerate(twin.faults)]
    for f in faults:  # an unrecovered fault counts until the end of the run (censored), not as missing
        for key in ("mttr", "close"):
            f[f"{key}_censored_minutes"] = (f[f"{key}_minutes"] if f["recovered"]
                                            else scenario.duration_minutes - f["at_minute"])
    matched = {f["incident_id"] for f in faults if f["incident_id"] is not None}
    pipelines = []
    all_slo: list[bool] = []
    for spec in twin.pipelines:
        slo = arena.slo.get(spec.id, [])
        all_slo.extend(slo)
        mine = [i for i in incidents if i.pipeline_id == spec.id]
        pipelines.append({
            "id": spec.id, "freshness_target_minutes": spec.freshness_target_minutes, "minutes": len(slo),
            "healthy_minutes": int(sum(slo)), "slo_attainment": _r(np.mean(slo)) if slo else None,
            "incidents": [_incident(i, minute, matched) for i in mine],
            "mttd_minutes_mean": _mean([f["mttd_minutes"] for f in faults if f["pipeline"] == spec.id]),
            "mttr_minutes_mean": _mean([f["mttr_minutes"] for f in faults if f["pipeline"] == spec.id]),
        })
    mttr = [f["mttr_minutes"] for f in faults if f["mttr_minutes"] is not None]
    summary = {
        "slo_attainment": _r(np.mean(all_slo)) if all_slo else None,
        "faults": len(faults), "detected": sum(f["detected"] for f in faults),
        "recovered": sum(f["recovered"] for f in faults), "incidents": len(incidents),
        "false_incidents": sum(i.id not in matched for i in incidents),
        "mttd_minutes_mean": _mean([f["mttd_minutes"] for f in faults]),
        "mttr_minutes_mean": _mean(mttr),
        "mttr_minutes_p95": _r(float(np.percentile(mttr, 95))) if mttr else None,
        "close_minutes_mean": _mean([f["close_minutes"] for f in faults]),
    }
    return {"scenario": scenario.name, "seed": scenario.seed, "policy": policy, "start": start.isoformat(),
            "duration_minutes": scenario.duration_minutes, "summary": summary, "pipelines": pipelines,
            "faults": faults, "decisions": decision_summary(arena.log.decisions, incidents)}
