"""The CLI's other commands: agent writes ticks into the configured store; db reports its revision."""

import subprocess
import sys

from engine.settings import load_settings
from engine.store import repo
from engine.store.db import Store


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False, env=env)


def test_agent_ticks_into_the_store_named_by_the_environment(isolated_env, monkeypatch):
    monkeypatch.setenv("SELFHEAL_FLEET_SIZE", "5")
    monkeypatch.setenv("SELFHEAL_BACKFILL_MINUTES", "30")
    result = _cli("agent", "--ticks", "2", "--interval", "0.05", "--speed", "600")
    assert result.returncode == 0, result.stderr
    assert "stopped after 2 tick(s)" in result.stderr
    store = Store.open(load_settings().store_url)
    with store.read() as conn:
        assert len(repo.list_pipelines(conn)) == 5
        newest, oldest = repo.latest_health_ts(conn), repo.earliest_health_ts(conn)
    assert (newest - oldest).total_seconds() / 60 >= 30  # backfill plus live ticks
    assert (isolated_env / "selfheal.db").exists()


def test_db_commands_and_bad_settings(isolated_env, monkeypatch):
    first = _cli("db", "current")
    assert first.returncode == 0 and "none (empty database)" in first.stdout
    up = _cli("db", "upgrade")
    assert up.returncode == 0 and "revision 0005" in up.stdout
    monkeypatch.setenv("SELFHEAL_FLEET_SIZE", "0")
    bad = _cli("agent", "--ticks", "1")
    assert bad.returncode == 2 and "SELFHEAL_FLEET_SIZE" in bad.stderr and "Traceback" not in bad.stderr
