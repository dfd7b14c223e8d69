"""Tool arguments as pydantic models: they validate whatever a model or the analyst passes, and give the
OpenAI tool JSON schemas. Nothing from these values is ever spliced into SQL; repositories take them as
bound parameters after validation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from engine.assistant.actions import ActionParams
from engine.assistant.window import check_phrase
from engine.model import ActionKind, Stage

PipelineName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120,
                                                pattern=r"^[A-Za-z0-9_.\- ]+$")]
WindowPhrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
                         AfterValidator(check_phrase)]
MetricName = Literal["cpu_pct", "memory_pct", "latency_s", "throughput_rows_s", "error_count", "workers",
                     "cdc_lag_s", "queue_wait_s", "freshness_s"]
Aggregation = Literal["avg", "max", "min", "p50", "p90", "p95", "p99", "last", "sum"]

_PIPELINE_HELP = ("pipeline id (e.g. 'orders') or a component name (e.g. 'glue-orders-transform', 'dag_orders', "
                  "'dms-orders-cdc', 'redshift-orders')")
_WINDOW_HELP = ("time window counted back from the newest telemetry: 'last 2 hours', 'last 30 minutes', 'today', "
                "'yesterday', 'all', or an ISO interval 'START/END'")


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class MetricArgs(ToolArgs):
    """A metric of one component over a window, aggregated; without a pipeline, every pipeline ranked."""

    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP + "; omit to rank the whole fleet")
    stage: Stage | None = Field(None, description="stage; omit when a component name was given")
    metric: MetricName = Field(description="canonical metric name")
    aggregation: Aggregation = Field("avg", description="how to aggregate the per-minute values")
    window: WindowPhrase = Field("last 1 hour", description=_WINDOW_HELP)


class ErrorArgs(ToolArgs):
    """Error counts per component (error events and the error_count metric) over a window."""

    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP + "; omit for the whole fleet")
    stage: Stage | None = None
    window: WindowPhrase = Field("last 24 hours", description=_WINDOW_HELP)


class AnomalyArgs(ToolArgs):
    """Incidents and anomalous minutes (anomaly score at or above min_score) in a window."""

    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP + "; omit for the whole fleet")
    window: WindowPhrase = Field("last 24 hours", description=_WINDOW_HELP)
    min_score: float = Field(0.8, ge=0.0, le=1.0, description="anomaly score threshold in [0, 1]")
    only_open: bool = Field(False, description="only incidents still open at the newest minute")


class ExplainArgs(ToolArgs):
    """Root cause and evidence of one incident: by id, or the latest one of a pipeline in the window."""

    incident_id: int | None = Field(None, ge=1, le=10**12)
    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP)
    window: WindowPhrase = Field("last 24 hours", description=_WINDOW_HELP)


class SearchArgs(ToolArgs):
    """Search log lines and runbooks by meaning."""

    query: str = Field(min_length=2, max_length=300, description="what to look for, in plain words")
    source: Literal["all", "logs", "runbooks"] = "all"
    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP + "; logs only")
    window: WindowPhrase = Field("last 24 hours", description="window for log lines; " + _WINDOW_HELP)
    limit: int = Field(5, ge=1, le=20)


class StatusArgs(ToolArgs):
    """Health right now (newest minute): one pipeline's stages, or the whole fleet."""

    pipeline: PipelineName | None = Field(None, description=_PIPELINE_HELP + "; omit for the whole fleet")


class ProposeArgs(ToolArgs):
    """Queue a recovery action for a human to approve. It is never executed by the assistant."""

    action: ActionKind
    pipeline: PipelineName = Field(description=_PIPELINE_HELP)
    stage: Stage | None = Field(None, description="stage to act on; default depends on the action")
    params: ActionParams = Field(default_factory=ActionParams)
    reason: str = Field("", max_length=500, description="why, in one sentence")
    incident_id: int | None = Field(None, ge=1, le=10**12)
    confidence: float = Field(0.5, ge=0.0, le=1.0)
