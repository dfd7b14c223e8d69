"""Diagnosis per fault kind, end to end through the real tick: the incident names the right type and stage."""

import pytest

from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario

CASES = [
    ("schema_drift", "warehouse"),
    ("resource_contention", "orchestrator"),
    ("network_failure", "source"),
    ("timeout", "transform"),
    ("warehouse_overload", "warehouse"),
    ("cdc_stopped", "source"),
]


@pytest.mark.parametrize(("kind", "stage"), CASES)
def test_each_fault_kind_is_detected_quickly_and_diagnosed(kind, stage):
    scenario = parse_scenario({
        "name": f"diag-{kind}", "seed": 21, "duration_minutes": 200,
        "pipelines": [{"id": "orders"}, {"id": "payments"}],
        "faults": [{"pipeline": "orders", "stage": stage, "kind": kind, "at_minute": 120,
                    "duration_minutes": 60, "severity": 0.6}]})
    report = run_scenario(scenario)
    (fault,) = report["faults"]
    assert fault["detected"] and fault["mttd_minutes"] <= 5
    (incident,) = [i for i in report["pipelines"][0]["incidents"] if i["id"] == fault["incident_id"]]
    assert (incident["error_type"], incident["stage"]) == (kind, stage)
    assert report["summary"]["false_incidents"] == 0
    assert report["pipelines"][1]["incidents"] == []  # the neighbour stays quiet
