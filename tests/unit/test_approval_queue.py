"""The approval queue and the policy file refuse bad input with a clear error and change nothing; expiry; roles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import (
    ActionParamsError,
    ConflictError,
    PermissionDenied,
    PolicyError,
    SelfhealError,
    UnknownActionError,
    UnknownPipelineError,
)
from engine.execution import policy as policy_mod
from engine.execution.policy import NO_AUTO
from engine.execution.queue import (
    ProposalRequest,
    approve,
    decide_many,
    edit_params,
    expire_due,
    propose,
    reject,
)
from engine.security.roles import Principal, Role, agent
from engine.service.tick import register
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.store.tables import ActionRunRow, AuditEntryRow, ProposalRow
from engine.telemetry.simulator import SimulatorSource

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
OPERATOR = Principal("olga", Role.OPERATOR)
VIEWER = Principal("vic", Role.VIEWER)
ADMIN = Principal("ada", Role.ADMIN)
TABLES = (ProposalRow.__table__, ActionRunRow.__table__, AuditEntryRow.__table__)
GOOD = """version = 1
[[auto]]
name = "retries"
actions = ["retry_with_backoff"]
"""


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(f"sqlite:///{tmp_path / 'queue.db'}")
    register(s, SimulatorSource(Twin(fleet_pipelines(3, seed=1), seed=1)))
    yield s
    s.dispose()


def rows(store: Store) -> tuple[int, ...]:
    with store.read() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in TABLES)


def file(store: Store, action: str = "scale_workers", *, now: datetime = T0, **params) -> int:
    with store.transaction() as conn:
        return propose(conn, agent("rules"), ProposalRequest("orders", action, params=params or None,
                                                             confidence=0.9), NO_AUTO, now=now).proposal_id


@pytest.mark.parametrize(("text", "field"), [
    ('[[auto]]\nname = "x"\nactions = ["reboot_everything"]\n', "auto[0].actions"),
    ('[[auto]]\nname = "x"\nactions = ["retry_with_backoff"]\nmax_risk = "extreme"\n', "auto[0].max_risk"),
    ('colour = "blue"\n', "colour"),
    ('[[auto]]\nname = "x"\nactions = ["retry_with_backoff"]\nrate_limit = { count = 1, per_minutes = 0 }\n',
     "auto[0].rate_limit.per_minutes"),
    ('[[auto]]\nname = "x"\nactions = ["retry_with_backoff"]\n[[auto]]\nname = "x"\nactions = ["reschedule"]\n',
     "auto"),
    ("version = 1\n[[auto]\n", "not valid TOML"),
])
def test_a_bad_policy_file_names_the_field_and_changes_nothing(store: Store, tmp_path: Path, text: str,
                                                               field: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD, encoding="utf-8")
    before = rows(store)
    with pytest.raises(PolicyError, match=rf"^the new policy: .*{re.escape(field)}") as e:
        policy_mod.save(store, ADMIN, path, text)
    if "repeated" in str(e.value):
        assert "['x']" in str(e.value)
    assert path.read_text(encoding="utf-8") == GOOD and rows(store) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_only_an_admin_saves_the_policy_and_it_is_audited(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    with pytest.raises(PermissionDenied):
        policy_mod.save(store, OPERATOR, path, GOOD)
    assert not path.exists()
    saved = policy_mod.save(store, ADMIN, path, GOOD)
    assert [r.name for r in saved.auto] == ["retries"] and policy_mod.load(path) == saved
    with store.read() as conn:
        kinds = [r.kind for r in conn.execute(select(AuditEntryRow.__table__.c.kind))]
    assert kinds == ["policy_changed"]


@pytest.mark.parametrize(("request_", "error", "message"), [
    (ProposalRequest("orders", "reboot_everything"), UnknownActionError, "unknown action 'reboot_everything'"),
    (ProposalRequest("no-such-pipeline", "retry_with_backoff"), UnknownPipelineError, "no-such-pipeline"),
    (ProposalRequest("orders", "scale_workers", params={"workers": 500}), ActionParamsError, "workers"),
    (ProposalRequest("orders", "scale_workers", params={"colour": "red"}), ActionParamsError, "colour"),
    (ProposalRequest("orders", "restart_task", params={"workers": 2}), ActionParamsError, "does not take workers"),
    (ProposalRequest("orders", "restart_task", stage="warehouse"), SelfhealError, "not warehouse"),
    (ProposalRequest("orders", "retry_with_backoff", confidence=1.5), SelfhealError, "confidence"),
])
def test_propose_refuses_bad_requests_and_writes_nothing(store: Store, request_, error, message) -> None:
    with pytest.raises(error, match=message), store.transaction() as conn:
        propose(conn, agent("rules"), request_, policy_mod.DEFAULT_POLICY, now=T0)
    assert rows(store) == (0, 0, 0)


def test_approve_and_edit_refuse_out_of_bounds_parameters(store: Store) -> None:
    pid = file(store, workers=4)
    before = rows(store)
    with pytest.raises(ActionParamsError, match="workers"):
        approve(store, OPERATOR, pid, params={"workers": 0}, now=T0)
    with pytest.raises(ActionParamsError, match="factor"):
        edit_params(store, OPERATOR, pid, {"workers": 2, "factor": 2.0})
    with pytest.raises(ActionParamsError, match="does not take max_attempts"):
        edit_params(store, OPERATOR, pid, {"max_attempts": 3})
    assert rows(store) == before
    assert edit_params(store, OPERATOR, pid, {"workers": 8}, now=T0) == {"workers": 8}
    audited = rows(store)
    assert edit_params(store, OPERATOR, pid, {"workers": 8}, now=T0) == {"workers": 8}  # saved again, unchanged
    assert rows(store) == audited  # nothing changed, so no "proposal_edited" entry
    decided = approve(store, OPERATOR, pid, params={"workers": 16}, reason="peak", now=T0)
    with store.read() as conn:
        run = conn.execute(select(ActionRunRow.__table__).where(ActionRunRow.__table__.c.id == decided.run_id)).one()
    assert run.params == {"workers": 16} and run.status == "queued"


def test_a_viewer_cannot_decide_and_nothing_is_written(store: Store) -> None:
    pid = file(store)
    before = rows(store)
    for call in (lambda: approve(store, VIEWER, pid, reason="me", now=T0), lambda: reject(store, VIEWER, pid, "no"),
                 lambda: edit_params(store, VIEWER, pid, {"workers": 2})):
        with pytest.raises(PermissionDenied, match=r"vic \(viewer\) may not decide"):
            call()
    with pytest.raises(PermissionDenied), store.transaction() as conn:
        propose(conn, VIEWER, ProposalRequest("orders", "retry_with_backoff"), NO_AUTO)
    assert rows(store) == before
    with store.read() as conn:
        assert conn.execute(select(ProposalRow.__table__.c.status)).scalar_one() == "pending"


def test_expiry_moves_only_due_pending_proposals_and_audits_them(store: Store) -> None:
    ttl = timedelta(minutes=NO_AUTO.proposal_ttl_minutes)
    old = file(store, "scale_workers", now=T0)
    young = file(store, "restart_task", now=T0 + timedelta(minutes=30))
    decided = file(store, "reschedule", now=T0)
    approve(store, OPERATOR, decided, reason="ok", now=T0 + timedelta(minutes=1))
    with store.transaction() as conn:
        assert expire_due(conn, T0 + ttl - timedelta(seconds=1)) == []
        assert expire_due(conn, T0 + ttl) == [old]
        assert expire_due(conn, T0 + ttl) == []
    with store.read() as conn:
        status = dict(conn.execute(select(ProposalRow.__table__.c.id, ProposalRow.__table__.c.status)).all())
        expired = conn.execute(select(AuditEntryRow.__table__.c.subject)
                               .where(AuditEntryRow.__table__.c.kind == "proposal_expired")).scalars().all()
    assert status == {old: "expired", young: "pending", decided: "approved"}
    assert expired == [f"proposal:{old}"]


def test_past_its_expiry_a_proposal_cannot_be_edited_rejected_or_approved_even_before_the_clock_marks_it(
        store: Store) -> None:
    pid = file(store, workers=4, now=T0)
    late = T0 + timedelta(minutes=NO_AUTO.proposal_ttl_minutes)
    before = rows(store)
    with pytest.raises(ConflictError, match=f"proposal #{pid} expired at"):
        edit_params(store, OPERATOR, pid, {"workers": 6}, now=late)
    with pytest.raises(ConflictError, match="expired at"):
        reject(store, OPERATOR, pid, "not needed", now=late)
    with pytest.raises(ConflictError, match="expired at"):
        approve(store, OPERATOR, pid, now=late)
    assert rows(store) == before  # nothing decided, edited or audited: the expiry clock records it as expired
    edit_params(store, OPERATOR, pid, {"workers": 6}, now=late - timedelta(seconds=1))  # still in time


def test_bulk_approval_holds_each_proposal_to_the_parameters_the_operator_saw(store: Store) -> None:
    edited, untouched = file(store, workers=4), file(store, "restart_task")
    edit_params(store, Principal("bob", Role.OPERATOR), edited, {"workers": 64}, now=T0)
    out = decide_many(store, OPERATOR, [edited, untouched], approve_them=True, now=T0,
                      expected={edited: {"workers": 4}, untouched: {}})
    assert [(o.proposal_id, o.ok) for o in out] == [(edited, False), (untouched, True)]
    assert "parameters changed since you opened it" in out[0].message
    with store.read() as conn:
        status = dict(conn.execute(select(ProposalRow.__table__.c.id, ProposalRow.__table__.c.status)).all())
    assert status == {edited: "pending", untouched: "approved"}


def test_a_decision_on_parameters_someone_else_changed_is_refused(store: Store) -> None:
    pid = file(store, workers=4)
    seen = {"workers": 4}
    edit_params(store, Principal("bob", Role.OPERATOR), pid, {"workers": 12}, expected_params=seen, now=T0)
    before = rows(store)
    with pytest.raises(ConflictError, match="parameters changed since you opened it"):
        approve(store, OPERATOR, pid, expected_params=seen, now=T0)  # olga saw 4 workers, not bob's 12
    with pytest.raises(ConflictError, match="parameters changed"):
        edit_params(store, OPERATOR, pid, {"workers": 6}, expected_params=seen, now=T0)
    assert rows(store) == before  # nothing approved, nothing overwritten, nothing audited
    done = approve(store, OPERATOR, pid, expected_params={"workers": 12}, now=T0)  # after looking again
    assert done.run_id is not None


def test_a_run_whose_command_was_lost_times_out_at_its_deadline(store: Store) -> None:
    from sqlalchemy import delete

    from engine.execution.twin_inbox import InboxExecutor
    from engine.execution.worker import Worker
    from engine.store.tables import SimCommandRow

    pid = file(store, "restart_task")
    approve(store, OPERATOR, pid, now=T0)
    clock = [T0]
    worker = Worker(store, InboxExecutor(store), "w", lease_seconds=30, run_timeout_seconds=60,
                    clock=lambda: clock[0])
    assert worker.step().submitted  # sent …
    with store.transaction() as conn:
        conn.execute(delete(SimCommandRow.__table__))  # … and lost on the other side
    for seconds in (20, 40, 59):
        clock[0] = T0 + timedelta(seconds=seconds)
        assert worker.step().finished == []  # cannot poll it: kept (lease renewed) until its deadline
    clock[0] = T0 + timedelta(seconds=61)
    assert [status for _, status in worker.step().finished] == ["timed_out"]
    with store.read() as conn:
        result = conn.execute(select(ActionRunRow.__table__.c.result)).scalar_one()
    assert "no outcome by the deadline" in result["detail"] and "never received" in result["detail"]


def test_a_run_taken_over_after_its_deadline_is_not_sent_late(store: Store) -> None:
    from engine.execution.twin_inbox import InboxExecutor
    from engine.execution.worker import Worker, WorkerStep
    from engine.store.tables import SimCommandRow

    pid = file(store, "restart_task")
    approve(store, OPERATOR, pid, now=T0)
    dead = Worker(store, InboxExecutor(store), "dead", lease_seconds=30, run_timeout_seconds=60, clock=lambda: T0)
    dead._claim(WorkerStep())  # claimed, never sent: the worker died
    late = Worker(store, InboxExecutor(store), "late", clock=lambda: T0 + timedelta(seconds=90))
    step = late.step()
    assert step.submitted == [] and [s for _, s in step.finished] == ["timed_out"]
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(SimCommandRow.__table__)).scalar_one() == 0
