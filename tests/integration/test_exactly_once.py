"""Exactly once under concurrency and crashes, on SQLite (a file) and the real PostgreSQL.

- twenty operators approve one proposal at the same instant: one wins, one run, one twin action;
- a worker killed (SIGKILL) after sending its command: a successor takes the run over and adopts the command;
- a worker dead after claiming, before sending: the successor sends it, once.
The three-process fleet test lives in test_worker_fleet.py.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from engine.errors import ConflictError
from engine.execution.executor import ActionRequest
from engine.execution.policy import NO_AUTO
from engine.execution.queue import ProposalRequest, approve, propose, utcnow
from engine.execution.twin_inbox import InboxExecutor
from engine.execution.worker import Worker, WorkerStep
from engine.model import ActionKind, Stage
from engine.security.roles import Principal, Role, agent
from engine.store.db import Store

from .exec_rig import FINAL, A, C, HostedTwin, R, audit_kinds, count, open_store, start_worker, wait_for

THREADS = 20


def _queue_one(store: Store, rig: HostedTwin, action: str = "restart_task") -> int:
    """A pending proposal on the fleet's first pipeline (the policy auto-approves nothing)."""
    with store.transaction() as conn:
        done = propose(conn, agent("rules"), ProposalRequest(rig.ids[0], action, "transform", confidence=0.9),
                       NO_AUTO)
    assert done.status == "pending"
    return done.proposal_id


def _run(store: Store, pid: int):
    with store.read() as conn:
        return conn.execute(select(R).where(R.c.proposal_id == pid)).one()


def test_twenty_simultaneous_approvals_execute_once(db_url: str) -> None:
    store = open_store(db_url, pool=THREADS + 4)
    rig = HostedTwin(store, pipelines=4)
    pid = _queue_one(store, rig)
    barrier = threading.Barrier(THREADS)

    def decide(i: int) -> str:
        barrier.wait()  # everyone leaves the barrier together: twenty conditional updates race
        try:
            approve(store, Principal(f"op{i}", Role.OPERATOR), pid, reason=f"operator {i}")
        except ConflictError as e:
            assert "already approved by op" in str(e)
            return "conflict"
        return "approved"

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(decide, range(THREADS)))
    assert outcomes.count("approved") == 1 and outcomes.count("conflict") == THREADS - 1
    assert count(store, R, R.c.proposal_id == pid) == 1
    assert count(store, A, A.c.kind == "proposal_approved", A.c.subject == f"proposal:{pid}") == 1

    # Two workers race for the one run; the host applies what they send.
    workers = [Worker(store, InboxExecutor(store, f"w{i}"), f"w{i}", lease_seconds=30) for i in (1, 2)]
    wait_for("the run to finish", lambda: _run(store, pid).status in FINAL, timeout=30,
             between=lambda: ([w.step() for w in workers], rig.pump()))
    run = _run(store, pid)
    assert run.attempts == 1 and run.idempotency_key == f"proposal:{pid}"
    assert count(store, C) == 1
    assert rig.assert_each_command_applied_once() == 1
    assert audit_kinds(store, f"run:{run.id}") == ["action_started", "action_finished"]
    store.dispose()


@pytest.mark.slow
def test_worker_killed_mid_action_is_reconciled_once(db_url: str, tmp_path) -> None:
    store = open_store(db_url)
    rig = HostedTwin(store, pipelines=3)
    pid = _queue_one(store, rig)
    approve(store, Principal("olga", Role.OPERATOR), pid, reason="go")
    key = f"proposal:{pid}"
    first = start_worker(db_url, tmp_path, "first", lease=2)
    try:
        # The host does not pump yet: the command waits in the inbox while the run is `running`.
        wait_for("the first worker to send the command and record it",
                 lambda: count(store, C, C.c.key == key) == 1 and "action_started" in audit_kinds(store, "run:1"),
                 timeout=30)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.kill()
    killed = _run(store, pid)
    assert killed.worker == "first" and killed.attempts == 1 and killed.status == "running"

    second = start_worker(db_url, tmp_path, "second", lease=2)
    try:
        wait_for("the second worker to finish the run", lambda: _run(store, pid).status in FINAL, timeout=40,
                 between=rig.pump)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    run = _run(store, pid)
    assert run.worker == "second" and run.attempts == 2 and run.status in FINAL
    assert count(store, C) == 1 and rig.assert_each_command_applied_once() == 1
    kinds = audit_kinds(store, f"run:{run.id}")
    assert kinds == ["action_started", "run_taken_over", "action_adopted", "action_finished"], kinds
    store.dispose()


def test_worker_dead_after_claiming_the_successor_sends_once(db_url: str) -> None:
    store = open_store(db_url)
    rig = HostedTwin(store, pipelines=3)
    pid = _queue_one(store, rig, action="retry_with_backoff")
    approve(store, Principal("olga", Role.OPERATOR), pid, reason="go")
    now = utcnow()
    dead = Worker(store, InboxExecutor(store, "dead"), "dead", lease_seconds=5, clock=lambda: now)
    assert [r.proposal_id for r in dead._claim(WorkerStep())] == [pid]  # claimed, then it dies before sending
    del dead
    assert count(store, C) == 0

    # The successor's clock is past the dead worker's lease (no real waiting needed to prove the logic).
    later = Worker(store, InboxExecutor(store, "later"), "later", lease_seconds=30,
                   clock=lambda: utcnow() + timedelta(seconds=10))
    step = later.step()
    run = _run(store, pid)
    assert step.taken_over == [run.id] and step.submitted == [run.id]
    wait_for("the run to finish", lambda: _run(store, pid).status in FINAL, timeout=30,
             between=lambda: (later.step(), rig.pump()))
    run = _run(store, pid)
    assert run.worker == "later" and run.attempts == 2
    assert count(store, C) == 1 and rig.assert_each_command_applied_once() == 1
    assert audit_kinds(store, f"run:{run.id}") == ["run_taken_over", "action_started", "action_finished"]
    store.dispose()


def test_a_dead_workers_run_is_reconciled_before_the_next_run_on_its_pipeline(db_url: str) -> None:
    store = open_store(db_url)
    rig = HostedTwin(store, pipelines=3)
    operator = Principal("olga", Role.OPERATOR)
    first = _queue_one(store, rig, action="restart_task")
    approve(store, operator, first, reason="go")  # queued, lower id
    second = _queue_one(store, rig, action="retry_with_backoff")
    approve(store, operator, second, reason="go")
    # The crash state: a dead worker took the later run, sent its command, and its lease ran out (whichever run
    # a worker took first, nothing else may start on that pipeline until this one is settled).
    stale = _run(store, second)
    InboxExecutor(store, "dead").submit(ActionRequest(stale.pipeline_id, ActionKind(stale.action),
                                                      Stage(stale.stage)), stale.idempotency_key)
    with store.transaction() as conn:
        conn.execute(update(R).where(R.c.id == stale.id).values(
            status="running", worker="dead", attempts=1, executor="twin", started_at=utcnow(),
            deadline=utcnow() + timedelta(minutes=15), lease_expires_at=utcnow() - timedelta(seconds=1)))

    later = Worker(store, InboxExecutor(store, "later"), "later", lease_seconds=30)
    step = later.step()
    assert step.taken_over == [stale.id] and step.submitted == []  # adopted, not sent again
    assert _run(store, first).status == "queued"  # the other run waits: the dead one's action may still run
    wait_for("both runs to finish", lambda: _run(store, first).status in FINAL, timeout=30,
             between=lambda: (later.step(), rig.pump()))
    one, two = _run(store, first), _run(store, second)
    assert two.finished_at <= one.started_at  # the queued one started only once the stale one was settled
    assert count(store, C) == 2 and rig.assert_each_command_applied_once() == 2
    store.dispose()
