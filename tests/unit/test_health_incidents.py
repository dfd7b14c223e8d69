"""Health per minute (DESIGN definitions) and the incident lifecycle, on hand-made telemetry."""

from datetime import timedelta

from engine.detection.health import assess, pipeline_health
from engine.detection.incidents import CLOSE_AFTER, classify_message, update_incidents
from engine.model import EPOCH, STAGES, Event, EventKind, Health, IncidentStatus, PipelineSpec, Stage, StageSample
from engine.model import TelemetryBatch as Batch

SPEC = PipelineSpec("orders", 15.0)
NORMAL = {"cpu_pct": 40.0, "memory_pct": 50.0, "latency_s": 10.0, "throughput_rows_s": 900.0, "error_count": 0.0}


def _minute(k, freshness=5.0, **overrides):
    ts = EPOCH + timedelta(minutes=k)
    out = []
    for stage in STAGES:
        values = dict(NORMAL, **overrides.get(stage.value, {}))
        if stage is Stage.WAREHOUSE:
            values["freshness_s"] = freshness * 60
        out.append(StageSample("orders", stage, ts, values))
    return out


def _batch(minutes, events=()):
    samples = [s for m in minutes for s in m]
    return Batch(samples[0].ts, samples[-1].ts + timedelta(minutes=1), samples, list(events))


def test_healthy_minute():
    stages, pipes = assess(_batch([_minute(0)]), [SPEC])
    assert [s.status for s in stages] == [Health.HEALTHY] * 4
    assert pipes[0].slo_healthy and pipes[0].status is Health.HEALTHY


def test_error_event_fails_its_stage_and_breaks_the_slo():
    ev = Event("orders", Stage.TRANSFORM, EPOCH, EventKind.RUN_FAILED, "column `x` cannot be resolved", "error")
    stages, pipes = assess(_batch([_minute(0)], [ev]), [SPEC])
    by = {s.stage: s for s in stages}
    assert by[Stage.TRANSFORM].status is Health.FAILED and "column" in by[Stage.TRANSFORM].reason
    assert by[Stage.SOURCE].status is Health.HEALTHY
    assert pipes[0].status is Health.FAILED and not pipes[0].slo_healthy


def test_metric_limits_degrade_without_breaking_the_slo():
    stages, pipes = assess(_batch([_minute(0, transform={"cpu_pct": 97.0})]), [SPEC])
    t = next(s for s in stages if s.stage is Stage.TRANSFORM)
    assert t.status is Health.DEGRADED and "cpu_pct=97" in t.reason
    assert pipes[0].status is Health.DEGRADED and pipes[0].slo_healthy  # freshness fine, nothing failed


def test_stale_data_is_an_slo_miss_even_when_every_stage_is_green():
    _, pipes = assess(_batch([_minute(0, freshness=16.0)]), [SPEC])
    assert not pipes[0].slo_healthy and pipes[0].status is Health.DEGRADED
    h = pipeline_health("x", EPOCH, {Stage.SOURCE: Health.HEALTHY}, float("nan"), 15.0)
    assert not h.slo_healthy  # unknown freshness earns no SLO credit


def _run(minutes, events=(), open_incidents=()):
    stages, pipes = assess(_batch(minutes, events), [SPEC])
    return update_incidents(list(open_incidents), pipes, stages, list(events))


def test_incident_opens_on_first_bad_minute_and_closes_after_sustained_health():
    bad = [_minute(k, transform={"cpu_pct": 99.0, "memory_pct": 95.0}) for k in range(3, 10)]
    good = [_minute(k) for k in range(10, 10 + CLOSE_AFTER)]
    changed = _run([_minute(k) for k in range(3)] + bad + good)
    assert len(changed) == 1
    inc = changed[0]
    assert inc.onset_at == EPOCH + timedelta(minutes=3) == inc.opened_at
    assert inc.status is IncidentStatus.CLOSED and inc.closed_at == EPOCH + timedelta(minutes=10)
    assert inc.stage is Stage.TRANSFORM and inc.error_type == "resource_contention"


def test_incident_stays_open_across_ticks_and_a_brief_recovery_does_not_close_it():
    first = _run([_minute(k, freshness=20.0) for k in range(5)])
    inc = first[0]
    assert inc.status is IncidentStatus.OPEN and inc.error_type == "unknown"
    inc = inc.__class__(**{**{f: getattr(inc, f) for f in inc.__dataclass_fields__}, "id": 7})
    blip = [_minute(5)] + [_minute(k, freshness=20.0) for k in range(6, 8)]
    again = _run(blip, open_incidents=[inc])
    assert len(again) == 1 and again[0].id == 7 and again[0].status is IncidentStatus.OPEN
    assert again[0].evidence["healthy_since"] is None


def test_root_cause_prefers_failed_then_upstream_and_keeps_log_lines():
    ev = [Event("orders", Stage.SOURCE, EPOCH, EventKind.TASK_STOPPED,
                "Replication task stopped. Last Error: WAL removed", "error")]
    changed = _run([_minute(0, warehouse={"cpu_pct": 95.0})], ev)
    inc = changed[0]
    assert inc.stage is Stage.SOURCE and inc.error_type == "cdc_stopped"
    assert inc.evidence["log_lines"][0]["message"].startswith("Replication task stopped")
    assert set(inc.evidence["stages"]) == {"source", "warehouse"}


def test_message_classifier_on_the_twin_vocabulary():
    assert classify_message("AnalysisException: [UNRESOLVED_COLUMN] customer_id") == "schema_drift"
    assert classify_message("psycopg2.OperationalError: could not connect to server") == "network_failure"
    assert classify_message("Run has made no progress for 4 min") == "timeout"
    assert classify_message("Query cancelled: statement timeout; WLM queue wait exceeded") == "warehouse_overload"
    assert classify_message("java.lang.OutOfMemoryError: GC overhead limit exceeded") == "resource_contention"
    assert classify_message("something odd") == "unknown"


def test_onset_comes_from_when_scores_started_rising():
    minutes = [_minute(k) for k in range(3)] + [_minute(3, transform={"cpu_pct": 99.0})]
    stages, pipes = assess(_batch(minutes), [SPEC])
    early = EPOCH + timedelta(minutes=1)
    (inc,) = update_incidents([], pipes, stages, [], {("orders", EPOCH + timedelta(minutes=3)): early})
    assert inc.onset_at == early and inc.opened_at == EPOCH + timedelta(minutes=3)
    (late,) = update_incidents([], pipes, stages, [], {("orders", EPOCH + timedelta(minutes=3)): EPOCH + timedelta(
        minutes=9)})
    assert late.onset_at == late.opened_at  # an onset never lies after the detection


def test_a_stalled_run_fails_its_stage_from_telemetry_alone_but_a_starved_stage_does_not():
    hung = {"throughput_rows_s": 0.0, "latency_s": 70.0, "cpu_pct": 3.0}  # orchestrator limit: 60 s
    starved = {"throughput_rows_s": 0.0, "latency_s": 9.0, "cpu_pct": 12.0}
    stages, pipes = assess(_batch([_minute(0, orchestrator=hung, transform=starved, warehouse=starved)]), [SPEC])
    by = {s.stage: s for s in stages}
    assert by[Stage.ORCHESTRATOR].status is Health.FAILED
    assert classify_message(by[Stage.ORCHESTRATOR].reason) == "timeout"
    assert by[Stage.TRANSFORM].status is Health.HEALTHY and by[Stage.WAREHOUSE].status is Health.HEALTHY
    assert not pipes[0].slo_healthy
    # Slow but moving rows is not a stall.
    stages, _ = assess(_batch([_minute(0, orchestrator={"latency_s": 70.0})]), [SPEC])
    assert {s.stage: s.status for s in stages}[Stage.ORCHESTRATOR] is Health.DEGRADED


def test_diagnosis_keeps_going_and_names_a_second_fault():
    stopped = Event("orders", Stage.SOURCE, EPOCH, EventKind.TASK_STOPPED, "Replication task stopped", "error")
    inc = _run([_minute(0)], [stopped])[0]
    later = EPOCH + timedelta(minutes=1)
    drift = [Event("orders", Stage.SOURCE, later, EventKind.TASK_STOPPED, "Replication task status: stopped", "error"),
             Event("orders", Stage.WAREHOUSE, later, EventKind.RUN_FAILED,
                   "ERROR: column \"amount\" is of type numeric but expression is of type character varying", "error")]
    inc = _run([_minute(1)], drift, [inc])[0]
    assert inc.error_type == "cdc_stopped"  # the first confident diagnosis stays the incident's
    assert [(d["stage"], d["error_type"]) for d in inc.evidence["diagnoses"]] == [
        ("source", "cdc_stopped"), ("warehouse", "schema_drift")]
    assert inc.evidence["diagnoses"][1]["first_seen"] == later.isoformat()
