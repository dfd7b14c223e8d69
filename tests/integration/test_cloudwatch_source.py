"""The CloudWatch source against a real moto server over HTTP, through the real boto3 clients (no patching)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from engine.errors import SourceError, StoreError
from engine.model import ActionKind, EventKind, Stage
from engine.service.watch import Watcher
from engine.store import repo
from engine.store.db import Store
from engine.store.tables import ProposalRow
from engine.telemetry.cloudwatch import CloudWatchSource, aws_clients, parse_fleet

from .aws_rig import CREDENTIALS, REGION, client, stopped_cdc_task

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
FRESH = {"namespace": "DataPlatform", "metric": "FreshnessSeconds", "dimensions": {"Pipeline": "orders"},
         "stat": "Maximum"}
GLUE = {"JobName": "orders-etl", "JobRunId": "ALL"}


def _put(cw, namespace: str, name: str, dims: dict[str, str], points: dict[datetime, float]) -> None:
    data = [{"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
             "Timestamp": ts + timedelta(seconds=20), "Value": value} for ts, value in points.items()]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=data[i:i + 500])


def _log(url: str, group: str, lines: dict[datetime, str]) -> None:
    logs = client(url, "logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="run")
    logs.put_log_events(logGroupName=group, logStreamName="run", logEvents=[
        {"timestamp": int((ts + timedelta(seconds=5)).timestamp() * 1000), "message": msg}
        for ts, msg in sorted(lines.items())])


def test_a_pull_reads_metrics_task_states_and_logs_and_a_failed_pull_consumes_nothing(aws):
    fleet = parse_fleet({"pipeline": [{
        "id": "orders", "freshness": FRESH,
        "source": {"dms_task": "orders-cdc", "dms_instance": "orders-ri"},
        "transform": {"glue_job": "orders-etl", "log_group": "/aws-glue/jobs/error"},
        "warehouse": {"redshift_cluster": "dw"}}]})
    minutes = [T0 + timedelta(minutes=i) for i in range(10)]
    cw = client(aws, "cloudwatch")
    task = {"ReplicationInstanceIdentifier": "orders-ri", "ReplicationTaskIdentifier": "orders-cdc"}
    _put(cw, "AWS/DMS", "CDCLatencySource", task, dict.fromkeys(minutes, 5.0))
    _put(cw, "AWS/DMS", "CDCThroughputRowsSource", task, dict.fromkeys(minutes, 100.0))
    _put(cw, "AWS/DMS", "CPUUtilization", {"ReplicationInstanceIdentifier": "orders-ri"}, dict.fromkeys(minutes, 20.0))
    _put(cw, "Glue", "glue.ALL.system.cpuSystemLoad", {**GLUE, "Type": "gauge"}, dict.fromkeys(minutes, 0.3))
    _put(cw, "Glue", "glue.driver.aggregate.recordsRead", {**GLUE, "Type": "count"}, dict.fromkeys(minutes, 6000.0))
    _put(cw, "AWS/Redshift", "CPUUtilization", {"ClusterIdentifier": "dw"}, dict.fromkeys(minutes, 40.0))
    _put(cw, "DataPlatform", "FreshnessSeconds", {"Pipeline": "orders"}, {m: 120.0 for m in minutes if m != minutes[7]})
    _log(aws, "/aws-glue/jobs/error", {minutes[8]: "ERROR GlueJob: AnalysisException: cannot resolve column 'amount'",
                                       minutes[8] + timedelta(seconds=10): "INFO retrying stage 3"})
    stopped_cdc_task(aws)

    # The Glue job itself does not exist (renamed, say): its runs read as none, the rest of the fleet is read.
    # Nothing listens on port 9 here: the pull fails with a clear error and moves nothing on.
    source = CloudWatchSource(fleet, aws_clients(REGION, "http://127.0.0.1:9", max_attempts=1, timeout_s=2),
                              start=T0)
    with pytest.raises(SourceError, match=r"AWS cloudwatch\.get_metric_data failed"):
        source.pull(T0 + timedelta(minutes=12))
    assert source.next_minute == T0

    source.clients = aws_clients(REGION, aws)
    batch = source.pull(T0 + timedelta(minutes=12, seconds=30))  # two minutes' delay: minutes 0–9
    assert (batch.start, batch.end) == (T0, T0 + timedelta(minutes=10))
    got = {(s.stage, s.ts): s.values for s in batch.samples}
    assert len(got) == 30  # three stages × ten minutes
    assert got[Stage.SOURCE, minutes[3]] == {"cdc_lag_s": 5.0, "throughput_rows_s": 100.0, "cpu_pct": 20.0}
    assert got[Stage.TRANSFORM, minutes[3]] == pytest.approx({"cpu_pct": 30.0, "throughput_rows_s": 100.0})
    assert got[Stage.WAREHOUSE, minutes[6]] == {"cpu_pct": 40.0, "freshness_s": 120.0}
    assert got[Stage.WAREHOUSE, minutes[7]]["freshness_s"] == 180.0  # not read: carried from minute 6, aged
    events = {(e.kind, e.stage, e.ts): e for e in batch.events}
    assert set(events) == {(EventKind.TASK_STOPPED, Stage.SOURCE, minutes[9]),
                           (EventKind.LOG, Stage.TRANSFORM, minutes[8])}
    assert "task status: stopped" in events[EventKind.TASK_STOPPED, Stage.SOURCE, minutes[9]].message
    assert events[EventKind.LOG, Stage.TRANSFORM, minutes[8]].level == "error"
    again = source.pull(T0 + timedelta(minutes=12, seconds=59))
    assert (again.start, again.end, again.samples) == (T0 + timedelta(minutes=10), T0 + timedelta(minutes=10), [])


def _watch(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **CREDENTIALS, "SELFHEAL_DATA_DIR": str(tmp / "data"),
           "SELFHEAL_DATABASE_URL": f"sqlite:///{tmp}/selfheal.db"}
    env.pop("AWS_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "engine.cli", "watch", "--fleet", str(tmp / "fleet.toml"),
                           "--endpoint-url", url, *args], capture_output=True, text=True, timeout=120, check=False,
                          env=env)


def test_watch_opens_a_diagnosed_incident_from_cloudwatch_and_resumes_without_reading_a_minute_twice(aws, tmp_path):
    (tmp_path / "fleet.toml").write_text(
        f'region = "{REGION}"\n[[pipeline]]\nid = "orders"\nfreshness_target_minutes = 15\n'
        'freshness = { namespace = "DataPlatform", metric = "FreshnessSeconds", '
        'dimensions = { Pipeline = "orders" } }\n'
        '[pipeline.transform]\nglue_job = "orders-etl"\nlog_group = "/aws-glue/jobs/error"\n')
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = [now - timedelta(minutes=60 - i) for i in range(60)]
    rng = np.random.default_rng(7)
    cw = client(aws, "cloudwatch")
    _put(cw, "Glue", "glue.ALL.system.cpuSystemLoad", {**GLUE, "Type": "gauge"},
         {m: 0.30 + 0.01 * rng.standard_normal() for m in minutes})
    _put(cw, "Glue", "glue.driver.aggregate.recordsRead", {**GLUE, "Type": "count"},
         {m: 6000.0 + 60 * rng.standard_normal() for m in minutes})
    _put(cw, "DataPlatform", "FreshnessSeconds", {"Pipeline": "orders"},
         {m: 120.0 + 5 * rng.standard_normal() for m in minutes})
    drift = minutes[-10:]  # the last ten minutes: every run fails on a renamed column
    _log(aws, "/aws-glue/jobs/error", {m: "ERROR AnalysisException: cannot resolve column 'amount' given input "
                                          "columns [amt, id]" for m in drift})

    first = _watch(tmp_path, aws, "--ticks", "1", "--backfill", "60", "--delay", "0")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "starting at" in first.stderr
    store = Store.open(f"sqlite:///{tmp_path}/selfheal.db")
    with store.read() as conn:
        (incident,) = repo.open_incidents(conn)
        frame = repo.stage_frame(conn, minutes[0], now + timedelta(minutes=5))
    assert (incident.pipeline_id, incident.stage, incident.error_type) == ("orders", Stage.TRANSFORM, "schema_drift")
    assert drift[0] <= incident.onset_at <= incident.opened_at <= drift[1]  # not before: calm minutes were healthy
    assert len(frame) >= 60 and set(frame["stage"]) == {"transform"}

    second = _watch(tmp_path, aws, "--ticks", "1", "--delay", "0")
    assert second.returncode == 0, second.stderr
    assert "resuming after" in second.stderr
    with store.read() as conn:
        frame = repo.stage_frame(conn, minutes[0], now + timedelta(minutes=5))
        assert len(repo.open_incidents(conn)) == 1
    assert not frame.duplicated(["pipeline_id", "stage", "ts"]).any()


def test_watch_names_a_bad_fleet_file_and_exits_2(aws, tmp_path):
    (tmp_path / "fleet.toml").write_text('[[pipeline]]\nid = "orders"\n[pipeline.transform]\nglue_job = "x"\n')
    bad = _watch(tmp_path, aws, "--ticks", "1")
    assert bad.returncode == 2
    assert "pipeline[0]: freshness: a query for end-to-end freshness is required" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_restarted_watch_carries_the_last_freshness_reading_on(aws, tmp_path):
    fleet = parse_fleet({"region": REGION, "pipeline": [{"id": "orders", "freshness": FRESH,
                                                         "transform": {"glue_job": "orders-etl"}}]})
    _put(client(aws, "cloudwatch"), "DataPlatform", "FreshnessSeconds", {"Pipeline": "orders"},
         {T0 + timedelta(minutes=50): 100.0})
    store = Store.open(f"sqlite:///{tmp_path}/watch.db")
    first = Watcher(store, fleet, aws_clients(REGION, aws), now=T0 + timedelta(minutes=60), backfill_minutes=60)
    assert first.tick(T0 + timedelta(minutes=60)).end == T0 + timedelta(minutes=58)
    again = Watcher(store, fleet, aws_clients(REGION, aws), now=T0 + timedelta(minutes=70))  # a restart
    assert again.resumed.from_watermark and again.resumed.start == T0 + timedelta(minutes=58)
    batch = again.source.pull(T0 + timedelta(minutes=70))
    fresh = {s.ts: s.values["freshness_s"] for s in batch.samples}
    assert fresh[T0 + timedelta(minutes=58)] == 100.0 + 8 * 60  # carried from minute 50 across the restart
    assert len(fresh) == 10


def test_minutes_pulled_but_not_stored_are_read_again(aws, tmp_path, monkeypatch):
    fleet = parse_fleet({"region": REGION, "pipeline": [{"id": "orders", "freshness": FRESH,
                                                         "transform": {"glue_job": "orders-etl"}}]})
    _put(client(aws, "cloudwatch"), "DataPlatform", "FreshnessSeconds", {"Pipeline": "orders"},
         {T0 + timedelta(minutes=i): 60.0 for i in range(30)})
    store = Store.open(f"sqlite:///{tmp_path}/watch.db")
    watcher = Watcher(store, fleet, aws_clients(REGION, aws), now=T0 + timedelta(minutes=12), backfill_minutes=12)
    real = repo.insert_pipeline_health

    def disk_full(*_a, **_k):
        raise StoreError("disk full")  # the store fails after the minutes were pulled from AWS

    monkeypatch.setattr(repo, "insert_pipeline_health", disk_full)
    with pytest.raises(StoreError):
        watcher.tick(T0 + timedelta(minutes=12))
    monkeypatch.setattr(repo, "insert_pipeline_health", real)
    done = watcher.tick(T0 + timedelta(minutes=12))
    assert (done.start, done.end) == (T0, T0 + timedelta(minutes=10))  # the same minutes, read again
    with store.read() as conn:
        frame = repo.pipeline_health_frame(conn, T0, T0 + timedelta(minutes=30))
    assert len(frame) == 10 and frame["ts"].is_unique


def test_with_the_runbook_a_watched_incident_gets_a_fix_proposed_for_an_operator(aws, tmp_path):
    fleet = parse_fleet({"region": REGION, "pipeline": [{
        "id": "orders", "freshness": FRESH,
        "transform": {"glue_job": "orders-etl", "log_group": "/aws-glue/jobs/error"}}]})
    minutes = [T0 + timedelta(minutes=i) for i in range(60)]
    rng = np.random.default_rng(3)
    cw = client(aws, "cloudwatch")
    _put(cw, "Glue", "glue.ALL.system.cpuSystemLoad", {**GLUE, "Type": "gauge"},
         {m: 0.30 + 0.01 * rng.standard_normal() for m in minutes})
    _put(cw, "DataPlatform", "FreshnessSeconds", {"Pipeline": "orders"}, dict.fromkeys(minutes, 120.0))
    _log(aws, "/aws-glue/jobs/error", {m: "ERROR AnalysisException: cannot resolve column 'amount'"
                                       for m in minutes[-8:]})
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\nauto = []\n")  # nothing auto-executes: every fix waits for an operator
    store = Store.open(f"sqlite:///{tmp_path}/watch.db")
    watcher = Watcher(store, fleet, aws_clients(REGION, aws), now=T0 + timedelta(minutes=60), backfill_minutes=60,
                      delay_minutes=0, policy="rules", policy_file=policy)
    result = watcher.tick(T0 + timedelta(minutes=60))
    assert [(d.pipeline_id, d.execution.request.action, d.execution.request.stage) for d in result.decisions] == [
        ("orders", ActionKind.REMAP_SCHEMA, Stage.TRANSFORM)]
    with store.read() as conn:
        [row] = conn.execute(select(ProposalRow.__table__)).all()
    assert (row.status, row.origin, row.action, row.stage) == ("pending", "agent", "remap_schema", "transform")


def test_a_pipeline_without_freshness_counts_as_missing_its_slo_and_the_read_succeeds(aws, tmp_path):
    fresh = {**FRESH, "dimensions": {"Pipeline": "payments"}}
    fleet = parse_fleet({"region": REGION, "pipeline": [
        {"id": "orders", "freshness": FRESH, "transform": {"glue_job": "orders-etl"}},  # publishes nothing at all
        {"id": "payments", "freshness": fresh, "transform": {"glue_job": "payments-etl"}}]})
    cw = client(aws, "cloudwatch")
    _put(cw, "DataPlatform", "FreshnessSeconds", {"Pipeline": "payments"},
         {T0 + timedelta(minutes=m): 60.0 for m in range(2, 30, 5)})  # every 5 minutes, not at the window's start
    store = Store.open(f"sqlite:///{tmp_path}/watch.db")
    watcher = Watcher(store, fleet, aws_clients(REGION, aws), now=T0 + timedelta(minutes=30), backfill_minutes=30,
                      delay_minutes=0)
    result = watcher.tick(T0 + timedelta(minutes=30))
    assert result.minutes == 30
    with store.read() as conn:
        health = repo.pipeline_health_frame(conn, T0, T0 + timedelta(minutes=30))
        [incident] = repo.open_incidents(conn)
    orders, payments = (health[health["pipeline_id"] == p] for p in ("orders", "payments"))
    assert len(orders) == 30 and not orders["slo_healthy"].any() and orders["freshness_minutes"].isna().all()
    assert len(payments) == 30 and payments["freshness_minutes"].isna().sum() == 2  # the minutes before a reading
    assert payments["slo_healthy"].sum() == 28
    assert (incident.pipeline_id, incident.opened_at) == ("orders", T0)
    assert incident.evidence["worst_freshness_minutes"] is None


def test_a_busy_glue_job_s_runs_are_read_back_to_the_window_across_pages(aws):
    glue = client(aws, "glue")
    glue.create_job(Name="orders-etl", Role="r", ExecutionProperty={"MaxConcurrentRuns": 1000},
                    Command={"Name": "glueetl", "ScriptLocation": "s3://jobs/orders.py"})
    for _ in range(250):  # more than one page of GetJobRuns (200)
        glue.start_job_run(JobName="orders-etl")
    fleet = parse_fleet({"region": REGION, "pipeline": [{"id": "orders", "freshness": FRESH,
                                                         "transform": {"glue_job": "orders-etl"}}]})
    now = datetime.now(UTC)
    source = CloudWatchSource(fleet, aws_clients(REGION, aws), start=now - timedelta(hours=1))
    assert len(source._glue_runs("orders-etl", now - timedelta(hours=1))) == 250  # every run of the window


def test_a_shared_log_group_is_read_by_each_stage_only_from_its_own_streams(aws):
    logs = client(aws, "logs")
    logs.create_log_group(logGroupName="/aws-glue/jobs/error")
    for stream, text in (("orders-etl-run1", "ERROR cannot resolve column 'amount'"),
                         ("payments-etl-run7", "ERROR Connection reset by peer")):
        logs.create_log_stream(logGroupName="/aws-glue/jobs/error", logStreamName=stream)
        logs.put_log_events(logGroupName="/aws-glue/jobs/error", logStreamName=stream, logEvents=[
            {"timestamp": int((T0 + timedelta(minutes=3)).timestamp() * 1000), "message": text}])
    fleet = parse_fleet({"region": REGION, "pipeline": [
        {"id": p, "freshness": FRESH, "transform": {"glue_job": f"{p}-etl", "log_group": "/aws-glue/jobs/error",
                                                    "log_stream_prefix": f"{p}-etl"}}
        for p in ("orders", "payments")]})
    source = CloudWatchSource(fleet, aws_clients(REGION, aws), start=T0, delay_minutes=0)
    batch = source.pull(T0 + timedelta(minutes=10))
    assert sorted((e.pipeline_id, e.message) for e in batch.events) == [
        ("orders", "ERROR cannot resolve column 'amount'"), ("payments", "ERROR Connection reset by peer")]


def test_stopping_a_long_catch_up_ends_it_between_windows_with_each_window_kept(aws, tmp_path):
    fleet = parse_fleet({"region": REGION, "pipeline": [{"id": "orders", "freshness": FRESH,
                                                         "transform": {"glue_job": "orders-etl"}}]})
    store = Store.open(f"sqlite:///{tmp_path}/watch.db")
    now = T0 + timedelta(days=2)
    watcher = Watcher(store, fleet, aws_clients(REGION, aws), now=now, backfill_minutes=2 * 1440, delay_minutes=0)
    reads = list(watcher.catch_up(now, stop=lambda: True))  # asked to stop as soon as it started
    assert [r.minutes for r in reads] == [360]  # one six-hour window, committed; the rest on the next start
    again = Watcher(store, fleet, aws_clients(REGION, aws), now=now)
    assert again.resumed.start == T0 + timedelta(hours=6)
