"""The digital twin: deterministic, every fault visible in telemetry, and it responds to actions."""

import numpy as np
import pytest

from engine.detection.health import assess
from engine.errors import UnknownActionError, UnknownPipelineError
from engine.model import ActionKind, EventKind, FaultKind, Health, Stage
from engine.sim.actions import MAX_RETRY_ATTEMPTS, RetryPolicy, retry_window_minutes
from engine.sim.faults import play_attempts
from engine.sim.fleet import fleet_pipelines
from engine.sim.scenario import PipelineConfig
from engine.sim.twin import ActionParamError, Twin
from engine.telemetry.simulator import SimulatorSource

PIPES = [PipelineConfig(id=p, freshness_target_minutes=15) for p in ("orders", "payments", "customers")]
FAULT_AT = 30


def _twin(seed=1, **fault):
    twin = Twin(PIPES, seed=seed)
    if fault:
        twin.inject_fault("orders", fault["stage"], fault["kind"], severity=fault.get("severity", 0.8),
                          duration_minutes=fault.get("duration", 60), at_minute=FAULT_AT)
    return twin


def _health(twin, minutes):
    """Pull `minutes` through the simulator source and assess health; returns (stages, pipelines, batch)."""
    source = SimulatorSource(twin)
    batch = source.pull(twin.time_of(twin.minute + minutes))
    stages, pipes = assess(batch, twin.pipelines)
    return stages, pipes, batch


def _freshness(twin, minutes, pipeline=0):
    return np.array([m.metrics["freshness_s"][pipeline, 3] / 60 for m in twin.run_until(twin.minute + minutes)])


def test_same_seed_same_telemetry_and_different_seed_differs():
    a, b, c = _twin(seed=5), _twin(seed=5), _twin(seed=6)
    for ma, mb, mc in zip(a.run_until(200), b.run_until(200), c.run_until(200), strict=True):  # noqa: B007
        for name in ma.metrics:
            np.testing.assert_array_equal(ma.metrics[name], mb.metrics[name])
        assert ma.events == mb.events
    assert not np.allclose(ma.metrics["cpu_pct"], mc.metrics["cpu_pct"])


def test_a_fault_does_not_shift_other_pipelines_noise():
    calm, hurt = _twin(seed=3), _twin(seed=3, stage="transform", kind="network_failure")
    for mc, mh in zip(calm.run_until(120), hurt.run_until(120), strict=True):
        np.testing.assert_array_equal(mc.metrics["cpu_pct"][1:], mh.metrics["cpu_pct"][1:])


def test_no_fault_means_healthy_every_minute_with_daily_seasonality():
    twin = Twin(fleet_pipelines(30, seed=2), seed=2)
    stages, pipes, batch = _health(twin, 1440)
    assert all(p.slo_healthy and p.status is Health.HEALTHY for p in pipes)
    assert all(s.status is Health.HEALTHY for s in stages)
    # Daily seasonality: throughput of a pipeline swings well beyond its noise over a day.
    thr = np.array([s.values["throughput_rows_s"] for s in batch.samples
                    if s.pipeline_id == twin.pipelines[0].id and s.stage is Stage.WAREHOUSE])
    assert thr.max() / thr.min() > 1.6


# Each fault kind: the stage it hits, and what an operator would see there.
SIGNATURES = [
    ("schema_drift", "transform", lambda m, ev: any("column" in e.message for e in ev)),
    ("resource_contention", "transform", lambda m, ev: max(m["cpu_pct"]) >= 90),
    ("network_failure", "warehouse", lambda m, ev: any("connect" in e.message.lower() for e in ev)),
    ("timeout", "transform", lambda m, ev: min(m["throughput_rows_s"]) == 0 and max(m["latency_s"]) > 300),
    ("warehouse_overload", "warehouse", lambda m, ev: max(m["queue_wait_s"]) >= 60),
    ("cdc_stopped", "source", lambda m, ev: max(m["cdc_lag_s"]) > 300
     and any(e.kind is EventKind.TASK_STOPPED for e in ev)),
]


@pytest.mark.parametrize(("kind", "stage", "visible"), SIGNATURES)
def test_each_fault_is_visible_on_its_stage_and_only_there(kind, stage, visible):
    twin = _twin(stage=stage, kind=kind)
    _, before, _ = _health(twin, FAULT_AT)
    assert all(p.slo_healthy for p in before)
    stages, pipes, batch = _health(twin, 10)
    mine = [s for s in batch.samples if s.pipeline_id == "orders" and s.stage.value == stage]
    metrics = {k: [s.values[k] for s in mine] for k in mine[0].values}
    events = [e for e in batch.events if e.pipeline_id == "orders" and e.stage.value == stage]
    assert visible(metrics, events)
    bad = {s.stage.value for s in stages if s.pipeline_id == "orders" and s.status is not Health.HEALTHY}
    assert stage in bad
    assert bad <= {stage}, f"{kind} on {stage} also marked {bad - {stage}}"
    others = [p for p in pipes if p.pipeline_id != "orders"]
    assert all(p.slo_healthy for p in others)


@pytest.mark.parametrize("kind", ["schema_drift", "cdc_stopped", "timeout"])
def test_persistent_damage_stays_until_acted_on(kind):
    stage = "source" if kind == "cdc_stopped" else "transform"
    twin = _twin(stage=stage, kind=kind, duration=20)
    fresh = _freshness(twin, FAULT_AT + 300)
    assert fresh[-1] > fresh[FAULT_AT + 200] > 60  # still growing long after the 20-minute "cause"


@pytest.mark.parametrize("kind", ["network_failure", "resource_contention", "warehouse_overload"])
def test_transient_causes_clear_by_themselves(kind):
    stage = "warehouse" if kind == "warehouse_overload" else "transform"
    twin = _twin(stage=stage, kind=kind, duration=30)
    _, pipes, _ = _health(twin, FAULT_AT + 300)
    ok = [p.slo_healthy for p in pipes if p.pipeline_id == "orders"]
    assert ok[FAULT_AT:FAULT_AT + 30].count(False) >= 5  # it hurt
    assert all(ok[-60:])  # and recovered without help


# The action that fixes each fault kind (a severe surge needs a scale-out to match: the size matters).
FIX = {"schema_drift": ("transform", "remap_schema"), "timeout": ("transform", "restart_task"),
       "cdc_stopped": ("source", "restart_cdc_task"), "network_failure": ("warehouse", "retry_with_backoff"),
       "warehouse_overload": ("warehouse", "scale_warehouse"), "resource_contention": ("transform", "scale_workers")}
PARAMS = {"resource_contention": {"factor": 3}}


def _unhealthy_minutes(kind, seed, action=None):
    """SLO-unhealthy minutes of the faulted pipeline in the 400 minutes after the moment of (not) acting."""
    stage, _ = FIX[kind]
    twin = _twin(seed=seed, stage=stage, kind=kind, duration=120, severity=0.9)
    twin.run_until(FAULT_AT + 5)
    run = twin.apply_action("orders", action, stage=stage, params=PARAMS.get(kind)) if action else None
    _, pipes, _ = _health(twin, 400)
    bad = sum(not p.slo_healthy for p in pipes if p.pipeline_id == "orders")
    return bad, run


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(FIX))
def test_the_right_action_fixes_it_with_high_probability_after_a_delay(kind):
    _, action = FIX[kind]
    wins = 0
    for seed in range(15):
        untreated, _ = _unhealthy_minutes(kind, seed)
        treated, run = _unhealthy_minutes(kind, seed, action)
        assert run.completes > run.started  # a fix takes time to land
        wins += treated < 0.5 * untreated
    assert wins >= 12  # ≥ 80% of seeds: the right action at least halves the damage


def test_a_wrong_action_does_not_fix_and_hard_restarts_make_a_flap_worse():
    twin = _twin(stage="transform", kind="schema_drift")
    twin.run_until(FAULT_AT + 2)
    twin.apply_action("orders", "scale_workers", stage="transform", params={"factor": 2})
    twin.run_until(FAULT_AT + 60)
    assert twin.faults[0].fixed_at is None
    assert twin.scale[0, 2] == 2.0  # it did cost money, though

    twin = _twin(seed=11, stage="warehouse", kind="network_failure", duration=30)
    twin.run_until(FAULT_AT + 2)
    before = twin.faults[0].cause_end
    run = twin.apply_action("orders", "restart_task", stage="warehouse")
    twin.run_until(run.completes + 1)
    assert run.succeeds is False or twin.faults[0].cause_end == before + 10


def test_back_pressure_throttles_ingestion_and_release_restores_it():
    free, throttled = (_twin(stage="transform", kind="resource_contention", duration=200) for _ in range(2))
    free.run_until(FAULT_AT + 5)
    throttled.run_until(FAULT_AT + 5)
    throttled.apply_action("orders", "apply_back_pressure", params={"max_utilisation": 0.5})
    t_free, t_thr = free.run_until(FAULT_AT + 30), throttled.run_until(FAULT_AT + 30)
    admitted = lambda tel: sum(m.metrics["throughput_rows_s"][0, 0] for m in tel)  # noqa: E731
    assert admitted(t_thr) < 0.7 * admitted(t_free)
    assert t_thr[-1].metrics["cdc_lag_s"][0, 0] > 10 * t_free[-1].metrics["cdc_lag_s"][0, 0]  # held at the source
    assert not any("OutOfMemory" in e.message for m in t_thr for e in m.events)
    throttled.apply_action("orders", "apply_back_pressure", params={"release": True})
    assert not np.isfinite(throttled.admit_fraction[0])


def test_action_errors_are_clear():
    twin = _twin()
    with pytest.raises(UnknownActionError, match="unknown action 'reboot_everything'"):
        twin.apply_action("orders", "reboot_everything")
    with pytest.raises(UnknownPipelineError, match="billing"):
        twin.apply_action("billing", "restart_task")
    with pytest.raises(ActionParamError, match=r"workers must be within 1\.\.64"):
        twin.apply_action("orders", ActionKind.SCALE_WORKERS, params={"workers": 500})
    with pytest.raises(ActionParamError, match="unknown parameter"):
        twin.apply_action("orders", "retry_with_backoff", params={"jitter_mode": "x"})
    assert twin.actions == []


def test_retry_window_is_the_sum_of_capped_backoff_delays():
    assert retry_window_minutes({}) == round((30 + 60 + 120 + 240 + 300 + 300) / 60)
    assert retry_window_minutes({"base_s": 60, "factor": 1, "max_attempts": 3}) == 3


def test_the_twin_hides_its_faults_from_telemetry():
    twin = _twin(stage="transform", kind=FaultKind.SCHEMA_DRIFT)
    _, _, batch = _health(twin, FAULT_AT + 5)
    text = " ".join(e.message for e in batch.events)
    assert "schema_drift" not in text and "FaultKind" not in text
    assert all(set(s.values) <= {"cpu_pct", "memory_pct", "latency_s", "throughput_rows_s", "error_count",
                                 "workers", "cdc_lag_s", "queue_wait_s", "freshness_s"} for s in batch.samples)


# -- retry with backoff and jitter, adaptive back pressure (issue 5) -----------------------------------------------
def _network_run(seed, params, *, minutes=120):
    """Network flap on the warehouse; a retry policy (params, or None) lands before the flap starts.
    Returns the minutes of telemetry while the flap lasts."""
    twin = _twin(seed=seed, stage="warehouse", kind="network_failure", duration=minutes, severity=0.9)
    if params is not None:
        run = twin.apply_action("orders", "retry_with_backoff", stage="warehouse", params=params)
        assert run.completes < FAULT_AT and run.succeeds
    twin.run_until(FAULT_AT)
    return twin.run_until(FAULT_AT + minutes)


def _failed_runs(tel):
    return sum(e.kind is EventKind.RUN_FAILED and e.pipeline_id == "orders" for m in tel for e in m.events)


def test_play_attempts_waits_with_full_jitter_under_the_capped_schedule():
    policy = RetryPolicy(base_s=10, factor=2, cap_s=15, max_attempts=4)
    u = np.zeros((3, MAX_RETRY_ATTEMPTS))
    u[1] = 0.999999  # every outage very long: every attempt fails inside it
    u[2] = [0.0, 0.5, 0.25, 1.0] + [0.0] * (MAX_RETRY_ATTEMPTS - 4)
    ok, failed, waited = play_attempts(policy, 1.0, 0.0, 30.0, u)
    # Waits after attempts 0, 1, 2: 0.5 × min(15, 10), 0.25 × min(15, 20), 1.0 × min(15, 40).
    assert (ok, failed) == (False, 4)
    assert waited == pytest.approx(5.0 + 3.75 + 15.0)
    # An outage that is over when the second attempt comes back: that attempt meets a fresh link and succeeds.
    u[1] = 0.0
    assert play_attempts(policy, 1.0, 0.0, 30.0, u) == (True, 1, 5.0)
    # No policy: one attempt only.
    assert play_attempts(None, 1.0, 0.0, 30.0, u) == (False, 1, 0.0)


def test_a_sane_retry_policy_absorbs_a_flap_that_a_tight_one_does_not():
    counts = {name: [_failed_runs(_network_run(seed, params)) for seed in range(8)]
              for name, params in (("none", None), ("tight", {"base_s": 1, "cap_s": 1}), ("sane", {}))}
    none, tight, sane = (sum(counts[k]) for k in ("none", "tight", "sane"))
    assert sane < 0.1 * tight  # the default schedule (30 s base, ×2, 300 s cap, 6 attempts) waits past outages
    assert 0.5 * none < tight < none  # back-to-back retries land in the same outage: little protection
    assert all(s <= t for s, t in zip(counts["sane"], counts["tight"], strict=True))


def _absorbed_waits(tel):
    return [float(e.message.split("waited ")[1].split(" s")[0]) for m in tel for e in m.events
            if e.pipeline_id == "orders" and "failed connection attempts" in e.message]


def test_jitter_is_deterministic_per_seed_and_changes_with_the_seed():
    a, b, c = (_absorbed_waits(_network_run(seed, {}, minutes=60)) for seed in (3, 3, 4))
    assert a == b and len(a) >= 10
    assert a != c
    # Full jitter: a wait after the first failure is anywhere in [0, 30 s), not always the same 30 s.
    assert min(a) < 30 and len(set(a)) == len(a)


def test_waiting_between_attempts_slows_the_stage_in_proportion():
    def latency(params):
        tel = _network_run(5, params, minutes=60)
        return np.mean([m.metrics["latency_s"][0, 3] for m in tel])

    calm = np.mean([m.metrics["latency_s"][0, 3] for m in _twin(seed=5).run_until(FAULT_AT + 60)[FAULT_AT:]])
    sane, slow = latency({}), latency({"base_s": 240, "factor": 1, "cap_s": 240})
    assert calm < sane < slow
    assert slow > 3 * sane  # 240-second waits after every failure cost far more than 15-second ones


def test_a_retry_action_that_fails_attaches_no_policy():
    twin = _twin(seed=2)
    run = twin.apply_action("orders", "retry_with_backoff", stage="warehouse")
    run.succeeds = False
    twin.run_until(run.completes + 1)
    assert twin.retry == {}


def test_adaptive_back_pressure_holds_while_the_surge_lasts_then_steps_up_and_releases_itself():
    surge = dict(stage="transform", kind="resource_contention", duration=40)
    free, throttled = _twin(**surge), _twin(**surge)
    free.run_until(FAULT_AT + 5)
    throttled.run_until(FAULT_AT + 5)
    throttled.apply_action("orders", "apply_back_pressure", params={"max_utilisation": 0.8})
    t_free, t_thr = free.run_until(FAULT_AT + 40), throttled.run_until(FAULT_AT + 40)
    source = lambda tel: np.array([m.metrics["throughput_rows_s"][0, 0] for m in tel])  # noqa: E731
    assert source(t_thr).sum() < 0.7 * source(t_free).sum()  # throttled while the surge lasts
    assert np.isfinite(throttled.admit_fraction[0])
    # The surge ends at FAULT_AT + 40: the held rows drain, the throttle loosens in steps and lets go.
    after_free, after_thr = free.run_until(FAULT_AT + 120), throttled.run_until(FAULT_AT + 120)
    events = [e for m in after_thr for e in m.events if e.pipeline_id == "orders"]
    released = [e for e in events if e.message.startswith("back pressure released")]
    assert len(released) == 1 and not np.isfinite(throttled.admit_fraction[0])
    at = next(k for k, m in enumerate(after_thr) if released[0] in m.events)
    assert source(after_thr)[:at].sum() > source(after_free)[:at].sum()  # draining what it held back
    # Once released and drained, the pipeline runs exactly as if it had never been throttled.
    np.testing.assert_allclose(source(after_thr)[-20:], source(after_free)[-20:])


def test_back_pressure_tightens_to_its_floor_while_rows_pile_up_downstream():
    twin = _twin(stage="transform", kind="timeout")  # the transform stops: rows queue behind it
    twin.run_until(FAULT_AT + 3)
    twin.apply_action("orders", "apply_back_pressure", params={"max_utilisation": 0.9, "min_utilisation": 0.4})
    tel = twin.run_until(FAULT_AT + 30)
    tightened = [e for m in tel for e in m.events if e.message.startswith("back pressure tightened")]
    assert len(tightened) == 5  # 0.9 → 0.4 in steps of 0.1
    assert twin.admit_fraction[0] == pytest.approx(0.4)
    with pytest.raises(ActionParamError, match="min_utilisation"):
        twin.apply_action("orders", "apply_back_pressure", params={"max_utilisation": 0.5, "min_utilisation": 0.6})
    with pytest.raises(ActionParamError, match="unknown parameter"):
        twin.apply_action("orders", "apply_back_pressure", params={"rate": 3})
