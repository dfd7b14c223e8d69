"""`CloudWatchSource`: the `TelemetrySource` of real pipelines, read through boto3 (a thin adapter over `mapper`).

Each pull reads the whole minutes since the last one, up to `delay_minutes` before `until` (CloudWatch files
datapoints a minute or two late; a minute is read once, so it is read only once it is complete): metrics with
GetMetricData (500 queries a call, every page), DMS task states, failed Glue job runs and, where a stage names
a log group, the lines its filter pattern matches. A pull that fails raises `SourceError` and moves nothing on:
the next pull reads the same minutes again. botocore's `standard` retry mode retries throttling and transient
errors first.

IAM: `cloudwatch:GetMetricData`, and as configured `dms:DescribeReplicationTasks`, `glue:GetJobRuns`,
`logs:FilterLogEvents`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import ConfigError, SourceError
from engine.model import Event, PipelineSpec, TelemetryBatch, floor_minute
from engine.telemetry.cloudwatch import mapper
from engine.telemetry.cloudwatch.fleet import Fleet

log = logging.getLogger(__name__)
MAX_QUERIES = 500  # GetMetricData's limit per call
MAX_WINDOW = timedelta(hours=6)  # a longer gap is read in several pulls (bounded requests and transactions)
MAX_LOG_LINES = 1000  # per stage and pull: enough to diagnose, bounded when a job floods its log
MAX_GLUE_PAGES = 50  # of 200 runs: a job started every minute, 6 hours back (`MAX_WINDOW`) and more


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The boto3 clients the source reads with."""

    cloudwatch: Any
    dms: Any
    glue: Any
    logs: Any
    redshift: Any


class AwsCallError(SourceError):
    """An AWS call failed; `code` is AWS's error code ("" when the call never got an answer)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def aws_call(clients: AwsClients, service: str, op: str, **kw: Any) -> dict[str, Any]:
    """One AWS call through `clients`; a failure is an `AwsCallError` naming the call and AWS's reason."""
    try:
        return getattr(getattr(clients, service), op)(**kw)
    except ClientError as e:
        info = e.response.get("Error", {})
        code = str(info.get("Code", ""))
        raise AwsCallError(f"AWS {service}.{op} failed: {code or '?'}: {info.get('Message', e)}", code) from e
    except BotoCoreError as e:
        raise AwsCallError(f"AWS {service}.{op} failed: {e}") from e


def aws_clients(region: str | None = None, endpoint_url: str | None = None, *,
                session: boto3.Session | None = None, timeout_s: float = 20.0, max_attempts: int = 5) -> AwsClients:
    """Clients in `region` (else the AWS configuration's), with standard retries and bounded timeouts.

    `endpoint_url` (or the AWS_ENDPOINT_URL environment variable boto3 reads itself) points them elsewhere,
    e.g. a moto server or a VPC endpoint."""
    try:
        session = session or boto3.Session()
        region = region or session.region_name
        if not region:
            raise ConfigError("no AWS region: set `region` in the fleet file, AWS_DEFAULT_REGION or a profile's "
                              "region")
        config = Config(retries={"mode": "standard", "max_attempts": max_attempts}, connect_timeout=timeout_s,
                        read_timeout=timeout_s)

        def client(name: str) -> Any:
            return session.client(name, region_name=region, endpoint_url=endpoint_url, config=config)

        return AwsClients(client("cloudwatch"), client("dms"), client("glue"), client("logs"), client("redshift"))
    except (BotoCoreError, ValueError) as e:  # an unknown profile, a malformed region or endpoint
        raise ConfigError(f"cannot set up the AWS clients: {e}") from e


class CloudWatchSource:
    """Telemetry of the fleet file's pipelines from CloudWatch, DMS, Glue and CloudWatch Logs."""

    name = "cloudwatch"

    def __init__(self, fleet: Fleet, clients: AwsClients, *, start: datetime, delay_minutes: int = 2) -> None:
        if delay_minutes < 0:
            raise ConfigError("delay_minutes must be ≥ 0")
        self.fleet = fleet
        self.clients = clients
        self.delay = timedelta(minutes=delay_minutes)
        self.next_minute = floor_minute(start)  # the first minute not read yet
        self._queries, self._keys = mapper.metric_queries(fleet.stages)
        self._carriers = {b.pipeline_id: b.stage for b in fleet.stages
                          if any(q.metric == "freshness_s" for q in b.queries)}
        self._freshness: dict[str, tuple[datetime, float]] = {}  # pipeline → (minute, seconds) last read
        self._missing: set[str] = set()  # resources found missing (warned about once)

    def pipelines(self) -> list[PipelineSpec]:
        return list(self.fleet.specs)

    def pull(self, until: datetime) -> TelemetryBatch:
        """The complete minutes from `next_minute` to `until` less the delay (at most `MAX_WINDOW`)."""
        start = self.next_minute
        end = min(floor_minute(until) - self.delay, start + MAX_WINDOW)
        if end <= start:
            return TelemetryBatch(start, start, [], [])
        samples = mapper.samples_from(self._metric_results(start, end), self._keys, start, end)
        events = self._events(start, end)
        freshness = dict(self._freshness)  # updated only once the whole pull succeeded
        samples = mapper.carry_freshness(samples, freshness, self._carriers, start, end)
        self._freshness, self.next_minute = freshness, end
        return TelemetryBatch(start, end, samples, events)

    def mark(self) -> tuple[datetime, dict[str, tuple[datetime, float]]]:
        """Where the source stands (the next minute, the freshness readings), for `rewind`."""
        return self.next_minute, dict(self._freshness)

    def rewind(self, mark: tuple[datetime, dict[str, tuple[datetime, float]]]) -> None:
        """Back to `mark`: the minutes pulled since are read again (their batch never reached the store)."""
        self.next_minute, self._freshness = mark[0], dict(mark[1])

    def freshness_state(self) -> dict[str, list[str | float]]:
        """The last freshness reading per pipeline (minute, seconds), to keep across a restart."""
        return {pid: [ts.isoformat(), value] for pid, (ts, value) in self._freshness.items()}

    def restore_freshness(self, state: dict[str, list[str | float]]) -> None:
        """Take the readings `freshness_state` kept (unknown pipelines and malformed entries are ignored)."""
        for pid, entry in state.items():
            if pid in self._carriers and isinstance(entry, list) and len(entry) == 2:
                try:
                    self._freshness[pid] = (datetime.fromisoformat(str(entry[0])), float(entry[1]))
                except ValueError:
                    continue

    def behind(self, now: datetime) -> bool:
        """Whether complete minutes before `now` are still unread (a long gap takes several pulls)."""
        return floor_minute(now) - self.delay > self.next_minute

    # -- reads ----------------------------------------------------------------------------------
    def _metric_results(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for i in range(0, len(self._queries), MAX_QUERIES):
            chunk = self._queries[i:i + MAX_QUERIES]
            token = None
            while True:
                kw: dict[str, Any] = {"MetricDataQueries": chunk, "StartTime": start, "EndTime": end,
                                      "ScanBy": "TimestampAscending"}
                if token:
                    kw["NextToken"] = token
                reply = self._call("cloudwatch", "get_metric_data", **kw)
                results.extend(reply.get("MetricDataResults", ()))
                token = reply.get("NextToken")
                if not token:
                    break
        return results

    def _events(self, start: datetime, end: datetime) -> list[Event]:
        stages = self.fleet.stages
        events: list[Event] = []
        tasks = [b.resource for b in stages if b.kind == "dms_task"]
        if tasks:
            kw: dict[str, Any] = {"Filters": [{"Name": "replication-task-id", "Values": tasks}],
                                  "WithoutSettings": True}
            found: list[dict[str, Any]] = []
            while True:
                reply = self._call("dms", "describe_replication_tasks", **kw)
                found += reply.get("ReplicationTasks", ())
                if not reply.get("Marker"):
                    break
                kw["Marker"] = reply["Marker"]
            events += mapper.dms_events(found, stages, end - timedelta(minutes=1))
        for b in stages:
            if b.kind == "glue_job":
                events += mapper.glue_run_events(self._glue_runs(b.resource, start), b, start, end)
            if b.log_group:
                lines = self._log_lines(b.log_group, b.log_filter, start, end, b.log_stream_prefix)
                events += mapper.log_events(lines, b, start, end)
        return events

    def _glue_runs(self, job: str | None, start: datetime) -> list[dict[str, Any]]:
        """The job's runs, newest first, back to the first one started before `start` (GetJobRuns pages from the
        newest; a run that ended in the window started before it, or in it)."""
        runs: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"JobName": job, "MaxResults": 200}
        for _page in range(MAX_GLUE_PAGES):
            reply = self._call("glue", "get_job_runs", missing="EntityNotFoundException", **kw)
            page = reply.get("JobRuns", ())
            runs += page
            oldest = min((r["StartedOn"] for r in page if r.get("StartedOn")), default=None)
            if not reply.get("NextToken") or (oldest is not None and mapper.utc(oldest) < start):
                return runs
            kw["NextToken"] = reply["NextToken"]
        log.warning("glue job %s: more than %d pages of runs since %s; read the newest ones", job, MAX_GLUE_PAGES,
                    start.isoformat())
        return runs

    def _log_lines(self, group: str, pattern: str, start: datetime, end: datetime,
                   prefix: str | None = None) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"logGroupName": group, "startTime": int(start.timestamp() * 1000),
                              "endTime": int(end.timestamp() * 1000) - 1, "filterPattern": pattern}
        if prefix:
            kw["logStreamNamePrefix"] = prefix
        while len(lines) < MAX_LOG_LINES:
            reply = self._call("logs", "filter_log_events", missing="ResourceNotFoundException", **kw)
            lines += reply.get("events", ())
            if not reply.get("nextToken"):
                break
            kw["nextToken"] = reply["nextToken"]
        if len(lines) >= MAX_LOG_LINES:
            log.warning("log group %s: more than %d matching lines in %s–%s; read the first %d",
                        group, MAX_LOG_LINES, start.isoformat(), end.isoformat(), MAX_LOG_LINES)
        return lines[:MAX_LOG_LINES]

    def _call(self, service: str, op: str, *, missing: str | None = None, **kw: Any) -> dict[str, Any]:
        """One AWS call; a failure becomes a `SourceError` naming the call and AWS's reason.

        `missing`: the error code of a resource that does not exist (a renamed job, a log group not created yet).
        That is logged once and read as nothing, so one stale entry does not blind the watch of the whole fleet."""
        try:
            return aws_call(self.clients, service, op, **kw)
        except AwsCallError as e:
            if missing is None or e.code != missing:
                raise
            what = kw.get("JobName") or kw.get("logGroupName") or "?"
            if what not in self._missing:
                self._missing.add(what)
                log.warning("%s.%s: %s does not exist (%s); reading nothing from it", service, op, what, e)
            return {}
