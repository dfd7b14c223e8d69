"""The fleet file of the CloudWatch source: which AWS resources make up each pipeline, and what to read of them.

A TOML file (`selfheal watch --fleet FILE`; an annotated example is `examples/cloudwatch-fleet.toml`). Each stage
names its resource by kind (`dms_task`, `glue_job`, `lambda_function`, `redshift_cluster`) and gets that kind's
standard metrics (`DEFAULTS`); `metrics` adds or replaces any canonical metric with a CloudWatch query of your own
(custom metrics, MWAA, Snowflake exporters...). Every pipeline needs a `freshness` query: end-to-end freshness is
what its SLO is judged on, and no AWS service publishes it for a whole pipeline.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError, field_errors
from engine.model import METRICS, PipelineSpec, Stage
from engine.textfile import read_text

STATS = ("Average", "Sum", "Maximum", "Minimum", "SampleCount")


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One canonical metric of one stage, read as a one-minute CloudWatch statistic times `scale`."""

    metric: str  # a name in `engine.model.METRICS`
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str = "Average"
    scale: float = 1.0


def _q(metric: str, namespace: str, name: str, dims: dict[str, str], stat: str = "Average", *,
       scale: float = 1.0) -> MetricQuery:
    return MetricQuery(metric, namespace, name, tuple(dims.items()), stat, scale)


def _dms(stage: StageConfig) -> list[MetricQuery]:
    task = {"ReplicationInstanceIdentifier": stage.dms_instance or "",
            "ReplicationTaskIdentifier": stage.dms_task or ""}
    instance = {"ReplicationInstanceIdentifier": stage.dms_instance or ""}
    return [_q("cdc_lag_s", "AWS/DMS", "CDCLatencySource", task, "Maximum"),
            _q("throughput_rows_s", "AWS/DMS", "CDCThroughputRowsSource", task),
            _q("cpu_pct", "AWS/DMS", "CPUUtilization", instance)]


def _glue(stage: StageConfig) -> list[MetricQuery]:
    # Glue job metrics (job metrics enabled): namespace "Glue", aggregated over the job's runs (JobRunId=ALL).
    gauge = {"JobName": stage.glue_job or "", "JobRunId": "ALL", "Type": "gauge"}
    count = {"JobName": stage.glue_job or "", "JobRunId": "ALL", "Type": "count"}
    return [_q("cpu_pct", "Glue", "glue.ALL.system.cpuSystemLoad", gauge, scale=100.0),
            _q("memory_pct", "Glue", "glue.ALL.jvm.heap.usage", gauge, scale=100.0),
            _q("error_count", "Glue", "glue.driver.aggregate.numFailedTasks", count, "Sum"),
            _q("throughput_rows_s", "Glue", "glue.driver.aggregate.recordsRead", count, "Sum", scale=1 / 60),
            _q("workers", "Glue", "glue.driver.ExecutorAllocationManager.executors.numberAllExecutors", gauge)]


def _lambda(stage: StageConfig) -> list[MetricQuery]:
    fn = {"FunctionName": stage.lambda_function or ""}
    return [_q("latency_s", "AWS/Lambda", "Duration", fn, scale=0.001),
            _q("error_count", "AWS/Lambda", "Errors", fn, "Sum"),
            _q("throughput_rows_s", "AWS/Lambda", "Invocations", fn, "Sum", scale=1 / 60),
            _q("workers", "AWS/Lambda", "ConcurrentExecutions", fn, "Maximum")]


def _redshift(stage: StageConfig) -> list[MetricQuery]:
    cluster = {"ClusterIdentifier": stage.redshift_cluster or ""}
    return [_q("cpu_pct", "AWS/Redshift", "CPUUtilization", cluster)]


# The standard metrics of each resource kind, mapped onto the canonical ones (`engine.model.METRICS`). Left out on
# purpose: run durations that are a batch job's whole elapsed time (Glue's elapsedTime, DMS's CDCLatencyTarget) are
# not the per-batch latency the static limits hold stages to; name them under `metrics` with your own reading.
DEFAULTS = {"dms_task": _dms, "glue_job": _glue, "lambda_function": _lambda, "redshift_cluster": _redshift}
KINDS = tuple(DEFAULTS)


class ReadConfig(BaseModel):
    """A CloudWatch metric and the one-minute statistic to read of it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str = Field(min_length=1, max_length=255)
    metric: str = Field(min_length=1, max_length=255)
    dimensions: dict[str, str] = Field(default_factory=dict, max_length=30)
    stat: str = "Average"
    scale: float = Field(default=1.0, gt=0, description="multiplier to the canonical unit (ms -> s: 0.001)")

    @field_validator("stat")
    @classmethod
    def _stat(cls, v: str) -> str:
        if v not in STATS and not (v.startswith("p") and v[1:].replace(".", "", 1).isdigit()):
            raise ValueError(f"unknown statistic {v!r}; one of {', '.join(STATS)} or a percentile like p90")
        return v

    def query(self, metric: str) -> MetricQuery:
        return MetricQuery(metric, self.namespace, self.metric, tuple(sorted(self.dimensions.items())),
                           self.stat, self.scale)


class QueryConfig(ReadConfig):
    """A CloudWatch metric read as one canonical metric (`as`)."""

    as_: str = Field(alias="as")

    @field_validator("as_")
    @classmethod
    def _canonical(cls, v: str) -> str:
        if v not in METRICS or v == "freshness_s":
            raise ValueError(f"unknown metric {v!r}; one of {', '.join(m for m in METRICS if m != 'freshness_s')} "
                             "(freshness is the pipeline's own `freshness` key)")
        return v


class StageConfig(BaseModel):
    """One stage of a pipeline: its AWS resource (at most one kind), optional log group and extra metrics."""

    model_config = ConfigDict(extra="forbid")

    dms_task: str | None = Field(default=None, min_length=1)
    dms_instance: str | None = Field(default=None, min_length=1)
    glue_job: str | None = Field(default=None, min_length=1)
    lambda_function: str | None = Field(default=None, min_length=1)
    redshift_cluster: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1, description="component name shown in the console")
    log_group: str | None = Field(default=None, min_length=1)
    log_stream_prefix: str | None = Field(default=None, min_length=1, description="only the group's streams "
                                          "named so (a log group several jobs share)")
    log_filter: str = Field(default="?ERROR ?Error ?error ?Exception ?FATAL ?WARN",
                            description="CloudWatch Logs filter pattern of the lines worth reading")
    metrics: list[QueryConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind(self) -> StageConfig:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"one resource per stage, got {' and '.join(kinds)}")
        if self.dms_task is not None and self.dms_instance is None:
            raise ValueError("dms_task needs dms_instance (the replication instance its metrics are filed under)")
        if not kinds and not self.metrics:
            raise ValueError(f"name a resource ({', '.join(KINDS)}) or list metrics")
        named = [q.as_ for q in self.metrics]
        if twice := sorted({m for m in named if named.count(m) > 1}):
            raise ValueError(f"metrics: {', '.join(twice)} is read twice; keep one query per metric")
        return self

    @property
    def kind(self) -> str | None:
        return next((k for k in KINDS if getattr(self, k) is not None), None)

    @property
    def resource(self) -> str | None:
        kind = self.kind
        return getattr(self, kind) if kind else None

    def queries(self) -> tuple[MetricQuery, ...]:
        """The kind's standard metrics, with `metrics` added or replacing them by canonical name."""
        own = {q.as_: q.query(q.as_) for q in self.metrics}
        base = [q for q in (DEFAULTS[self.kind](self) if self.kind else []) if q.metric not in own]
        return (*base, *own.values())


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.\-]+$")
    freshness_target_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    freshness: ReadConfig | None = None
    source: StageConfig | None = None
    orchestrator: StageConfig | None = None
    transform: StageConfig | None = None
    warehouse: StageConfig | None = None

    @model_validator(mode="after")
    def _complete(self) -> PipelineConfig:
        if self.freshness is None:
            raise ValueError("freshness: a query for end-to-end freshness is required (the SLO is judged on it)")
        if not self.stages():
            raise ValueError("configure at least one stage (source, orchestrator, transform, warehouse)")
        return self

    def stages(self) -> dict[Stage, StageConfig]:
        return {s: c for s in Stage if (c := getattr(self, s.value)) is not None}


class FleetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(default=None, min_length=1)
    pipeline: list[PipelineConfig] = Field(min_length=1, max_length=5000)

    @model_validator(mode="after")
    def _unique(self) -> FleetConfig:
        seen: set[str] = set()
        for p in self.pipeline:
            if p.id in seen:
                raise ValueError(f"pipeline {p.id!r} is listed twice")
            seen.add(p.id)
        return self


@dataclass(frozen=True, slots=True)
class StageBinding:
    """What the source reads for one stage of one pipeline."""

    pipeline_id: str
    stage: Stage
    kind: str | None
    resource: str | None
    queries: tuple[MetricQuery, ...]
    log_group: str | None
    log_filter: str
    log_stream_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Fleet:
    """A validated fleet file: the pipelines and, per stage, what to read."""

    region: str | None
    specs: tuple[PipelineSpec, ...]
    stages: tuple[StageBinding, ...]


def parse_fleet(data: Any, source: str = "<data>") -> Fleet:
    """Validate parsed fleet data; raises ConfigError naming the bad field (e.g. `pipeline[0].source.dms_task`)."""
    try:
        cfg = FleetConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid fleet file {source}: {field_errors(e)}") from e
    specs, stages = [], []
    for p in cfg.pipeline:
        bound = p.stages()
        specs.append(PipelineSpec(p.id, p.freshness_target_minutes,
                                  {s: c.name or c.resource or f"{p.id}-{s.value}" for s, c in bound.items()}))
        last = max(bound, key=list(Stage).index)  # freshness is filed with the pipeline's last stage
        for stage, c in bound.items():
            queries = c.queries()
            if stage is last:
                assert p.freshness is not None
                queries = (*queries, p.freshness.query("freshness_s"))
            stages.append(StageBinding(p.id, stage, c.kind, c.resource, queries, c.log_group, c.log_filter,
                                       c.log_stream_prefix))
    return Fleet(cfg.region, tuple(specs), tuple(stages))


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet TOML file."""
    p = Path(path)
    text = read_text(p, "fleet file", ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid fleet file {p}: not TOML ({e})") from e
    return parse_fleet(data, str(p))
