"""Bad input on the command line: one clear line and exit status 2 (1 for `policy check`'s verdict), never a
traceback, and nothing done before the input was checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ActionParamsError
from engine.execution.params import check_params
from engine.model import ActionKind

ROOT = Path(__file__).resolve().parents[2]
SURGE = ROOT / "examples" / "surge.json"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def files(tmp_path: Path, isolated_env: Path) -> Path:
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    (tmp_path / "latin1.toml").write_bytes(b"\xff\xfeversion = 1\n")
    scenario = json.loads(SURGE.read_text())
    (tmp_path / "negative-seed.json").write_text(json.dumps({**scenario, "seed": -1}))
    bad = {**scenario, "faults": [{**scenario["faults"][0], "severity": float("nan")}]}
    (tmp_path / "nan-severity.json").write_text(json.dumps(bad))
    (tmp_path / "mixed-tz.csv").write_text("timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00+05:00,2\n")
    (tmp_path / "not-a-db.db").write_text("garbage")
    fleet = ('[[pipeline]]\nid = "orders"\nfreshness = {{ namespace = "N", metric = "F" }}\n'
             '[pipeline.transform]\nglue_job = "etl"\n')
    (tmp_path / "fleet.toml").write_text('region = "eu-west-1"\n' + fleet.replace("{{", "{").replace("}}", "}"))
    (tmp_path / "bad-region.toml").write_text('region = "eu west 1"\n' + fleet.replace("{{", "{").replace("}}", "}"))
    return tmp_path


@pytest.mark.parametrize(("args", "code", "says"), [
    (["simulate", "--scenario", "{d}/latin1.json"], 2, "not UTF-8 text"),
    (["simulate", "--scenario", "{d}/negative-seed.json", "--json", "{d}/report.json"], 2,
     "seed: Input should be greater than or equal to 0"),
    (["simulate", "--scenario", str(SURGE), "--json", "/proc/selfheal/out.json"], 2, "cannot write /proc/selfheal"),
    (["policy", "check", "{d}/latin1.toml"], 1, "not UTF-8 text"),
    (["detect", "--input", "{d}/mixed-tz.csv", "--output", "{d}/out.csv"], 2, "same UTC offset"),
    (["train", "--episodes", "0"], 2, "Invalid value for '--episodes'"),
    (["train", "--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["bench", "scenarios", "--out", "{d}/sets", "--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["bench", "scenarios", "--out", "{d}/sets", "--count", "0"], 2, "Invalid value for '--count'"),
    (["bench", "scenarios", "--out", "/proc/selfheal/sets"], 2, "cannot write scenarios into /proc/selfheal/sets"),
    (["proposals", "approve", "99999999999999999999999", "--user", "olga"], 2, "Invalid value for 'proposal_id'"),
    (["proposals", "list", "--status", "bogus"], 2, "unknown status 'bogus'"),
    (["proposals", "list", "--limit", "-1"], 2, "Invalid value for '--limit'"),
    (["worker", "--lease-seconds", "nan"], 2, "--lease-seconds must be a positive number of seconds"),
    (["worker", "--interval", "inf"], 2, "--interval must be a positive number of seconds"),
    (["worker", "--steps", "-3"], 2, "Invalid value for '--steps'"),
    (["console", "--port", "99999"], 2, "Invalid value for '--port'"),
    (["simulate", "--scenario", "{d}/nan-severity.json"], 2, "faults[0].severity: Input should be a finite number"),
    (["agent", "--policy", "oracle", "--ticks", "1"], 2, "unknown live policy 'oracle'"),
    (["worker", "--executor", "aws", "--steps", "1"], 2, "--executor aws needs --fleet FILE"),
    (["watch", "--fleet", "{d}/bad-region.toml", "--ticks", "1"], 2, "cannot set up the AWS clients"),
    (["watch", "--fleet", "{d}/fleet.toml", "--ticks", "1", "--endpoint-url", "127.0.0.1:5123"], 2,
     "cannot set up the AWS clients"),
    (["worker", "--executor", "gcp", "--steps", "1"], 2, "unknown executor 'gcp'; twin or aws"),
])
def test_bad_input_is_one_clear_error(files: Path, args: list[str], code: int, says: str) -> None:
    exit_code, output = run(*(a.replace("{d}", str(files)) for a in args))
    assert exit_code == code, output
    assert says in " ".join(output.split()), output
    assert "Traceback" not in output
    assert not [f for f in ("out.csv", "sets", "report.json") if (files / f).exists()]  # nothing half-written


def test_db_current_on_a_file_that_is_not_a_database(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_DATABASE_URL", f"sqlite:///{files / 'not-a-db.db'}")
    exit_code, output = run("db", "current")
    assert exit_code == 2 and "cannot read the store" in output and "file is not a database" in output


@pytest.mark.parametrize("value", [True, False])
def test_true_or_false_is_not_a_worker_count(value: bool) -> None:
    with pytest.raises(ActionParamsError, match="must be a number, not true/false"):
        check_params(ActionKind.SCALE_WORKERS, {"workers": value})
    assert check_params(ActionKind.APPLY_BACK_PRESSURE, {"release": True}) == {"release": True}
