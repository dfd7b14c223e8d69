"""Pure mapping between AWS replies and our telemetry: no I/O here (the boto3 adapter is `source.py`).

- `metric_queries`: the GetMetricData queries for a fleet's stages, with the key each query id stands for;
- `samples_from`: GetMetricData results → one `StageSample` per (pipeline, stage, minute) that has data;
- `carry_freshness`: freshness for every minute, carried (and aged) from the last reading for a while;
- `dms_events`, `glue_run_events`, `log_events`: task states, failed job runs and log lines → `Event`s, whose
  messages carry the words the diagnosis reads (`engine.detection.incidents.classify_message`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.model import Event, EventKind, Stage, StageSample, floor_minute
from engine.telemetry.cloudwatch.fleet import MetricQuery, StageBinding

PERIOD_S = 60
QueryKey = tuple[str, Stage, MetricQuery]  # (pipeline, stage, query)
STOPPED_DMS = ("stopped", "failed")
FAILED_GLUE = ("FAILED", "TIMEOUT", "ERROR")
FRESHNESS_HORIZON_MIN = 60
ERROR_WORDS = ("error", "exception", "fatal", "failed", "refused", "timed out")


def metric_queries(stages: Sequence[StageBinding]) -> tuple[list[dict[str, Any]], dict[str, QueryKey]]:
    """GetMetricData `MetricDataQueries` for every query of every stage (ids `m0`, `m1`, …) and what each id is."""
    queries: list[dict[str, Any]] = []
    keys: dict[str, QueryKey] = {}
    for b in stages:
        for q in b.queries:
            qid = f"m{len(queries)}"
            keys[qid] = (b.pipeline_id, b.stage, q)
            queries.append({"Id": qid, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": q.namespace, "MetricName": q.name,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in q.dimensions]},
                "Period": PERIOD_S, "Stat": q.stat}})
    return queries, keys


def samples_from(results: Iterable[Mapping[str, Any]], keys: Mapping[str, QueryKey], start: datetime,
                 end: datetime) -> list[StageSample]:
    """One sample per (pipeline, stage, minute in [start, end)) with at least one value; values scaled to the
    canonical units. A minute a metric has no datapoint for leaves that metric out (never a made-up zero)."""
    rows: dict[tuple[str, Stage, datetime], dict[str, float]] = {}
    for r in results:
        key = keys.get(r.get("Id", ""))
        if key is None:
            continue
        pid, stage, q = key
        for ts, value in zip(r.get("Timestamps", ()), r.get("Values", ()), strict=False):
            minute = floor_minute(utc(ts))
            if start <= minute < end and math.isfinite(value):  # NaN never reaches the analysis as a number
                rows.setdefault((pid, stage, minute), {})[q.metric] = float(value) * q.scale
    order = {s: i for i, s in enumerate(Stage)}
    return [StageSample(pid, stage, ts, values)
            for (pid, stage, ts), values in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][0], order[kv[0][1]]))]


def carry_freshness(samples: list[StageSample], last: dict[str, tuple[datetime, float]],
                    carriers: Mapping[str, Stage], start: datetime, end: datetime, *,
                    horizon_minutes: int = FRESHNESS_HORIZON_MIN) -> list[StageSample]:
    """Every minute of [start, end) gets each pipeline's freshness: read, or carried from the last reading.

    Freshness is published every few minutes at best, and a minute without it would count as an SLO miss. Carried
    forward it grows by 60 s a minute: the newest row is at least that old if nothing arrived since, so the SLO is
    never flattered. Beyond `horizon_minutes` without a reading it is unknown, and a minute without any sample of the
    pipeline still gets an empty one on that stage: a silent pipeline is not a healthy one, so every watched
    pipeline has a health row each minute, an SLO miss while nothing is known. `last` (pipeline → (minute,
    seconds)) is updated; `carriers` names the stage each pipeline files freshness with."""
    have = {(s.pipeline_id, s.ts): s for s in samples if s.stage is carriers.get(s.pipeline_id)}
    heard = {(s.pipeline_id, s.ts) for s in samples}  # minutes with a sample of any stage
    out = list(samples)
    minute = start
    while minute < end:
        for pid, stage in carriers.items():
            s = have.get((pid, minute))
            if s is not None and "freshness_s" in s.values:
                last[pid] = (minute, s.values["freshness_s"])
                continue
            seen = last.get(pid)
            if seen is None or minute - seen[0] > timedelta(minutes=horizon_minutes):
                if (pid, minute) not in heard:
                    out.append(StageSample(pid, stage, minute, {}))
                continue
            value = seen[1] + (minute - seen[0]).total_seconds()
            if s is None:
                out.append(StageSample(pid, stage, minute, {"freshness_s": value}))
            else:
                s.values["freshness_s"] = value
        minute += timedelta(minutes=1)
    order = {s: i for i, s in enumerate(Stage)}
    return sorted(out, key=lambda s: (s.ts, s.pipeline_id, order[s.stage]))


def dms_events(tasks: Iterable[Mapping[str, Any]], stages: Sequence[StageBinding], ts: datetime) -> list[Event]:
    """A stopped or failed replication task, as an error on its stage in minute `ts` (a state, not a moment:
    it is reported each minute it holds)."""
    by_task = {b.resource: b for b in stages if b.kind == "dms_task"}
    out = []
    for t in tasks:
        b = by_task.get(t.get("ReplicationTaskIdentifier"))
        status = str(t.get("Status", "")).lower()
        if b is None or status not in STOPPED_DMS:
            continue
        why = t.get("LastFailureMessage") or t.get("StopReason") or ""
        out.append(Event(b.pipeline_id, b.stage, floor_minute(ts), EventKind.TASK_STOPPED,
                         f"DMS replication task {b.resource} {status} (task status: {status}){': ' if why else ''}"
                         f"{why}"[:500], "error"))
    return out


def glue_run_events(runs: Iterable[Mapping[str, Any]], stage: StageBinding, start: datetime,
                    end: datetime) -> list[Event]:
    """Job runs of `stage`'s Glue job that ended failed, timed out or in error within [start, end)."""
    out = []
    for run in runs:
        state = str(run.get("JobRunState", ""))
        done = run.get("CompletedOn")
        if state not in FAILED_GLUE or done is None:
            continue
        minute = floor_minute(utc(done))
        if start <= minute < end:
            text = run.get("ErrorMessage") or "no error message"
            if state == "TIMEOUT":
                text = f"execution timeout: {text}"
            out.append(Event(stage.pipeline_id, stage.stage, minute, EventKind.RUN_FAILED,
                             f"Glue job {stage.resource} run {run.get('Id', '?')} {state}: {text}"[:500], "error"))
    return out


def log_events(lines: Iterable[Mapping[str, Any]], stage: StageBinding, start: datetime, end: datetime,
               ) -> list[Event]:
    """CloudWatch Logs lines (FilterLogEvents `events`) within [start, end) as log events of `stage`: an error
    when the line says so, a warning when it warns; other lines (the filter pattern let them through) are not
    evidence of anything and are left out."""
    out = []
    prefix = stage.log_stream_prefix or ""
    for line in lines:
        ms = line.get("timestamp")
        if ms is None or not str(line.get("logStreamName", prefix)).startswith(prefix):
            continue  # another job's stream in a shared log group (the filter asked AWS for ours alone)
        minute = floor_minute(datetime.fromtimestamp(ms / 1000, UTC))
        if not start <= minute < end:
            continue
        text = " ".join(str(line.get("message", "")).split())[:500]
        low = text.lower()
        if any(w in low for w in ERROR_WORDS):
            level = "error"
        elif "warn" in low:
            level = "warning"
        else:
            continue
        out.append(Event(stage.pipeline_id, stage.stage, minute, EventKind.LOG, text, level))
    return out


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
