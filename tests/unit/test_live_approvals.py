"""The live loop through the approval queue: the agent proposes, the policy or an operator decides, a worker
runs it in the staging twin, and the outcome (or a rejection) is learned; roles are enforced by the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import ConflictError, PermissionDenied
from engine.execution import queue
from engine.feedback.reward import rejection_reward
from engine.model import ActionKind
from engine.security.roles import Principal, Role
from engine.service import audit
from engine.service.runtime import EmbeddedRuntime
from engine.settings import load_settings
from engine.store import decision_repo
from engine.store.tables import ActionRunRow, AuditEntryRow, SimCommandRow

OPERATOR = Principal("olga", Role.OPERATOR)
VIEWER = Principal("vic", Role.VIEWER)


def _runtime(tmp_path: Path, policy: str = "rules") -> EmbeddedRuntime:
    settings = load_settings(data_dir=tmp_path, fleet_size=3, backfill_minutes=70, live=False, seed=3)
    runtime = EmbeddedRuntime(settings, policy=policy)
    runtime.backfill()
    return runtime


def _pending(runtime: EmbeddedRuntime, minutes: int = 10) -> dict:
    """Advance until the agent has filed a pending proposal; that proposal."""
    for _ in range(minutes):
        runtime.advance(1)
        with runtime.store.read() as conn:
            frame = queue.proposals(conn, statuses=["pending"])
        if len(frame):
            return frame.iloc[0].to_dict()
    raise AssertionError(f"no pending proposal after {minutes} minutes")


def _count(runtime: EmbeddedRuntime, table) -> int:
    with runtime.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_medium_risk_fix_waits_for_an_operator_then_heals(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    runtime.inject_fault("orders", "transform", "schema_drift", actor=OPERATOR)
    proposal = _pending(runtime)
    assert (proposal["pipeline_id"], proposal["action"], proposal["risk"]) == ("orders", "remap_schema", "medium")
    for _ in range(5):  # nobody decided: nothing runs, however long the loop ticks
        runtime.advance(1)
    assert _count(runtime, ActionRunRow.__table__) == 0 and _count(runtime, SimCommandRow.__table__) == 0
    with runtime.store.read() as conn:
        evidence = queue.proposal(conn, int(proposal["id"]))["evidence"]
    assert evidence["diagnosis"]["error_type"] == "schema_drift" and evidence["policy"] == "rules"
    assert evidence["expected_effect"] and evidence["cost"] > 0

    queue.approve(runtime.store, OPERATOR, int(proposal["id"]), reason="drift confirmed with the source team")
    closed = [r for _ in range(30) for r in runtime.advance(1).closed]
    assert [i.pipeline_id for i in closed] == ["orders"]
    with runtime.store.read() as conn:
        [run] = queue.runs(conn).to_dict("records")
        trail = audit.chain(conn, int(proposal["id"]))
    assert (run["status"], run["approved_by"], run["attempts"]) == ("succeeded", "olga", 1)
    # The whole chain about this proposal, in order: proposed, approved, started, finished, learned from.
    assert [k for k in trail["kind"] if k != "agent_decision"] == [
        "proposal_created", "proposal_approved", "action_started", "action_finished", "agent_feedback"]
    assert trail["actor"].tolist()[trail["kind"].tolist().index("proposal_approved")] == "olga"
    assert trail.iloc[-1]["detail"]["outcome"] == "succeeded"
    runtime.stop()


def test_a_rejection_is_learned_as_a_penalty_and_never_runs(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    runtime.inject_fault("orders", "transform", "schema_drift", actor=OPERATOR)
    proposal = _pending(runtime)
    queue.reject(runtime.store, OPERATOR, int(proposal["id"]), "schema change is intended; migrating by hand")
    runtime.advance(1)
    with runtime.store.read() as conn:
        frame = decision_repo.recent_transitions(conn, "rules")
    rejected = frame[frame["outcome"] == "rejected"]
    assert len(rejected) == 1
    assert rejected.iloc[0]["action"] == ActionKind.REMAP_SCHEMA.value
    assert rejected.iloc[0]["reward"] == pytest.approx(rejection_reward())
    assert _count(runtime, ActionRunRow.__table__) == 0
    with pytest.raises(ConflictError, match="already rejected by olga"):
        queue.approve(runtime.store, OPERATOR, int(proposal["id"]))
    runtime.stop()


def test_viewers_are_refused_by_the_engine_and_nothing_changes(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    audit_before = _count(runtime, AuditEntryRow.__table__)
    with pytest.raises(PermissionDenied, match="vic \\(viewer\\) may not inject"):
        runtime.inject_fault("orders", "transform", "schema_drift", actor=VIEWER)
    assert runtime.twin.faults == [] and _count(runtime, AuditEntryRow.__table__) == audit_before
    runtime.inject_fault("orders", "transform", "schema_drift", actor=OPERATOR)
    proposal = _pending(runtime)
    with pytest.raises(PermissionDenied, match="may not decide"):
        queue.approve(runtime.store, VIEWER, int(proposal["id"]))
    with pytest.raises(PermissionDenied):
        queue.reject(runtime.store, VIEWER, int(proposal["id"]), "no")
    with runtime.store.read() as conn:
        assert queue.proposal(conn, int(proposal["id"]))["status"] == "pending"
    assert _count(runtime, ActionRunRow.__table__) == 0
    runtime.stop()


def test_the_default_policy_lets_low_risk_fixes_run_on_their_own(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    runtime.inject_fault("orders", "transform", "network_failure", actor=OPERATOR, duration_minutes=40)
    for _ in range(20):
        runtime.advance(1)
    with runtime.store.read() as conn:
        frame = queue.proposals(conn)
    retries = frame[frame["action"] == ActionKind.RETRY_WITH_BACKOFF.value]
    assert len(retries) >= 1
    first = retries.iloc[-1]
    assert (first["status"], first["decided_by"], first["policy_rule"]) == (
        "approved", "policy:low-risk fixes", "low-risk fixes")
    assert first["run_status"] in ("running", "succeeded", "failed")
    runtime.stop()


def test_the_learned_policy_learns_a_rejection_live_and_keeps_it(tmp_path: Path) -> None:
    from engine.decision.qlearning import QTable
    from engine.feedback import memory
    from engine.store.db import Store

    (tmp_path / "policy.toml").write_text("version = 1\n")  # nothing auto-executes: every proposal waits
    store = Store.open(f"sqlite:///{tmp_path / 'selfheal.db'}")
    seeded = QTable()
    seeded.set("some-other-state", ActionKind.WAIT, -1.0)  # a trained table exists (its rows are irrelevant)
    with store.transaction() as conn:
        memory.save_table(conn, seeded)
    store.dispose()
    runtime = _runtime(tmp_path, policy="qlearning")
    runtime.inject_fault("orders", "transform", "schema_drift", actor=OPERATOR)
    proposal = _pending(runtime)
    with runtime.store.read() as conn:
        state = queue.proposal(conn, int(proposal["id"]))["evidence"]["state"]
    queue.reject(runtime.store, OPERATOR, int(proposal["id"]), "not this one")
    runtime.advance(1)
    with runtime.store.read() as conn:
        moved = {(s, a): v for s, a, v, _ in decision_repo.load_q_values(conn, "qlearning")}
        frame = decision_repo.recent_transitions(conn, "qlearning")
    rejected = frame[frame["outcome"] == "rejected"].iloc[0]
    assert (rejected["state"], rejected["action"]) == (state, proposal["action"])
    assert rejected["q_after"] < rejected["q_before"]  # the penalty moved the value down …
    assert moved[(state, proposal["action"])] == pytest.approx(rejected["q_after"])  # … and it is in the store
    runtime.stop()


def test_qlearning_without_a_trained_table_is_a_clear_error(tmp_path: Path) -> None:
    from engine.errors import SelfhealError

    with pytest.raises(SelfhealError, match="needs a trained table"):
        _runtime(tmp_path, policy="qlearning")


def test_one_twin_host_per_store_and_a_crashed_one_is_replaced_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    from engine.errors import SelfhealError
    from engine.execution.twin_inbox import HOST_KEY
    from engine.store import repo

    first = _runtime(tmp_path)
    with pytest.raises(SelfhealError, match="another process hosts the staging twin on this store"):
        _runtime(tmp_path)  # two twins would write the same pipelines' telemetry
    first.stop()  # a clean stop hands it over at once
    second = _runtime(tmp_path)
    # A host that died without stopping (kill -9): its lease is fresh but its process is gone on this machine.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    with second.store.transaction() as conn:
        holder = repo.get_value(conn, HOST_KEY)
        repo.set_value(conn, HOST_KEY, {**holder, "id": "crashed", "pid": int(gone.stdout)})
    third = _runtime(tmp_path)
    with third.store.read() as conn:
        assert repo.get_value(conn, HOST_KEY)["id"] == third.host.owner["id"]
    third.stop()


def test_the_gateway_keeps_each_wait_under_its_own_ref_and_forgets_only_the_oldest(monkeypatch) -> None:
    """Waits finish at once and never reach the store. Each keeps its own ref however often the loop polls (a ref
    taken from the count of those kept was handed out again once one had been polled, and polled the wrong wait);
    a long-running loop keeps only the newest `LOCAL_KEPT`, and an unknown ref is a clear error, not a crash."""
    from engine.errors import SelfhealError
    from engine.execution import gateway
    from engine.execution.executor import ActionRequest, ExecStatus
    from engine.execution.policy import NO_AUTO
    from engine.model import Stage

    monkeypatch.setattr(gateway, "LOCAL_KEPT", 3)
    gw = gateway.ProposalGateway(lambda: NO_AUTO, OPERATOR)

    def wait(pid: str) -> str:
        return gw.submit(ActionRequest(pid, ActionKind.WAIT, Stage.TRANSFORM, {}, None)).ref

    a, b = wait("a"), wait("b")
    assert gw.poll(a).request.pipeline_id == "a" and gw.poll(a).status is ExecStatus.SUCCEEDED  # polled twice
    c = wait("c")
    assert len({a, b, c}) == 3 and gw.poll(b).request.pipeline_id == "b" and gw.poll(c).request.pipeline_id == "c"
    d = wait("d")
    assert [gw.poll(r).request.pipeline_id for r in (b, c, d)] == ["b", "c", "d"]
    with pytest.raises(SelfhealError, match="no longer kept"):
        gw.poll(a)  # the oldest of four, with three kept


def test_an_operator_who_rejects_a_page_hands_the_incident_back_to_the_loop(tmp_path: Path) -> None:
    """A page is a proposal like any other: an operator may reject it. The rejection is learned as a penalty and
    the incident is the loop's again (before, a rejected page was never looked at again: the incident sat with
    nobody on it until it closed)."""
    (tmp_path / "policy.toml").write_text("version = 1\n")  # nothing auto-executes: every proposal waits
    runtime = _runtime(tmp_path, policy="manual")
    runtime.inject_fault("orders", "transform", "credentials_expired", actor=OPERATOR)
    page = _pending(runtime)
    assert page["action"] == ActionKind.ESCALATE_TO_HUMAN.value
    queue.reject(runtime.store, OPERATOR, int(page["id"]), "I am on it already")
    after = runtime.advance(1)
    with runtime.store.read() as conn:
        frame = decision_repo.recent_transitions(conn, "manual")
    rejected = frame[frame["outcome"] == "rejected"]
    assert rejected["action"].tolist() == [ActionKind.ESCALATE_TO_HUMAN.value]
    assert rejected.iloc[0]["reward"] == pytest.approx(rejection_reward())
    # The loop decides again at once; paging again waits for the page's cooldown, so the manual policy waits.
    assert [d.choice.action for d in after.decisions if d.pipeline_id == "orders"] == [ActionKind.WAIT]
    runtime.stop()


def test_a_proposal_that_vanished_from_the_store_is_given_up_and_the_loop_decides_again(tmp_path: Path) -> None:
    """A proposal row deleted under the loop (a purge, a restore from an older backup) must not stop every tick:
    the step it stood for is dropped with a warning and the incident is decided again."""
    from engine.store.tables import ProposalRow

    runtime = _runtime(tmp_path)
    runtime.inject_fault("orders", "transform", "schema_drift", actor=OPERATOR)
    proposal = _pending(runtime)
    with runtime.store.transaction() as conn:
        conn.execute(ProposalRow.__table__.delete().where(ProposalRow.__table__.c.id == int(proposal["id"])))
    again = _pending(runtime, minutes=30)
    assert (again["pipeline_id"], again["incident_id"]) == ("orders", proposal["incident_id"])
    assert again["created_at"] > proposal["created_at"]  # filed anew (SQLite may hand out the freed id again)
    runtime.stop()
