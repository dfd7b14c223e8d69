"""App tests for the Approvals page: the queue and its evidence, decisions by role, bulk outcomes, the policy editor.

Proposals are filed as the rules agent would file them; the live agent is off (SELFHEAL_AGENT_POLICY=none) so the
queue holds only what each test puts there. Operators and viewers are local users signed in through session state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from console.approvals_panel import ADMIN_HINT, VIEWER_HINT, carry_selection, param_fields
from console.auth import SESSION_USER
from engine.errors import ActionParamsError, PermissionDenied
from engine.execution import policy, queue
from engine.execution.queue import ProposalRequest
from engine.security.roles import Principal, Role, agent
from engine.security.users import hash_password
from engine.service import audit
from engine.service.approvals_view import evidence_window
from engine.service.runtime import EmbeddedRuntime
from engine.store import repo
from engine.store.tables import ActionRunRow

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "approvals.py")
APP = str(ROOT / "console" / "app.py")
USERS = {"alice": {"password_hash": hash_password("pw-alice", rounds=4), "role": "operator"},
         "vic": {"password_hash": hash_password("pw-vic", rounds=4), "role": "viewer"}}
OPERATOR = Principal("alice", Role.OPERATOR)
DEFAULT_PARAMS = {"scale_workers": {"factor": 2.0}}
VIEWER = Principal("vic", Role.VIEWER)


@pytest.fixture
def quiet(console_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SELFHEAL_AGENT_POLICY", "none")
    return console_env


@pytest.fixture
def rt(quiet: Path, runtime: EmbeddedRuntime) -> EmbeddedRuntime:
    return runtime


def propose(rt: EmbeddedRuntime, action: str = "scale_workers", pipeline: str = "orders",
            params: dict[str, Any] | None = None) -> int:
    evidence = {"reason": "cpu and queue wait high on transform", "policy": "rules", "state": "contention|slow|q0",
                "q_values": {action: 4.5, "retry_with_backoff": 1.25, "escalate_to_human": -2.0},
                "diagnosis": {"error_type": "resource_contention", "stage": "transform", "status": "slow",
                              "confidence": 0.82},
                "sim_time": (rt.twin.now - timedelta(minutes=5)).isoformat()}
    params = params if params is not None else dict(DEFAULT_PARAMS.get(action, {}))
    with rt.store.transaction() as conn:
        done = queue.propose(conn, agent("rules"), ProposalRequest(
            pipeline, action, "transform", params, confidence=0.7, evidence=evidence), rt.execution_policy())
    assert done.status == "pending"
    return done.proposal_id


def page(user: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if user is not None:
        at.secrets["selfheal"] = {"users": USERS}
        at.session_state[SESSION_USER] = user
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception
    return at


def select_rows(at: AppTest, *positions: int) -> AppTest:
    table = next(d for d in at.dataframe if (d.key or "").startswith("appr_queue_"))
    at.session_state[table.key] = {"selection": {"rows": list(positions), "columns": [], "cells": []}}
    return run(at)


def queue_ids(at: AppTest) -> list[int]:
    table = next((d for d in at.dataframe if (d.key or "").startswith("appr_queue_")), None)
    if table is None:
        assert "Queue (0)" in texts(at.subheader)
        return []
    return [int(i) for i in table.value["id"]]


def stored(rt: EmbeddedRuntime, pid: int) -> dict[str, Any]:
    with rt.store.read() as conn:
        return queue.proposal(conn, pid)


def runs_of(rt: EmbeddedRuntime, pid: int) -> int:
    runs = ActionRunRow.__table__
    with rt.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(runs).where(runs.c.proposal_id == pid)).scalar_one())


def kinds_about(rt: EmbeddedRuntime, pid: int) -> list[tuple[str, str]]:
    with rt.store.read() as conn:
        chain = audit.chain(conn, pid)
    return list(zip(chain["kind"], chain["actor"], strict=True))


def texts(elements: Any) -> str:
    return " ".join(e.value for e in elements)


# -- the queue and the evidence ---------------------------------------------------------------------------------------
def test_a_pending_proposal_is_listed_with_its_evidence(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    at = page()
    assert at.title[0].value.endswith("Approvals")
    assert queue_ids(at) == [pid]
    assert "Select rows" in texts(at.caption)
    at = select_rows(at, 0)
    assert any(s.value.startswith(f"#{pid} · scale_workers on orders") for s in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Risk": "high", "Confidence": "0.70", "Cost": "4", "Status": "pending"}
    facts = texts(at.markdown)
    assert "resource contention at transform (slow, confidence 0.82)" in facts
    assert "add workers to absorb the load" in facts and "cpu and queue wait high" in facts
    assert len(at.get("plotly_chart")) == 2  # the Q-values of the alternatives and the incident's metrics
    assert [n.label for n in at.number_input] == ["workers", "factor"]
    assert at.number_input(key=f"appr_p{pid}_factor").value == 2.0
    assert not at.checkbox(key=f"appr_p{pid}_workers_on").value and at.number_input(key=f"appr_p{pid}_workers").disabled


def test_an_operator_approves_and_exactly_one_run_is_queued(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    at = select_rows(page("alice"), 0)
    at.button(key=f"appr_approve_{pid}").click()
    at = run(at)
    assert f"#{pid} approved" in texts(at.success)
    p = stored(rt, pid)
    assert (p["status"], p["decided_by"]) == ("approved", "alice")
    assert runs_of(rt, pid) == 1 and p["run"]["status"] in ("queued", "running", "succeeded")
    assert ("proposal_approved", "alice") in kinds_about(rt, pid)
    assert queue_ids(at) == []  # it left the pending queue; the selection was cleared with it


def test_reject_needs_a_reason_and_records_it(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    at = select_rows(page("alice"), 0)
    at.button(key=f"appr_reject_{pid}").click()
    at = run(at)
    assert "needs a reason" in texts(at.error)
    assert stored(rt, pid)["status"] == "pending"
    assert [k for k, _ in kinds_about(rt, pid)] == ["proposal_created"]

    at.text_input(key=f"appr_reason_{pid}").input("scaling during the freeze costs too much")
    at.button(key=f"appr_reject_{pid}").click()
    at = run(at)
    p = stored(rt, pid)
    assert (p["status"], p["decided_by"], p["reason"]) == ("rejected", "alice",
                                                           "scaling during the freeze costs too much")
    assert runs_of(rt, pid) == 0
    assert ("proposal_rejected", "alice") in kinds_about(rt, pid)


def test_parameters_out_of_bounds_or_contradictory_are_refused_and_change_nothing(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    at = select_rows(page("alice"), 0)
    workers = at.number_input(key=f"appr_p{pid}_workers")
    assert (workers.min, workers.max) == (1, 64)  # the browser keeps the input within the engine's bounds
    with pytest.raises(ActionParamsError, match="workers"):  # and the engine refuses what gets past it
        queue.edit_params(rt.store, OPERATOR, pid, {"workers": 100})
    at.checkbox(key=f"appr_p{pid}_workers_on").check()  # workers and factor together contradict each other
    at = run(at)
    at.number_input(key=f"appr_p{pid}_workers").set_value(8)
    at.button(key=f"appr_save_{pid}").click()
    at = run(at)
    error = texts(at.error)
    assert "Parameters refused" in error and "either workers or factor" in error
    assert stored(rt, pid)["params"] == {"factor": 2.0}
    assert [k for k, _ in kinds_about(rt, pid)] == ["proposal_created"]

    at.checkbox(key=f"appr_p{pid}_factor_on").uncheck()
    at.button(key=f"appr_save_{pid}").click()
    at = run(at)
    assert not at.error and stored(rt, pid)["params"] == {"workers": 8}
    assert ("proposal_edited", "alice") in kinds_about(rt, pid)


def test_a_viewer_sees_the_queue_but_cannot_decide(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    at = select_rows(page("vic"), 0)
    assert queue_ids(at) == [pid]
    assert VIEWER_HINT in texts(at.info)
    for name in (f"appr_approve_{pid}", f"appr_reject_{pid}", f"appr_save_{pid}"):
        assert at.button(key=name).disabled
    with pytest.raises(PermissionDenied):
        queue.approve(rt.store, VIEWER, pid)
    with pytest.raises(PermissionDenied):
        queue.reject(rt.store, VIEWER, pid, "no")
    assert stored(rt, pid)["status"] == "pending" and runs_of(rt, pid) == 0


def test_bulk_approve_refuses_a_proposal_whose_parameters_changed_after_the_operator_saw_them(
        rt: EmbeddedRuntime) -> None:
    edited = propose(rt, params={"workers": 6})
    other = propose(rt, "restart_task")
    at = select_rows(page("alice"), 0, 1)
    queue.edit_params(rt.store, Principal("bob", Role.OPERATOR), edited, {"workers": 64})  # after alice looked
    at.button(key="appr_bulk_ok").click()
    at = run(at)
    assert f"#{other}: approved" in texts(at.success)
    assert f"#{edited}" in texts(at.warning) and "parameters changed since you opened it" in texts(at.warning)
    assert stored(rt, edited)["status"] == "pending" and runs_of(rt, edited) == 0  # 64 workers never ran unseen


def test_bulk_approve_reports_each_outcome(rt: EmbeddedRuntime) -> None:
    first = propose(rt)
    second = propose(rt, "restart_task")
    at = select_rows(page("alice"), 0, 1)
    assert "2 selected" in texts(at.markdown)
    queue.approve(rt.store, Principal("bob", Role.OPERATOR), first)  # someone else is quicker
    at.button(key="appr_bulk_ok").click()
    at = run(at)
    assert texts(at.success).startswith("1 done") and f"#{second}: approved" in texts(at.success)
    warning = texts(at.warning)
    assert warning.startswith("1 not done") and f"#{first}" in warning and "already approved by bob" in warning
    assert runs_of(rt, first) == 1 and runs_of(rt, second) == 1
    assert stored(rt, second)["decided_by"] == "alice"


def test_bulk_reject_without_a_reason_changes_nothing(rt: EmbeddedRuntime) -> None:
    ids = [propose(rt), propose(rt, "restart_task")]
    at = select_rows(page("alice"), 0, 1)
    at.button(key="appr_bulk_no").click()
    at = run(at)
    assert "needs a reason" in texts(at.error)
    assert [stored(rt, i)["status"] for i in ids] == ["pending", "pending"]


def test_the_history_shows_what_ran_and_who_approved_it(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    queue.approve(rt.store, OPERATOR, pid)
    at = page()
    history = next(d.value for d in at.dataframe if "approved_by" in d.value.columns)
    assert list(history["proposal_id"]) == [pid] and list(history["approved_by"]) == ["alice"]
    assert {"worker", "status", "queued_at", "finished_at", "result"} <= set(history.columns)


# -- the policy -------------------------------------------------------------------------------------------------------
VALID = """version = 1
proposal_ttl_minutes = 30

[[auto]]
name = "retries only"
actions = ["retry_with_backoff"]
pipelines = ["orders"]
max_risk = "low"
min_confidence = 0.9
rate_limit = { count = 3, per_minutes = 60 }
"""


def test_admin_saving_an_invalid_policy_changes_nothing(rt: EmbeddedRuntime) -> None:
    path = rt.settings.policy_path
    path.write_text(VALID)
    before = rt.execution_policy()
    at = page()  # open mode: the admin "local"
    policy_box(at).input(VALID.replace('max_risk = "low"', 'max_risk = "extreme"'))
    at.button(key="appr_policy_save").click()
    at = run(at)
    error = texts(at.error)
    assert "Not saved" in error and "max_risk" in error
    assert path.read_text() == VALID and rt.execution_policy() == before

    policy_box(at).input("version = [")
    at.button(key="appr_policy_save").click()
    at = run(at)
    assert "not valid TOML" in texts(at.error) and path.read_text() == VALID


def test_admin_saves_a_valid_policy_which_takes_effect_and_is_audited(rt: EmbeddedRuntime) -> None:
    path = rt.settings.policy_path
    assert not path.exists() and rt.execution_policy() == policy.DEFAULT_POLICY
    at = page()
    policy_box(at).input(VALID)
    at.button(key="appr_policy_save").click()
    at = run(at)
    assert "Policy saved: 1 auto rule(s)" in texts(at.success)
    now = rt.execution_policy()
    assert now.proposal_ttl_minutes == 30 and [r.name for r in now.auto] == ["retries only"]
    assert 'name = "retries only"' in at.code[0].value  # the policy in force, as shown
    with rt.store.read() as conn:
        changed = audit.entries(conn, kinds=["policy_changed"])
    assert list(changed["actor"]) == ["local"] and changed["detail"][0]["after"] == VALID


def test_an_operator_cannot_change_the_policy(rt: EmbeddedRuntime) -> None:
    path = rt.settings.policy_path
    at = page("alice")
    assert policy_box(at).disabled and at.button(key="appr_policy_save").disabled
    assert ADMIN_HINT in texts(at.info)
    with pytest.raises(PermissionDenied):
        policy.save(rt.store, OPERATOR, path, VALID)
    assert not path.exists()
    with rt.store.read() as conn:
        assert audit.entries(conn, kinds=["policy_changed"]).empty


def test_the_router_lists_the_approvals_page(rt: EmbeddedRuntime) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/approvals.py")
    at = run(at)
    assert at.title[0].value.endswith("Approvals")


# -- view helpers -----------------------------------------------------------------------------------------------------
def test_a_selection_keeps_meaning_the_proposals_the_user_saw() -> None:
    same = carry_selection([3, 5, 8], [1], [3, 5, 8])
    assert (same.ids, same.rows, same.moved) == ([5], [1], False)
    shifted = carry_selection([3, 5, 8], [1, 2], [1, 3, 5, 8])  # a new proposal arrived on top
    assert (shifted.ids, shifted.rows, shifted.moved) == ([5, 8], [2, 3], True)
    gone = carry_selection([3, 5, 8], [0, 1], [5, 8])  # #3 was decided elsewhere: still acted on, not shown
    assert (gone.ids, gone.rows, gone.moved) == ([3, 5], [0], True)


def test_parameter_widgets_carry_the_engine_bounds() -> None:
    fields = {f.name: f for f in param_fields("retry_with_backoff")}
    assert set(fields) == {"base_s", "cap_s", "factor", "max_attempts"}
    assert (fields["max_attempts"].kind, fields["max_attempts"].min_value, fields["max_attempts"].max_value) == \
        (int, 1, 20)
    assert fields["base_s"].min_value is None and "> 0" in fields["base_s"].help
    assert param_fields("restart_task") == []


def test_the_evidence_window_is_anchored_at_the_simulated_minute_of_the_proposal(rt: EmbeddedRuntime) -> None:
    pid = propose(rt)
    with rt.store.read() as conn:
        p = queue.proposal(conn, pid)
        window = evidence_window(conn, p)
        _, last = repo.health_span(conn)
    at_time = datetime.fromisoformat(p["evidence"]["sim_time"])
    assert window is not None and window.at == at_time and window.stage.value == "transform"
    assert (window.start, window.end) == (at_time - timedelta(minutes=60), min(at_time + timedelta(minutes=30),
                                                                              last + timedelta(minutes=1)))
    chat = {**p, "evidence": {"reason": "asked in the chat"}, "incident_id": None}
    with rt.store.read() as conn:
        fallback = evidence_window(conn, chat)
    assert fallback is not None and fallback.at is None and fallback.end == last + timedelta(minutes=1)


def test_a_link_or_the_picker_opens_one_proposal_without_touching_the_table(rt: EmbeddedRuntime) -> None:
    first, second = propose(rt), propose(rt, action="remap_schema")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["proposal"] = str(second)
    at = run(at)
    assert at.selectbox(key="appr_open").value == second
    assert any(s.value.startswith(f"#{second} · remap_schema on orders / transform") for s in at.subheader)
    at.selectbox(key="appr_open").set_value(first)
    at = run(at)
    assert any(s.value.startswith(f"#{first} · scale_workers on orders / transform") for s in at.subheader)
    assert at.button(key=f"appr_approve_{first}").disabled is False
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["proposal"] = "not-a-number"
    at = run(at)
    assert at.selectbox(key="appr_open").value is None  # a bad link opens nothing and breaks nothing


def test_approving_what_someone_else_just_edited_is_refused_on_the_page(rt: EmbeddedRuntime) -> None:
    pid = propose(rt, params={"workers": 4})
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["proposal"] = str(pid)
    at = run(at)  # olga (open-mode admin here) sees 4 workers …
    queue.edit_params(rt.store, Principal("bob", Role.OPERATOR), pid, {"workers": 16})  # … bob changes it
    at.button(key=f"appr_approve_{pid}").click()
    at = run(at)
    assert any("parameters changed since you opened it" in e.value for e in at.error)
    with rt.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(ActionRunRow.__table__)).scalar_one() == 0
    at.button(key=f"appr_approve_{pid}").click()  # having seen 16 now, the approval goes through
    at = run(at)
    assert not at.error
    with rt.store.read() as conn:
        assert queue.proposal(conn, pid)["run"]["params"] == {"workers": 16}


def policy_box(at: AppTest):
    """The policy editor (its key follows the file's content, so find it by label)."""
    [box] = [t for t in at.text_area if t.label == "Policy (TOML)"]
    return box


def test_the_policy_editor_follows_a_file_changed_elsewhere(rt: EmbeddedRuntime, quiet: Path) -> None:
    at = page()
    before = policy_box(at).value
    rt.settings.policy_path.write_text('version = 1\nproposal_ttl_minutes = 30\n', encoding="utf-8")
    at = run(at)
    assert policy_box(at).value != before and "proposal_ttl_minutes = 30" in policy_box(at).value
