"""Stage and pipeline health per minute, from telemetry alone (DESIGN: "The pipeline model").

A stage is *failed* in a minute when it logged an error (a failed run, a stopped task, a run with no
progress) or its telemetry shows a stalled run (nothing moves while its run time is far over its usual);
*degraded* when it warned, a metric crossed its static limit or its anomaly score raised a
confirmed alarm; otherwise *healthy*.
A pipeline is SLO-healthy when end-to-end freshness is within its target and no stage failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np

from engine.detection.stage_scores import StageScore
from engine.model import METRICS, STAGES, Health, PipelineHealth, PipelineSpec, Stage, StageHealth, TelemetryBatch


@dataclass(frozen=True, slots=True)
class Limits:
    """Static limits above which a metric makes its stage degraded."""

    cpu_pct: float = 90.0
    memory_pct: float = 90.0
    queue_wait_s: float = 60.0
    cdc_lag_s: float = 300.0
    latency_s: tuple[tuple[Stage, float], ...] = (
        (Stage.SOURCE, 15.0), (Stage.ORCHESTRATOR, 60.0), (Stage.TRANSFORM, 300.0), (Stage.WAREHOUSE, 60.0))

    def checks(self) -> dict[Stage, tuple[tuple[str, float], ...]]:
        """Per stage, the (metric, limit) pairs a sample is held against, in reporting order."""
        latency = dict(self.latency_s)
        return {stage: (("cpu_pct", self.cpu_pct), ("memory_pct", self.memory_pct),
                        ("queue_wait_s", self.queue_wait_s), ("cdc_lag_s", self.cdc_lag_s),
                        ("latency_s", latency[stage])) for stage in STAGES}


def assess(batch: TelemetryBatch, pipelines: list[PipelineSpec], limits: Limits = Limits(),
           scores: dict[tuple[str, Stage, datetime], StageScore] | None = None,
           ) -> tuple[list[StageHealth], list[PipelineHealth]]:
    """Health of every stage and pipeline in every minute of `batch` that has samples.

    With `scores`, a stage that is otherwise healthy but under a confirmed anomaly alarm is degraded.
    """
    scores = scores or {}
    metrics = {(s.pipeline_id, s.stage, s.ts): s.values for s in batch.samples}
    worst_event: dict[tuple[str, Stage, datetime], tuple[str, str]] = {}
    for e in batch.events:
        if e.level not in ("warning", "error"):
            continue
        key = (e.pipeline_id, e.stage, e.ts.replace(second=0, microsecond=0))
        if key not in worst_event or (e.level == "error" and worst_event[key][0] != "error"):
            worst_event[key] = (e.level, e.message)
    minutes = sorted({ts for (_, _, ts) in metrics})
    targets = {p.id: p.freshness_target_minutes for p in pipelines}
    checks, latency_limit = _checks(limits)
    stage_rows: list[StageHealth] = []
    pipe_rows: list[PipelineHealth] = []
    for ts in minutes:
        for pid, target in targets.items():
            statuses: dict[Stage, Health] = {}
            freshness = float("nan")
            for stage in STAGES:
                key = (pid, stage, ts)
                m = metrics.get(key)
                if m is None:
                    continue
                status, reason = _stage_status(m, worst_event.get(key), checks[stage])
                sc = scores.get(key)
                if status is not Health.FAILED:
                    stalled = _stalled(m, sc, latency_limit[stage])
                    if stalled:
                        status, reason = Health.FAILED, stalled
                if status is Health.HEALTHY and sc is not None and sc.alarm:
                    moved = ", ".join(f"{name} z={z:+.1f}" for name, z in sc.top) or "several metrics"
                    status, reason = Health.DEGRADED, f"anomalous (score {sc.score:.4f}): {moved}"
                statuses[stage] = status
                stage_rows.append(StageHealth(pid, stage, ts, status, reason))
                if "freshness_s" in m:
                    freshness = m["freshness_s"] / 60.0
            if not statuses:
                continue
            pipe_rows.append(pipeline_health(pid, ts, statuses, freshness, target))
    return stage_rows, pipe_rows


@lru_cache(maxsize=8)
def _checks(limits: Limits) -> tuple[dict[Stage, tuple[tuple[str, float], ...]], dict[Stage, float]]:
    """`limits.checks()` and the latency limit per stage, worked out once per set of limits (every minute uses them)."""
    return limits.checks(), dict(limits.latency_s)


def calm_rows(x: np.ndarray, stages: np.ndarray, limits: Limits = Limits()) -> np.ndarray:
    """Per row of `x` ([rows, METRICS], NaN where a stage does not emit a metric; `stages`: each row's index in
    `STAGES`), whether its metrics alone leave the stage healthy in `assess`: no static limit reached, no error
    counted and rows moving (only a stage with no throughput can have stalled). Events and anomaly alarms are the
    caller's to check. Sufficient, not necessary: a row with a NaN where it matters is never calm, so a calm row is
    healthy in `assess` for certain."""
    bound = _bounds(limits)[stages]
    over = (x >= bound) | (np.isnan(x) & (bound <= 0.0))  # an absent metric counts as 0.0 in `assess`
    return ~over.any(axis=1) & (x[:, _ERRORS] <= 0.0) & (x[:, _THROUGHPUT] > 0.0)


_ERRORS, _THROUGHPUT = METRICS.index("error_count"), METRICS.index("throughput_rows_s")


@lru_cache(maxsize=8)
def _bounds(limits: Limits) -> np.ndarray:
    """[stage, metric]: the static limit `assess` holds each stage's metric against (inf: none)."""
    bound = np.full((len(STAGES), len(METRICS)), np.inf)
    for s, stage in enumerate(STAGES):
        for name, limit in _checks(limits)[0][stage]:
            bound[s, METRICS.index(name)] = limit
    bound.flags.writeable = False
    return bound


def pipeline_health(pid: str, ts: datetime, statuses: dict[Stage, Health], freshness_minutes: float,
                    target_minutes: float) -> PipelineHealth:
    """Worst stage status, at least degraded when freshness misses its target (unknown counts as missed)."""
    present = set(statuses.values())
    worst = Health.FAILED if Health.FAILED in present else (
        Health.DEGRADED if Health.DEGRADED in present else Health.HEALTHY)
    fresh_ok = freshness_minutes <= target_minutes  # NaN compares False: no freshness, no SLO credit
    if not fresh_ok and worst is Health.HEALTHY:
        worst = Health.DEGRADED
    slo = fresh_ok and worst is not Health.FAILED
    return PipelineHealth(pid, ts, worst, round(freshness_minutes, 3), dict(statuses), slo)


_HEALTHY = (Health.HEALTHY, "")
STALLED_LATENCY_Z = 8.0  # a run this far over its usual duration while no row moves has stalled


def _stalled(m: dict[str, float], sc: StageScore | None, latency_limit: float) -> str:
    """Why the stage's run has stalled, or "": nothing moves through it (zero throughput) while its run time is
    over the static limit or far over its own usual (the anomaly score's latency z). A stage that is merely
    starved by a failure upstream has zero throughput too, but its runs finish in their usual time. The twin
    logs a hung run only after a few minutes; the telemetry shows it from the first."""
    if m.get("throughput_rows_s", 1.0) > 0.0 or "latency_s" not in m:
        return ""
    latency = m["latency_s"]
    z = dict(sc.top).get("latency_s", 0.0) if sc is not None and sc.alarm else 0.0
    if latency >= latency_limit or z >= STALLED_LATENCY_Z:
        return f"run made no progress: 0 rows/s while latency_s={latency:.0f} (z={z:+.1f})"
    return ""


def _stage_status(m: dict[str, float], event: tuple[str, str] | None,
                  checks: tuple[tuple[str, float], ...]) -> tuple[Health, str]:
    if event is not None and event[0] == "error":
        return Health.FAILED, event[1][:300]
    get = m.get
    over = [(name, limit) for name, limit in checks if get(name, 0.0) >= limit]
    if not over and event is None and get("error_count", 0.0) <= 0:
        return _HEALTHY  # the common case: nothing to report
    reasons = [f"{name}={m[name]:.0f} ≥ {limit:g}" for name, limit in over]
    if m.get("error_count", 0.0) > 0:
        reasons.append(f"error_count={m['error_count']:.0f}")
    if event is not None:
        reasons.append(event[1][:200])
    if reasons:
        return Health.DEGRADED, "; ".join(reasons)
    return Health.HEALTHY, ""
