"""What the decision layer sees of an incident, and its encoding for a tabular agent.

An `Observation` is built only from what the analysis layer produced for the newest minute (stage health and
its reasons, the stage's metrics, the incident's diagnosis) plus the loop's own history on the incident
(attempts, last action). It never reads the twin's ground truth. The same `observe` runs in the tick and in
training, so the agent is trained on exactly the state it gets live.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from engine.detection.incidents import classify_message
from engine.model import (
    STAGES,
    ActionKind,
    Health,
    Incident,
    PipelineHealth,
    Stage,
    StageHealth,
    StageSample,
)

HOT_PCT = 90.0  # cpu or memory at or above this: the stage is "hot"
QUEUE_RAISED_S = 15.0  # warehouse queue wait: raised from here (the health limit, 60 s, is "high")
QUEUE_HIGH_S = 60.0
ANOMALY_PREFIX = "anomalous"  # how health.assess words a stage degraded only by its anomaly alarm


@dataclass(frozen=True, slots=True)
class MinuteView:
    """Everything the analysis layer says about one pipeline in one minute."""

    pipeline_id: str
    ts: datetime
    health: PipelineHealth | None
    stages: tuple[StageHealth, ...]
    metrics: Mapping[Stage, Mapping[str, float]]
    freshness_target_minutes: float


@dataclass(frozen=True, slots=True)
class Observation:
    """The state of one open incident as the decision layer sees it."""

    pipeline_id: str
    ts: datetime
    incident_id: int | None
    error_type: str  # the signature now: the root stage's reason, classified; else the incident's diagnosis
    stage: Stage | None  # the root-cause stage now (failed before degraded, then the most upstream)
    stage_status: Health
    confidence: float
    hot: bool  # cpu or memory of the root stage at or above HOT_PCT
    warehouse_queue_s: float
    freshness_ratio: float  # freshness / target (NaN: unknown)
    slo_healthy: bool
    attempts: int  # actions taken on this incident, waiting excluded
    last_action: ActionKind | None  # the last action other than waiting
    minutes_open: int
    steps: int = 0  # decisions taken on this incident, waiting included
    throttled: bool = False  # the loop's own back pressure is in force on this pipeline
    concurrent: bool = False  # a decision for a second troubled stage while a step acts on another
    troubled: frozenset[Stage] | None = None  # every stage not healthy this minute (None: not known)

    @property
    def queue_bucket(self) -> str:
        q = self.warehouse_queue_s
        return "q-high" if q >= QUEUE_HIGH_S else ("q-raised" if q >= QUEUE_RAISED_S else "q-normal")

    @property
    def fresh_bucket(self) -> str:
        return "fresh" if self.freshness_ratio <= 1.0 else "stale"  # NaN compares False: stale


def root_stage(stages: Iterable[StageHealth], *, throttled: bool = False) -> StageHealth | None:
    """The suspected root cause among unhealthy stages: failed before degraded, a stage whose trouble is not
    the loop's own doing before one whose is (`throttled`: back pressure holds rows at the source, so its lag
    is expected), a stage over a static limit or logging warnings before one that is only statistically
    unusual (a slow stage makes the stages around it look anomalous too), then the stage over the most
    static limits (a hot stage over its cpu, memory and latency limits before a neighbour whose latency only
    reflects the queue the hot one builds), then the most upstream."""
    bad = [h for h in stages if h.status is not Health.HEALTHY]
    return min(bad, key=lambda h: (-h.status.rank, throttled and held_back(h), h.reason.startswith(ANOMALY_PREFIX),
                                   -_limits_over(h), STAGES.index(h.stage)), default=None)


THROTTLED = "throttled"  # the error type of a source that only lags behind the loop's own back pressure
UNKNOWN = "unknown"  # the error type of a stage whose reason names no known signature
POOLED = "any"  # the status part of a diagnosed signature's key: failing and slow together
_LAG_SIGNS = ("cdc_lag_s=", "latency_s=", ANOMALY_PREFIX)


def held_back(h: StageHealth) -> bool:
    """Whether a stage shows nothing but what an ingestion throttle causes: a source merely lagging (over its
    lag or latency limits, or statistically unusual), not failed and logging nothing."""
    return (h.stage is Stage.SOURCE and h.status is Health.DEGRADED
            and all(part.startswith(_LAG_SIGNS) for part in h.reason.split("; ")))


def _limits_over(h: StageHealth) -> int:
    """How many static limits a degraded stage is over (health words each as ``metric=value ≥ limit``)."""
    return h.reason.count(" ≥ ") if h.status is Health.DEGRADED else 0


def observe(view: MinuteView, incident: Incident, *, attempts: int = 0, last_action: ActionKind | None = None,
            steps: int = 0, throttled: bool = False, focus: Stage | None = None) -> Observation:
    """The observation of `incident` in the minute `view` describes (`throttled`: the loop's own back
    pressure is in force, so a source that only lags is its doing, not a stopped CDC task; `focus`: observe
    that stage as the one in question, for a decision beside a step already acting on another)."""
    root = root_stage([h for h in view.stages if focus is None or h.stage is focus], throttled=throttled)
    if root is not None and throttled and held_back(root):
        error_type = THROTTLED
    else:
        error_type = classify_message(root.reason) if root is not None else UNKNOWN
    if error_type == UNKNOWN and focus is None:
        # The incident's diagnosis describes its root stage; a stage observed beside it (`focus`) that shows no
        # signature of its own stays "unknown" (its slowness is often the root's backlog, not a fault to fix).
        error_type = incident.error_type
    stage = root.stage if root is not None else incident.stage
    m = view.metrics.get(stage, {}) if stage is not None else {}
    hot = m.get("cpu_pct", 0.0) >= HOT_PCT or m.get("memory_pct", 0.0) >= HOT_PCT
    queue = view.metrics.get(Stage.WAREHOUSE, {}).get("queue_wait_s", 0.0)
    fresh = view.health.freshness_minutes / view.freshness_target_minutes if view.health else float("nan")
    return Observation(
        pipeline_id=view.pipeline_id, ts=view.ts, incident_id=incident.id, error_type=error_type, stage=stage,
        stage_status=root.status if root is not None else Health.HEALTHY, confidence=incident.confidence, hot=hot,
        warehouse_queue_s=float(queue), freshness_ratio=float(fresh),
        slo_healthy=bool(view.health.slo_healthy) if view.health else False, attempts=attempts,
        last_action=last_action, minutes_open=max(0, round((view.ts - incident.opened_at).total_seconds() / 60)),
        steps=steps, throttled=throttled, concurrent=focus is not None,
        troubled=frozenset(h.stage for h in view.stages if h.status is not Health.HEALTHY))


def encode(obs: Observation) -> str:
    """The tabular state key, e.g. ``network_failure|any|q-normal``: the signature now, whether the root stage
    is failing or only slow where the signature is undiagnosed, and the warehouse queue (normal / raised / high).

    Deliberately coarse: every extra feature multiplies the states a tabular agent must visit. Measured on
    training scenarios: adding the last action or the number of attempts stalled learning (a catch-all
    "tried twice" state mixed every situation); status, load and freshness flicker from minute to minute.
    The root stage decides where an action lands (the catalog) and which actions are offered, not which
    to pick, so it stays out of the key. Failing vs slow is kept only for ``unknown`` (an undiagnosed failure
    is not an undiagnosed slowdown) and ``throttled``; a diagnosed signature pools both (``any``): a stage
    flickers between them while a fix takes hold, and a separate row for each let a `wait` step into the row
    with the more optimistic estimates (maximisation bias). Measured with `bench/rl_seeds.py` on cells not used
    to choose: 58 of 90 training-seed × held-out cells met every check, against 35 of 90 with the split.
    """
    return "|".join((obs.error_type, _status(obs.error_type, failing=obs.stage_status is Health.FAILED),
                     obs.queue_bucket))


def _status(error_type: str, *, failing: bool) -> str:
    """The key's status part: failing / slow for an undiagnosed or throttled stage, else pooled."""
    if error_type in (UNKNOWN, THROTTLED):
        return "failing" if failing else "slow"
    return POOLED


STATE_FIELDS = ("error_type", "root_status", "warehouse_queue")
ANY = "*"


def coarse(key: str) -> str | None:
    """The state one level coarser: the same signature and status with the warehouse queue left out
    (``cdc_stopped|failing|*``); None for a key that is not an encoded state or is coarse already.

    Two faults at once produce combinations (a stopped CDC task while the warehouse queue is high) that
    training meets rarely; their coarse state pools every queue level, so the agent falls back on what it
    learned for the signature instead of picking among untried actions.
    """
    parts = key.split("|")
    if len(parts) != len(STATE_FIELDS) or parts[-1] == ANY:
        return None
    return "|".join((*parts[:-1], ANY))


def upgrade_key(key: str) -> str:
    """A stored state key as `encode` writes it now. Tables learned before diagnosed signatures pooled failing
    and slow hold ``schema_drift|failing|q-normal`` and ``schema_drift|slow|q-normal``: both become
    ``schema_drift|any|q-normal``. Any other key is returned unchanged."""
    parts = key.split("|")
    if len(parts) != len(STATE_FIELDS) or parts[1] not in ("failing", "slow"):
        return key
    return "|".join((parts[0], _status(parts[0], failing=parts[1] == "failing"), parts[2]))


def decode(key: str) -> dict[str, str]:
    """A state key back into its named parts (for display)."""
    return dict(zip(STATE_FIELDS, key.split("|"), strict=False))


def minute_views(samples: Iterable[StageSample], stage_rows: Iterable[StageHealth],
                 pipe_rows: Iterable[PipelineHealth], targets: Mapping[str, float], *,
                 only: Collection[str] | None = None) -> dict[tuple[str, datetime], MinuteView]:
    """Group one batch's analysis output into a view per (pipeline, minute), of the pipelines in `only` if
    given (e.g. those with an incident: the healer reads no other)."""
    if only is not None:
        samples = [s for s in samples if s.pipeline_id in only]
        stage_rows = [h for h in stage_rows if h.pipeline_id in only]
        pipe_rows = [ph for ph in pipe_rows if ph.pipeline_id in only]
    metrics: dict[tuple[str, datetime], dict[Stage, Mapping[str, float]]] = defaultdict(dict)
    for s in samples:
        metrics[(s.pipeline_id, s.ts)][s.stage] = s.values
    stages: dict[tuple[str, datetime], list[StageHealth]] = defaultdict(list)
    for h in stage_rows:
        stages[(h.pipeline_id, h.ts)].append(h)
    out = {}
    for ph in pipe_rows:
        key = (ph.pipeline_id, ph.ts)
        out[key] = MinuteView(ph.pipeline_id, ph.ts, ph, tuple(stages.get(key, ())), metrics.get(key, {}),
                              targets.get(ph.pipeline_id, 15.0))
    return out
