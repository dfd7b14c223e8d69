"""Scenario files: the DESIGN.md format validates, and every mistake names its field."""

import json

import pytest

from engine.errors import ScenarioError
from engine.sim.scenario import load_scenario, parse_scenario

GOOD = {"name": "surge-then-drift", "seed": 7, "duration_minutes": 240,
        "pipelines": [{"id": "orders", "freshness_target_minutes": 15}],
        "faults": [{"pipeline": "orders", "stage": "transform", "kind": "resource_contention",
                    "at_minute": 30, "duration_minutes": 60, "severity": 0.8}]}


def _with(path: str, value):
    data = json.loads(json.dumps(GOOD))
    target, *rest = path.split(".")
    if target == "faults":
        data["faults"][0][rest[0]] = value
    elif target == "pipelines" and rest:
        data["pipelines"][0][rest[0]] = value
    else:
        data[target] = value
    return data


def test_design_example_parses():
    sc = parse_scenario(GOOD)
    assert sc.faults[0].kind == "resource_contention"
    assert sc.pipelines[0].freshness_target_minutes == 15


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("faults.kind", "disk_full", "faults[0].kind: unknown fault kind 'disk_full'"),
    ("faults.stage", "transfrm", "faults[0].stage: unknown stage 'transfrm'"),
    ("faults.pipeline", "billing", "faults[0].pipeline: unknown pipeline 'billing'"),
    ("faults.severity", 1.5, "faults[0].severity"),
    ("faults.severity", 0, "faults[0].severity"),
    ("faults.at_minute", 240, "faults[0].at_minute"),
    ("faults.at_minute", -1, "faults[0].at_minute"),
    ("faults.colour", "red", "faults[0].colour"),
    ("pipelines.freshness_target_minutes", -5, "pipelines[0].freshness_target_minutes"),
    ("pipelines.id", "", "pipelines[0].id"),
    ("duration_minutes", 0, "duration_minutes"),
    ("pipelines", [], "pipelines"),
])
def test_bad_field_is_named(path, value, expected):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(_with(path, value), "s.json")
    assert expected in str(e.value)
    assert str(e.value).startswith("invalid scenario s.json")


def test_duplicate_pipelines_and_missing_name():
    data = dict(GOOD, pipelines=[{"id": "a"}, {"id": "a"}], faults=[])
    with pytest.raises(ScenarioError, match=r"duplicate id\(s\) \['a'\]"):
        parse_scenario(data)
    with pytest.raises(ScenarioError, match="name"):
        parse_scenario({k: v for k, v in GOOD.items() if k != "name"})


def test_files(tmp_path):
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(GOOD))
    assert load_scenario(ok).name == "surge-then-drift"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScenarioError, match="not JSON"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.json")
    top = tmp_path / "list.json"
    top.write_text("[]")
    with pytest.raises(ScenarioError, match="top level must be a JSON object"):
        load_scenario(top)
