"""Incident lifecycle: open on the first unhealthy minute, update while it lasts, close when healthy again.

An incident is closed once the pipeline has been fully healthy for `CLOSE_AFTER` consecutive minutes;
its `closed_at` is the first of those minutes (the moment the pipeline was healthy again, DESIGN's MTTR end).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

from engine.model import (
    STAGES,
    Event,
    Health,
    Incident,
    IncidentStatus,
    PipelineHealth,
    StageHealth,
)

CLOSE_AFTER = 3
MAX_LOG_LINES = 8

# First match wins; more specific phrases come first.
_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("timeout", ("no progress", "execution timeout", "past its expected duration")),
    ("cdc_stopped", ("replication task", "task status: stopped")),
    ("schema_drift", ("column", "schema", "expression is of type")),
    ("warehouse_overload", ("wlm", "statement timeout", "queue wait")),
    ("resource_contention", ("outofmemory", "out of memory", "memory limit", "gc overhead")),
    ("network_failure", ("connect", "connection", "reset by peer", "socket")),
)


@lru_cache(maxsize=4096)
def classify_message(text: str) -> str:
    """Error type suggested by a log line or a health reason, or "unknown" (cached: every minute of an incident
    classifies the same few reasons again)."""
    low = text.lower()
    for kind, words in _KEYWORDS:
        if any(w in low for w in words):
            return kind
    if "cpu_pct" in low or "memory_pct" in low:
        return "resource_contention"
    if "cdc_lag_s" in low:
        return "cdc_stopped"
    return "unknown"


def update_incidents(open_incidents: list[Incident], pipelines: list[PipelineHealth], stages: list[StageHealth],
                     events: list[Event], onsets: dict[tuple[str, datetime], datetime] | None = None,
                     ) -> list[Incident]:
    """Advance incidents through the minutes in `pipelines`; returns every incident opened or changed.

    `onsets` maps (pipeline, minute) to the earliest minute its anomaly scores started rising, which
    becomes a new incident's onset (otherwise the onset is the first unhealthy minute).
    """
    onsets = onsets or {}
    by_pipeline = {i.pipeline_id: i for i in open_incidents}
    bad_at: dict[tuple[str, datetime], list[StageHealth]] = defaultdict(list)  # the stages not healthy
    for h in stages:
        if h.status is not Health.HEALTHY:
            bad_at[(h.pipeline_id, h.ts)].append(h)
    logs: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.level in ("warning", "error"):
            logs[e.pipeline_id].append(e)
    changed: dict[int | str, Incident] = {}
    for ph in sorted(pipelines, key=lambda h: h.ts):
        current = by_pipeline.get(ph.pipeline_id)
        bad = bad_at.get((ph.pipeline_id, ph.ts), [])
        healthy = ph.slo_healthy and ph.status is Health.HEALTHY
        if current is None:
            if healthy:
                continue
            current = _open(ph, bad, onsets.get((ph.pipeline_id, ph.ts), ph.ts))
        else:
            current = _advance(current, ph, bad, healthy)
        current = _with_logs(current, logs[ph.pipeline_id], ph.ts)
        if current.status is IncidentStatus.CLOSED:
            by_pipeline.pop(ph.pipeline_id, None)
        else:
            by_pipeline[ph.pipeline_id] = current
        changed[current.id if current.id is not None else f"new:{ph.pipeline_id}:{current.onset_at}"] = current
    return list(changed.values())


def _finite(value: float) -> float | None:
    """A number for the evidence (JSON): unknown freshness (NaN) is None, never NaN."""
    return value if math.isfinite(value) else None


def _root(bad: list[StageHealth]) -> StageHealth | None:
    """The suspected root-cause stage: failed before degraded, then the most upstream."""
    if not bad:
        return None
    return min(bad, key=lambda h: (-h.status.rank, STAGES.index(h.stage)))


def _open(ph: PipelineHealth, bad: list[StageHealth], onset: datetime) -> Incident:
    root = _root(bad)
    reason = root.reason if root else (f"freshness {ph.freshness_minutes:.1f} min over target"
                                       if math.isfinite(ph.freshness_minutes) else "freshness unknown: no reading")
    return Incident(id=None, pipeline_id=ph.pipeline_id, status=IncidentStatus.OPEN, opened_at=ph.ts,
                    onset_at=min(onset, ph.ts), stage=root.stage if root else None, error_type=classify_message(reason),
                    confidence=0.5 if root else 0.2,
                    evidence={"stages": {h.stage.value: {"status": h.status.value, "reason": h.reason}
                                         for h in bad},
                              "worst_freshness_minutes": _finite(ph.freshness_minutes), "log_lines": [],
                              "healthy_since": None, "diagnoses": _diagnoses({}, bad, ph.ts)},
                    updated_at=ph.ts)


def _advance(inc: Incident, ph: PipelineHealth, bad: list[StageHealth], healthy: bool) -> Incident:
    ev = dict(inc.evidence)
    if healthy:
        since = ev.get("healthy_since") or ph.ts.isoformat()
        ev["healthy_since"] = since
        first_healthy = datetime.fromisoformat(since)
        if (ph.ts - first_healthy).total_seconds() >= (CLOSE_AFTER - 1) * 60:
            return replace(inc, status=IncidentStatus.CLOSED, closed_at=first_healthy, updated_at=ph.ts, evidence=ev)
        return replace(inc, updated_at=ph.ts, evidence=ev)
    ev["healthy_since"] = None
    known = [v for v in (ev.get("worst_freshness_minutes"), _finite(ph.freshness_minutes)) if v is not None]
    ev["worst_freshness_minutes"] = max(known) if known else None  # None while no reading was ever seen
    stages_ev = dict(ev.get("stages") or {})
    for h in bad:
        stages_ev.setdefault(h.stage.value, {"status": h.status.value, "reason": h.reason})
        if h.status is Health.FAILED:
            stages_ev[h.stage.value] = {"status": h.status.value, "reason": h.reason}
    ev["stages"] = stages_ev
    stage, error_type, confidence = inc.stage, inc.error_type, inc.confidence
    root = _root(bad)
    if root is not None and (error_type == "unknown" or (root.status is Health.FAILED and confidence < 0.6)):
        guess = classify_message(root.reason)
        if guess != "unknown":
            stage, error_type, confidence = root.stage, guess, 0.6 if root.status is Health.FAILED else 0.5
    ev["diagnoses"] = _diagnoses(ev, bad, ph.ts)
    return replace(inc, updated_at=ph.ts, evidence=ev, stage=stage, error_type=error_type, confidence=confidence)


def _diagnoses(ev: dict, bad: list[StageHealth], ts: datetime) -> list[dict[str, str]]:
    """Every (stage, error type) a failing stage has shown during the incident, in the order first seen.

    The incident keeps its first confident diagnosis; this list keeps diagnosing every minute, so a second
    fault that starts while the first is open is named too (its stage, its type and when it was first seen).
    """
    out = list(ev.get("diagnoses") or [])
    seen = {(d["stage"], d["error_type"]) for d in out}
    for h in sorted(bad, key=lambda h: STAGES.index(h.stage)):
        if h.status is not Health.FAILED:
            continue
        kind = classify_message(h.reason)
        if kind != "unknown" and (h.stage.value, kind) not in seen:
            seen.add((h.stage.value, kind))
            out.append({"stage": h.stage.value, "error_type": kind, "first_seen": ts.isoformat()})
    return out


def _with_logs(inc: Incident, events: list[Event], ts: datetime) -> Incident:
    lines = list(inc.evidence.get("log_lines") or [])
    if len(lines) >= MAX_LOG_LINES:
        return inc
    for e in events:
        if e.ts == ts and len(lines) < MAX_LOG_LINES:
            lines.append({"ts": e.ts.isoformat(), "stage": e.stage.value, "level": e.level, "message": e.message})
    if len(lines) == len(inc.evidence.get("log_lines") or []):
        return inc
    return replace(inc, evidence={**inc.evidence, "log_lines": lines})
