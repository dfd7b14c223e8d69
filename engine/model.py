"""Domain values shared by every layer: pipelines, stages, telemetry, health.

Frozen dataclasses with slots; statuses are `StrEnum`s. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Stage(StrEnum):
    """A pipeline's stages, in data-flow order."""

    SOURCE = "source"  # DMS CDC task
    ORCHESTRATOR = "orchestrator"  # Airflow / MWAA DAG
    TRANSFORM = "transform"  # Glue job / Lambda
    WAREHOUSE = "warehouse"  # Redshift / Snowflake


STAGES: tuple[Stage, ...] = tuple(Stage)

COMPONENT_KIND: dict[Stage, str] = {
    Stage.SOURCE: "dms_task",
    Stage.ORCHESTRATOR: "airflow_dag",
    Stage.TRANSFORM: "glue_job",
    Stage.WAREHOUSE: "redshift_cluster",
}


class Health(StrEnum):
    """Health of a stage or a pipeline in one minute. Order matters: worse is larger."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _HEALTH_RANK[self]


_HEALTH_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.FAILED: 2}


class FaultKind(StrEnum):
    """Fault kinds the twin can reproduce; also the error types diagnosis names."""

    SCHEMA_DRIFT = "schema_drift"
    RESOURCE_CONTENTION = "resource_contention"
    NETWORK_FAILURE = "network_failure"
    TIMEOUT = "timeout"
    WAREHOUSE_OVERLOAD = "warehouse_overload"
    CDC_STOPPED = "cdc_stopped"
    # Added with the decision layer: a kind no static runbook rule covers, and an ambiguous one.
    CREDENTIALS_EXPIRED = "credentials_expired"
    WAREHOUSE_SATURATION = "warehouse_saturation"


class ActionKind(StrEnum):
    """Recovery actions the twin (and later the executors) understand."""

    RETRY_WITH_BACKOFF = "retry_with_backoff"
    RESTART_TASK = "restart_task"
    SCALE_WORKERS = "scale_workers"
    REMAP_SCHEMA = "remap_schema"
    APPLY_BACK_PRESSURE = "apply_back_pressure"
    RESCHEDULE = "reschedule"
    RELOAD_TABLES = "reload_tables"
    RESTART_CDC_TASK = "restart_cdc_task"
    SCALE_WAREHOUSE = "scale_warehouse"
    ESCALATE_TO_HUMAN = "escalate_to_human"
    WAIT = "wait"


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_SUCCEEDED = "run_succeeded"
    RUN_FAILED = "run_failed"
    TASK_STOPPED = "task_stopped"
    LOG = "log"
    ACTION = "action"


class IncidentStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A pipeline of the fleet: an id, its freshness target and the component name of each stage."""

    id: str
    freshness_target_minutes: float = 15.0
    components: dict[Stage, str] = field(default_factory=dict)

    def component(self, stage: Stage) -> str:
        return self.components.get(stage, f"{self.id}-{stage.value}")


# The canonical metrics of a component. Sources map what they read (CloudWatch, the twin) onto these.
METRICS: tuple[str, ...] = (
    "cpu_pct", "memory_pct", "latency_s", "throughput_rows_s", "error_count", "workers",
    "cdc_lag_s", "queue_wait_s", "freshness_s",
)


@dataclass(frozen=True, slots=True)
class StageSample:
    """One stage's metrics in one minute; metrics the stage does not emit are absent."""

    pipeline_id: str
    stage: Stage
    ts: datetime
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class Event:
    pipeline_id: str
    stage: Stage
    ts: datetime
    kind: EventKind
    message: str
    level: str = "info"


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """What a source hands over for a window of minutes [start, end)."""

    start: datetime
    end: datetime
    samples: list[StageSample]
    events: list[Event]


@dataclass(frozen=True, slots=True)
class StageHealth:
    pipeline_id: str
    stage: Stage
    ts: datetime
    status: Health
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    pipeline_id: str
    ts: datetime
    status: Health
    freshness_minutes: float
    stages: dict[Stage, Health]
    slo_healthy: bool  # DESIGN: freshness within target and no stage failed


@dataclass(frozen=True, slots=True)
class Incident:
    id: int | None
    pipeline_id: str
    status: IncidentStatus
    opened_at: datetime
    onset_at: datetime
    stage: Stage | None
    error_type: str
    confidence: float
    evidence: dict
    closed_at: datetime | None = None
    updated_at: datetime | None = None


EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PROPOSAL_STATUSES = ("pending", "approved", "rejected", "expired", "cancelled")  # a proposal's life
MINUTE = timedelta(minutes=1)


def floor_minute(ts: datetime) -> datetime:
    """The start of the minute `ts` falls in, as an aware UTC datetime."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).replace(second=0, microsecond=0)
