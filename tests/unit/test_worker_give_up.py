"""A run taken over from a dead worker whose executor cannot say whether it was sent is given up at its deadline,
not taken over again and again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from engine.errors import SelfhealError
from engine.execution.executor import ActionRequest, Execution
from engine.execution.policy import NO_AUTO
from engine.execution.queue import ProposalRequest, approve, propose
from engine.execution.worker import Worker
from engine.security.roles import Principal, Role, agent
from engine.service.tick import register
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.store.tables import ActionRunRow
from engine.telemetry.simulator import SimulatorSource

R = ActionRunRow.__table__
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


class _Unreachable:
    """An executor that can never say whether a key was sent (its backend is down) and must not be sent to."""

    name = "unreachable"

    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        raise AssertionError("a run whose fate is unknown must not be sent again")

    def poll(self, ref: str) -> Execution:
        raise SelfhealError("backend unreachable")

    def lookup(self, key: str) -> Execution | None:
        raise SelfhealError("backend unreachable")

    def cancel(self, key: str) -> bool:
        return False


def test_a_taken_over_run_past_its_deadline_is_given_up_when_its_executor_cannot_say(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    register(store, SimulatorSource(Twin(fleet_pipelines(2, seed=1), seed=1)))
    with store.transaction() as conn:
        pid = propose(conn, agent("rules"), ProposalRequest("orders", "restart_task", "transform", confidence=0.9),
                      NO_AUTO, now=NOW).proposal_id
    run_id = approve(store, Principal("olga", Role.OPERATOR), pid, now=NOW).run_id
    with store.transaction() as conn:  # a worker claimed it, maybe sent it, and died; its lease and deadline ran out
        conn.execute(update(R).where(R.c.id == run_id).values(
            status="running", worker="dead", attempts=1, lease_expires_at=NOW - timedelta(minutes=5),
            deadline=NOW - timedelta(minutes=1), executor="unreachable"))
    worker = Worker(store, _Unreachable(), "w2", clock=lambda: NOW)
    step = worker.step()
    assert step.taken_over == [run_id]
    with store.read() as conn:
        run = conn.execute(select(R).where(R.c.id == run_id)).one()
    assert run.status == "failed" and "cannot say whether it was sent" in run.result["detail"]
    assert worker.step().claimed == []  # finished: never taken over again
