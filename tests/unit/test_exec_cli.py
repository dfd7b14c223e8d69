"""`selfheal worker`, `proposals`, `policy` and `audit export` through Typer's CliRunner on a SQLite file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from engine.cli import app
from engine.execution.policy import NO_AUTO
from engine.execution.queue import ProposalRequest, propose
from engine.security import users as users_module
from engine.security.roles import Role, agent
from engine.security.users import add_user
from engine.service.tick import register
from engine.settings import load_settings
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.store.tables import ActionRunRow, AuditEntryRow, SimCommandRow
from engine.telemetry.simulator import SimulatorSource

runner = CliRunner()
R = ActionRunRow.__table__


@pytest.fixture
def store(isolated_env: Path):
    s = Store.open(load_settings().store_url)
    register(s, SimulatorSource(Twin(fleet_pipelines(3, seed=1), seed=1)))
    yield s
    s.dispose()


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(users_module, "BCRYPT_ROUNDS", 4)
    path = tmp_path / "secrets.toml"
    add_user(path, "olga", Role.OPERATOR, "olga pw")
    add_user(path, "vic", Role.VIEWER, "vic pw")
    return path


def pending(store: Store, action: str = "scale_workers") -> int:
    with store.transaction() as conn:
        return propose(conn, agent("rules"), ProposalRequest("orders", action, confidence=0.8), NO_AUTO).proposal_id


def runs(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(R)).scalar_one())


def test_an_operator_approves_with_edited_parameters(store: Store, secrets: Path) -> None:
    pid = pending(store)
    done = runner.invoke(app, ["proposals", "approve", str(pid), "--user", "olga", "--secrets", str(secrets),
                               "--password-stdin", "--param", "workers=6", "--reason", "peak"], input="olga pw\n")
    assert done.exit_code == 0, done.output
    assert f"proposal #{pid} approved by olga; run #1 queued" in done.output
    with store.read() as conn:
        assert conn.execute(select(R.c.params, R.c.status)).one() == ({"workers": 6}, "queued")
    listed = runner.invoke(app, ["proposals", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["status"], row["decided_by"], row["run_status"]) == (pid, "approved", "olga", "queued")


@pytest.mark.parametrize(("user", "password", "message"), [
    ("vic", "vic pw", "vic (viewer) may not decide"),
    ("olga", "wrong", "wrong user name or password"),
    ("nobody", "x", "wrong user name or password"),
])
def test_a_viewer_or_a_wrong_password_is_refused_and_nothing_runs(store: Store, secrets: Path, user: str,
                                                                  password: str, message: str) -> None:
    pid = pending(store)
    done = runner.invoke(app, ["proposals", "approve", str(pid), "--user", user, "--secrets", str(secrets),
                               "--password-stdin"], input=f"{password}\n")
    assert done.exit_code == 2 and message in done.output
    assert runs(store) == 0
    rejected = runner.invoke(app, ["proposals", "reject", str(pid), "--user", user, "--secrets", str(secrets),
                                   "--password-stdin", "--reason", "no"], input=f"{password}\n")
    assert rejected.exit_code == 2 and message in rejected.output


def test_without_local_users_the_cli_decides_nothing(store: Store, tmp_path: Path) -> None:
    pid = pending(store)
    done = runner.invoke(app, ["proposals", "approve", str(pid), "--user", "olga", "--secrets",
                               str(tmp_path / "none.toml"), "--password-stdin"], input="x\n")
    assert done.exit_code == 2 and "no local users" in done.output and runs(store) == 0


def test_policy_check_and_show(isolated_env: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[auto]]\nname = "retries"\nactions = ["retry_with_backoff"]\n', encoding="utf-8")
    ok = runner.invoke(app, ["policy", "check", str(good)])
    assert ok.exit_code == 0 and "valid; 1 auto-execution rule(s)" in ok.output and 'name = "retries"' in ok.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[auto]]\nname = "x"\nactions = ["retry_with_backoff"]\nmin_confidence = 2\n', encoding="utf-8")
    refused = runner.invoke(app, ["policy", "check", str(bad)])
    assert refused.exit_code == 1 and "auto[0].min_confidence" in refused.output
    shown = runner.invoke(app, ["policy", "show"])
    assert shown.exit_code == 0 and "built-in default" in shown.output and 'name = "low-risk fixes"' in shown.output
    (isolated_env / "policy.toml").write_text(good.read_text(encoding="utf-8"), encoding="utf-8")
    shown = runner.invoke(app, ["policy", "show"])
    assert str(isolated_env / "policy.toml") in shown.output and 'name = "retries"' in shown.output


def test_audit_export_writes_csv_filtered_by_kind_and_time(store: Store, secrets: Path, tmp_path: Path) -> None:
    pid = pending(store)
    runner.invoke(app, ["proposals", "approve", str(pid), "--user", "olga", "--secrets", str(secrets),
                        "--password-stdin"], input="olga pw\n")
    out = tmp_path / "audit.csv"
    done = runner.invoke(app, ["audit", "export", "--csv", str(out)])
    assert done.exit_code == 0 and "wrote 2 audit entries" in done.output
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["kind"] for r in rows] == ["proposal_created", "proposal_approved"]
    assert rows[1]["actor"] == "olga" and json.loads(rows[1]["detail"])["run_id"] == 1
    only = runner.invoke(app, ["audit", "export", "--csv", str(out), "--kind", "proposal_approved"])
    assert only.exit_code == 0 and "wrote 1 audit entry" in only.output
    later = runner.invoke(app, ["audit", "export", "--csv", str(out), "--since", "2999-01-01"])
    assert later.exit_code == 0 and "wrote 0 audit entries" in later.output
    bad = runner.invoke(app, ["audit", "export", "--csv", str(out), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since wants an ISO date" in bad.output


def test_worker_sends_an_approved_run_to_the_twin_inbox(store: Store, secrets: Path) -> None:
    pid = pending(store, "restart_task")
    runner.invoke(app, ["proposals", "approve", str(pid), "--user", "olga", "--secrets", str(secrets),
                        "--password-stdin"], input="olga pw\n")
    done = runner.invoke(app, ["worker", "--name", "cli", "--steps", "2", "--interval", "0.01",
                               "--lease-seconds", "5"])
    assert done.exit_code == 0, done.output
    assert "worker cli: claimed run #1" in done.output and "stopped after 2 step(s)" in done.output
    with store.read() as conn:
        assert conn.execute(select(R.c.status, R.c.worker)).one() == ("running", "cli")
        assert conn.execute(select(SimCommandRow.__table__.c.key)).scalar_one() == f"proposal:{pid}"
        kinds = conn.execute(select(AuditEntryRow.__table__.c.kind)).scalars().all()
    assert kinds[-1] == "action_started"
    refused = runner.invoke(app, ["worker", "--interval", "5", "--lease-seconds", "2"])
    assert refused.exit_code == 2 and "below the lease" in refused.output


@pytest.mark.slow
def test_agent_without_a_worker_hosts_the_twin_for_worker_processes(isolated_env: Path, secrets: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_BACKFILL_MINUTES", "0")
    agent_cmd = ["agent", "--no-worker", "--fleet-size", "3", "--interval", "0.05", "--speed", "600"]
    assert runner.invoke(app, [*agent_cmd, "--ticks", "1"]).exit_code == 0  # registers the fleet
    store = Store.open(load_settings().store_url)
    pid = pending(store, "restart_task")
    runner.invoke(app, ["proposals", "approve", str(pid), "--user", "olga", "--secrets", str(secrets),
                        "--password-stdin"], input="olga pw\n")
    assert runner.invoke(app, ["worker", "--name", "ext", "--steps", "1"]).exit_code == 0  # sends the command
    hosted = runner.invoke(app, [*agent_cmd, "--ticks", "4"])  # applies it; the twin runs it to its end
    assert hosted.exit_code == 0, hosted.output
    with store.read() as conn:
        assert conn.execute(select(SimCommandRow.__table__.c.status)).scalar_one() in ("succeeded", "failed")
        assert conn.execute(select(R.c.status, R.c.worker)).one() == ("running", "ext")  # the agent executed nothing
    assert runner.invoke(app, ["worker", "--name", "ext", "--steps", "1"]).exit_code == 0
    with store.read() as conn:
        assert conn.execute(select(R.c.status)).scalar_one() in ("succeeded", "failed")
    store.dispose()
