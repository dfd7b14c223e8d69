"""`selfheal simulate`: SLO 1.0 without faults; an untreated surge shows in SLO, MTTD and MTTR; deterministic."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from engine.errors import SelfhealError
from engine.model import EPOCH
from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario
from engine.store import repo
from engine.store.db import Store

CALM = {"name": "calm", "seed": 11, "duration_minutes": 1440,
        "pipelines": [{"id": "orders"}, {"id": "payments", "freshness_target_minutes": 30}]}
SURGE = {"name": "surge", "seed": 7, "duration_minutes": 240,
         "pipelines": [{"id": "orders", "freshness_target_minutes": 15}, {"id": "payments"}],
         "faults": [{"pipeline": "orders", "stage": "transform", "kind": "resource_contention",
                     "at_minute": 30, "duration_minutes": 60, "severity": 0.8}]}


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False)


def test_no_faults_means_full_slo_and_no_incidents():
    report = run_scenario(parse_scenario(CALM))
    assert report["summary"]["slo_attainment"] == 1.0
    assert all(p["slo_attainment"] == 1.0 and p["incidents"] == [] for p in report["pipelines"])


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_an_untreated_surge_costs_slo_and_its_timing_matches_the_scenario(seed, tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    report = run_scenario(parse_scenario(dict(SURGE, seed=seed)), store_url=url)
    orders, payments = report["pipelines"]
    assert orders["slo_attainment"] < 1.0 and payments["slo_attainment"] == 1.0
    (fault,) = report["faults"]
    (incident,) = orders["incidents"]
    assert fault["detected"] and fault["recovered"] and incident["matched_fault"]
    assert 0 <= fault["mttd_minutes"] <= 5
    assert incident["onset_minute"] >= 30 and incident["opened_minute"] == 30 + fault["mttd_minutes"]
    # The cause lasts 60 minutes and nobody acts: recovery comes after it passes (plus draining the backlog).
    assert 60 <= fault["mttr_minutes"] <= fault["close_minutes"] <= 60 + 90
    assert incident["closed_minute"] == 30 + fault["close_minutes"]
    unhealthy = orders["minutes"] - orders["healthy_minutes"]
    assert unhealthy <= fault["mttr_minutes"]  # no unhealthy minute outside the incident
    # MTTR is DESIGN's "onset → healthy again": unhealthy in the minute before, healthy from then until it closed.
    store = Store.open(url)
    with store.read() as conn:
        frame = repo.pipeline_health_frame(conn, EPOCH, EPOCH + timedelta(minutes=240))
    store.dispose()
    healthy = frame[frame["pipeline_id"] == "orders"]["slo_healthy"].tolist()
    back = 30 + fault["mttr_minutes"]
    assert not healthy[back - 1] and all(healthy[back:incident["closed_minute"]])


def test_cli_same_seed_gives_identical_json_and_a_readable_table(tmp_path):
    scenario = tmp_path / "surge.json"
    scenario.write_text(json.dumps(SURGE))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    first = _cli("simulate", "--scenario", str(scenario), "--json", str(a))
    second = _cli("simulate", "--scenario", str(scenario), "--json", str(b))
    assert first.returncode == second.returncode == 0, first.stderr
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["summary"]["faults"] == 1
    assert "orders" in first.stdout and "MTTR" in first.stdout


def test_cli_rejects_a_bad_scenario_with_the_field_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(SURGE, faults=[dict(SURGE["faults"][0], stage="transfrm")])))
    result = _cli("simulate", "--scenario", str(bad))
    assert result.returncode == 2
    assert "faults[0].stage: unknown stage 'transfrm'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_policy_and_non_empty_store_are_refused(tmp_path):
    with pytest.raises(SelfhealError, match="unknown policy 'magic'"):
        run_scenario(parse_scenario(SURGE), policy="magic")
    url = f"sqlite:///{tmp_path}/run.db"
    run_scenario(parse_scenario(dict(CALM, duration_minutes=30)), store_url=url)
    with pytest.raises(SelfhealError, match="needs an empty store"):
        run_scenario(parse_scenario(dict(CALM, duration_minutes=30)), store_url=url)
