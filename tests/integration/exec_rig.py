"""Shared pieces of the exactly-once tests: a hosted staging twin, a permissive policy, worker processes, counters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from engine.execution.catalog import Risk
from engine.execution.policy import AutoRule, Policy, RateLimit
from engine.execution.twin_inbox import TwinHost
from engine.model import ActionKind
from engine.service.tick import register
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.store.tables import ActionRunRow, AuditEntryRow, SimCommandRow
from engine.telemetry.simulator import SimulatorSource

ROOT = Path(__file__).resolve().parents[2]
R = ActionRunRow.__table__
C = SimCommandRow.__table__
A = AuditEntryRow.__table__
FINAL = ("succeeded", "failed", "timed_out", "cancelled")
T0 = datetime(2026, 11, 1, tzinfo=UTC)

PERMISSIVE = Policy(auto=(AutoRule(name="everything", actions=tuple(a for a in ActionKind if a is not ActionKind.WAIT),
                                   max_risk=Risk.HIGH, min_confidence=0.0,
                                   rate_limit=RateLimit(count=100_000, per_minutes=1)),))


def open_store(url: str, *, pool: int = 5) -> Store:
    """A migrated store; on PostgreSQL with `pool` connections (twenty threads need twenty at once)."""
    store = Store.open(url)
    if store.dialect == "postgresql" and pool > 5:
        store.dispose()
        store = Store(create_engine(url, pool_size=pool, max_overflow=4, pool_pre_ping=True))
    return store


class HostedTwin:
    """What `selfheal agent --no-worker` does, in the test process: a twin whose host applies the inbox."""

    def __init__(self, store: Store, pipelines: int, seed: int = 7) -> None:
        self.store = store
        self.twin = Twin(fleet_pipelines(pipelines, seed), seed=seed, start=T0)
        self.source = SimulatorSource(self.twin)
        register(store, self.source)
        self.host = TwinHost(store, self.twin, self.source.lock)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.twin.pipelines]

    def pump(self, minutes: int = 1) -> tuple[int, int]:
        """Apply new commands, let the twin simulate `minutes`, report finished commands."""
        with self.store.transaction() as conn:
            applied, finished = self.host.pump(conn)
        with self.source.lock:
            self.twin.run_until(self.twin.minute + minutes)
        return applied, finished

    def assert_each_command_applied_once(self) -> int:
        """Every twin action came from exactly one command and each command reached the twin at most once.

        The host writes the twin action's id into the command's row; a command applied twice would leave a twin
        action no row points at (or two rows pointing at one). Returns the number of twin actions.
        """
        with self.store.read() as conn:
            rows = conn.execute(select(C.c.key, C.c.pipeline_id, C.c.action, C.c.twin_action)).all()
        applied = [r for r in rows if r.twin_action is not None]
        assert sorted(r.twin_action for r in applied) == list(range(1, len(self.twin.actions) + 1))
        for r in applied:
            act = self.twin.actions[r.twin_action - 1]
            assert (act.pipeline, act.action.value) == (r.pipeline_id, r.action), r.key
        return len(self.twin.actions)


def wait_for(what: str, done: Callable[[], Any], *, timeout: float, between: Callable[[], Any] | None = None,
             poll: float = 0.02) -> Any:
    """Poll `done()` until it is truthy (returning it), calling `between()` each round; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        if between is not None:
            between()
        time.sleep(poll)  # a poll interval, not a synchronisation: every wait ends on a DB condition


def start_worker(url: str, tmp: Path, name: str, *, lease: float, interval: float = 0.05) -> subprocess.Popen:
    """`selfheal worker` in its own process on `url`; its stderr goes to tmp/<name>.log."""
    env = {**os.environ, "SELFHEAL_DATABASE_URL": url, "SELFHEAL_DATA_DIR": str(tmp / "data"),
           "PYTHONUNBUFFERED": "1"}
    log = (tmp / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker", "--name", name, "--lease-seconds",
                             str(lease), "--interval", str(interval)], cwd=ROOT, env=env, stdout=log, stderr=log)


def count(store: Store, table, *where) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def audit_kinds(store: Store, subject: str) -> list[str]:
    with store.read() as conn:
        return [r.kind for r in conn.execute(select(A.c.kind).where(A.c.subject == subject).order_by(A.c.id))]
