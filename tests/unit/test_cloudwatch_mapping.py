"""The CloudWatch source's pure parts: the fleet file, and AWS replies mapped onto samples and events."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.detection.incidents import classify_message
from engine.errors import ConfigError
from engine.model import EventKind, Stage
from engine.telemetry.cloudwatch import load_fleet, mapper, parse_fleet

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
FRESH = {"namespace": "DataPlatform", "metric": "FreshnessSeconds", "dimensions": {"Pipeline": "orders"}}


def _fleet(**stages):
    return parse_fleet({"pipeline": [{"id": "orders", "freshness": FRESH, **stages}]})


def test_the_example_fleet_file_is_valid_and_each_kind_gets_its_standard_metrics():
    fleet = load_fleet(Path(__file__).resolve().parents[2] / "examples" / "cloudwatch-fleet.toml")
    by = {(b.pipeline_id, b.stage): b for b in fleet.stages}
    dms = by["orders", Stage.SOURCE]
    assert {q.metric for q in dms.queries} == {"cdc_lag_s", "throughput_rows_s", "cpu_pct"}
    lag = next(q for q in dms.queries if q.metric == "cdc_lag_s")
    assert (lag.namespace, lag.name, lag.stat) == ("AWS/DMS", "CDCLatencySource", "Maximum")
    assert dict(lag.dimensions) == {"ReplicationInstanceIdentifier": "orders-replication",
                                    "ReplicationTaskIdentifier": "orders-cdc"}
    glue = by["orders", Stage.TRANSFORM]
    cpu = next(q for q in glue.queries if q.metric == "cpu_pct")
    assert (cpu.namespace, cpu.scale) == ("Glue", 100.0)  # Glue reports a load fraction
    assert glue.log_group is None and by["payments", Stage.TRANSFORM].log_group == "/aws/lambda/payments-loader"
    # Freshness is filed with each pipeline's last configured stage, and only there.
    assert [b.stage for b in fleet.stages if any(q.metric == "freshness_s" for q in b.queries)] == [
        Stage.WAREHOUSE, Stage.TRANSFORM]
    assert fleet.specs[0].components[Stage.SOURCE] == "orders-cdc"
    assert fleet.specs[1].freshness_target_minutes == 30


def test_own_metrics_replace_a_kinds_standard_one_by_canonical_name():
    fleet = _fleet(warehouse={"redshift_cluster": "dw", "metrics": [
        {"as": "cpu_pct", "namespace": "Custom", "metric": "HotCpu", "stat": "p90"}]})
    (wh,) = fleet.stages
    cpu = [q for q in wh.queries if q.metric == "cpu_pct"]
    assert [(q.namespace, q.name, q.stat) for q in cpu] == [("Custom", "HotCpu", "p90")]


@pytest.mark.parametrize(("data", "message"), [
    ({"pipeline": [{"id": "orders", "transform": {"glue_job": "etl"}}]}, "pipeline[0]: freshness: a query"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH}]}, "configure at least one stage"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH, "source": {"dms_task": "t"}}]},
     "pipeline[0].source: dms_task needs dms_instance"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH, "transform": {"glue_job": "a", "lambda_function": "b"}}]},
     "one resource per stage, got glue_job and lambda_function"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH, "transform": {"glue_jobs": "a"}}]},
     "pipeline[0].transform.glue_jobs: Extra inputs are not permitted"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH, "transform": {"metrics": [
        {"as": "cpu", "namespace": "N", "metric": "M"}]}}]}, "transform.metrics[0].as: unknown metric 'cpu'"),
    ({"pipeline": [{"id": "orders", "freshness": {**FRESH, "stat": "Mean"}, "transform": {"glue_job": "a"}}]},
     "pipeline[0].freshness.stat: unknown statistic 'Mean'"),
    ({"pipeline": [{"id": "a", "freshness": FRESH, "transform": {"glue_job": "x"}},
                   {"id": "a", "freshness": FRESH, "transform": {"glue_job": "y"}}]}, "pipeline 'a' is listed twice"),
    ({"pipeline": []}, "pipeline: List should have at least 1 item"),
    ({"pipeline": [{"id": "orders", "freshness": FRESH, "transform": {"glue_job": "a", "metrics": [
        {"as": "cpu_pct", "namespace": "N", "metric": "A"}, {"as": "cpu_pct", "namespace": "N", "metric": "B"}]}}]},
     "cpu_pct is read twice"),
])
def test_a_bad_fleet_file_is_refused_naming_the_field(data, message):
    with pytest.raises(ConfigError, match="invalid fleet file") as e:
        parse_fleet(data)
    assert message in str(e.value)


def test_an_unreadable_or_non_toml_fleet_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read fleet file"):
        load_fleet(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[pipeline]\nid = 'x'\n")
    with pytest.raises(ConfigError, match="not TOML"):
        load_fleet(bad)


def test_metric_results_become_scaled_samples_per_stage_and_minute_and_gaps_stay_gaps():
    fleet = _fleet(transform={"glue_job": "etl"})
    queries, keys = mapper.metric_queries(fleet.stages)
    assert len(queries) == len(keys) == 6  # five Glue metrics and freshness
    ids = {keys[q["Id"]][2].metric: q["Id"] for q in queries}
    assert queries[0]["MetricStat"]["Period"] == 60
    minutes = [T0 + timedelta(minutes=i) for i in range(3)]
    results = [
        {"Id": ids["cpu_pct"], "Timestamps": minutes, "Values": [0.25, 0.5, float("nan")]},
        {"Id": ids["throughput_rows_s"], "Timestamps": [minutes[1]], "Values": [600.0]},
        {"Id": ids["freshness_s"], "Timestamps": [T0.replace(tzinfo=None)], "Values": [120.0]},  # naive = UTC
        {"Id": "unknown", "Timestamps": minutes, "Values": [1, 2, 3]},
        {"Id": ids["error_count"], "Timestamps": [T0 - timedelta(minutes=1)], "Values": [9.0]},  # before the window
    ]
    samples = mapper.samples_from(results, keys, T0, T0 + timedelta(minutes=3))
    assert [(s.ts, s.values) for s in samples] == [
        (minutes[0], {"cpu_pct": 25.0, "freshness_s": 120.0}),
        (minutes[1], {"cpu_pct": 50.0, "throughput_rows_s": 10.0}),
    ]  # minute 2 had only a NaN: no sample, and no made-up zeros anywhere


def test_freshness_is_carried_forward_ageing_a_minute_a_minute_then_unknown():
    fleet = _fleet(transform={"glue_job": "etl"})
    carriers = {"orders": Stage.TRANSFORM}
    keys = mapper.metric_queries(fleet.stages)[1]
    fresh = next(i for i, (_p, _s, q) in keys.items() if q.metric == "freshness_s")
    read = mapper.samples_from([{"Id": fresh, "Timestamps": [T0], "Values": [90.0]}], keys, T0,
                               T0 + timedelta(minutes=1))
    last: dict = {}
    out = mapper.carry_freshness(read, last, carriers, T0, T0 + timedelta(minutes=4), horizon_minutes=2)
    assert [(s.ts - T0, s.values.get("freshness_s")) for s in out] == [
        (timedelta(0), 90.0), (timedelta(minutes=1), 150.0), (timedelta(minutes=2), 210.0),
        (timedelta(minutes=3), None)]  # then unknown: an empty sample, so the minute still counts (as a miss)
    assert last == {"orders": (T0, 90.0)}
    later = mapper.carry_freshness([], last, carriers, T0 + timedelta(minutes=4), T0 + timedelta(minutes=5))
    assert later[0].values == {"freshness_s": 90.0 + 4 * 60}  # within the default horizon


def test_task_states_failed_runs_and_log_lines_become_events_the_diagnosis_reads():
    fleet = _fleet(source={"dms_task": "orders-cdc", "dms_instance": "ri"},
                   transform={"glue_job": "etl", "log_group": "/aws-glue/jobs/error"})
    _source, tr = fleet.stages
    (stopped,) = mapper.dms_events([
        {"ReplicationTaskIdentifier": "orders-cdc", "Status": "stopped", "StopReason": "Stop Reason FATAL_ERROR"},
        {"ReplicationTaskIdentifier": "other", "Status": "stopped"},
        {"ReplicationTaskIdentifier": "orders-cdc", "Status": "running"},
    ], fleet.stages, T0)
    assert (stopped.kind, stopped.level, stopped.stage) == (EventKind.TASK_STOPPED, "error", Stage.SOURCE)
    assert classify_message(stopped.message) == "cdc_stopped"
    runs = [{"Id": "jr_1", "JobRunState": "FAILED", "CompletedOn": T0 + timedelta(seconds=30),
             "ErrorMessage": "AnalysisException: cannot resolve column 'amount'"},
            {"Id": "jr_2", "JobRunState": "TIMEOUT", "CompletedOn": T0 + timedelta(minutes=1)},
            {"Id": "jr_0", "JobRunState": "FAILED", "CompletedOn": T0 - timedelta(minutes=5)},
            {"Id": "jr_3", "JobRunState": "RUNNING"}]
    failed, timed_out = mapper.glue_run_events(runs, tr, T0, T0 + timedelta(minutes=2))
    assert (failed.ts, failed.kind, classify_message(failed.message)) == (T0, EventKind.RUN_FAILED, "schema_drift")
    assert classify_message(timed_out.message) == "timeout"
    ms = int(T0.timestamp() * 1000)
    lines = mapper.log_events([{"timestamp": ms + 5_000, "message": "ERROR  Connection reset by peer\n"},
                               {"timestamp": ms + 65_000, "message": "WARN slow shuffle"},
                               {"timestamp": ms + 70_000, "message": "INFO stage 3 done"},
                               {"timestamp": ms + 600_000, "message": "ERROR late"}], tr, T0, T0 + timedelta(minutes=2))
    assert [(e.ts - T0, e.level, e.message) for e in lines] == [
        (timedelta(0), "error", "ERROR Connection reset by peer"),
        (timedelta(minutes=1), "warning", "WARN slow shuffle")]
    assert classify_message(lines[0].message) == "network_failure"
