"""SQLAlchemy 2 typed tables. The schema itself is created and upgraded by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Autoincrementing 64-bit ids that SQLite also accepts as its rowid alias.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, datetime: UTCDateTime}


class PipelineRow(Base):
    __tablename__ = "pipelines"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    freshness_target_minutes: Mapped[float] = mapped_column(Float)
    components: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(40), default="simulator")


class StageMinuteRow(Base):
    """One stage of one pipeline in one minute: its canonical metrics and the health derived from them."""

    __tablename__ = "stage_minutes"
    pipeline_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    cpu_pct: Mapped[float | None] = mapped_column(Float)
    memory_pct: Mapped[float | None] = mapped_column(Float)
    latency_s: Mapped[float | None] = mapped_column(Float)
    throughput_rows_s: Mapped[float | None] = mapped_column(Float)
    error_count: Mapped[float | None] = mapped_column(Float)
    workers: Mapped[float | None] = mapped_column(Float)
    cdc_lag_s: Mapped[float | None] = mapped_column(Float)
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    freshness_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text, default="")
    anomaly_score: Mapped[float | None] = mapped_column(Float)  # [0, 1], higher = more anomalous
    __table_args__ = (Index("ix_stage_minutes_ts", "ts"),)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[str] = mapped_column(String(120))
    stage: Mapped[str] = mapped_column(String(20))
    ts: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(30))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_events_pipeline_ts", "pipeline_id", "ts"), Index("ix_events_ts", "ts"))


class PipelineHealthRow(Base):
    __tablename__ = "pipeline_health"
    pipeline_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(10))
    slo_healthy: Mapped[bool]
    freshness_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)  # NULL: unknown (no reading)
    __table_args__ = (Index("ix_pipeline_health_ts", "ts"),)


class IncidentRow(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[str] = mapped_column(String(120), index=True)
    status: Mapped[str] = mapped_column(String(10), index=True)
    onset_at: Mapped[datetime]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    stage: Mapped[str | None] = mapped_column(String(20))
    error_type: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class ProposalRow(Base):
    __tablename__ = "proposals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    pipeline_id: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str | None] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    origin: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    risk: Mapped[str] = mapped_column(String(10))
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(120))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    policy_rule: Mapped[str | None] = mapped_column(String(120))  # the policy rule that auto-approved it
    updated_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_proposals_pipeline_status", "pipeline_id", "status"),)


class ActionRunRow(Base):
    __tablename__ = "action_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    proposal_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    pipeline_id: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str | None] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    worker: Mapped[str | None] = mapped_column(String(120))
    queued_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    incident_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # how many workers took it (reconciliation adds one)
    lease_expires_at: Mapped[datetime | None]  # the owning worker's hold; past it, another worker reconciles
    lease_epoch: Mapped[int | None] = mapped_column(Integer)  # the pipeline lease's fencing token when taken
    executor: Mapped[str | None] = mapped_column(String(40))
    __table_args__ = (Index("ix_action_runs_pipeline_status", "pipeline_id", "status"),)


class AuditEntryRow(Base):
    __tablename__ = "audit_entries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class QValueRow(Base):
    """The decision agent's learned state: one Q-value per (policy, state, action)."""

    __tablename__ = "q_values"
    policy: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(200), primary_key=True)
    action: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    visits: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class KeyValueRow(Base):
    """Small bookkeeping values, e.g. the telemetry watermark of a source."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class TransitionRow(Base):
    """One learning step of a decision policy: (state, action, reward, next state) and the Q-value it moved."""

    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(String(40))
    ts: Mapped[datetime]  # simulated (or real) time the step ended
    pipeline_id: Mapped[str] = mapped_column(String(120))
    incident_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    reward: Mapped[float] = mapped_column(Float)
    next_state: Mapped[str | None] = mapped_column(String(200))
    done: Mapped[bool]
    minutes: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    q_before: Mapped[float | None] = mapped_column(Float)
    q_after: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))  # "training" or "live"
    __table_args__ = (Index("ix_transitions_policy_id", "policy", "id"),)


class PipelineLeaseRow(Base):
    """Which worker handles a pipeline's actions now. `epoch` grows with every change of hands (a fencing token)."""

    __tablename__ = "pipeline_leases"
    pipeline_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    worker: Mapped[str] = mapped_column(String(120))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    epoch: Mapped[int] = mapped_column(Integer)


class SimCommandRow(Base):
    """The staging twin's inbox: actions sent to the simulated fleet, keyed by the run's idempotency key.

    The twin's host applies each command once and reports its outcome here, the way a cloud API honours a
    client token: sending the same key twice changes nothing.
    """

    __tablename__ = "sim_commands"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    pipeline_id: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str | None] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | running | succeeded | failed | cancelled
    submitted_at: Mapped[datetime]
    submitted_by: Mapped[str] = mapped_column(String(120))
    applied_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    twin_action: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")
