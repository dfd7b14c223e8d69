"""App tests for the Audit log page: filters narrow the rows, the CSV export round-trips, a chain in order."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.execution import queue
from engine.execution.queue import ProposalRequest
from engine.security.roles import Principal, Role, agent
from engine.service import audit
from engine.service.runtime import EmbeddedRuntime

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "audit.py")
APP = str(ROOT / "console" / "app.py")
ALICE = Principal("alice", Role.OPERATOR)


@pytest.fixture
def rt(console_env: Path, monkeypatch: pytest.MonkeyPatch) -> EmbeddedRuntime:
    monkeypatch.setenv("SELFHEAL_AGENT_POLICY", "none")
    from console.services import get_runtime, get_settings

    return get_runtime(get_settings())


def propose(rt: EmbeddedRuntime, action: str, params: dict | None = None) -> int:
    with rt.store.transaction() as conn:
        return queue.propose(conn, agent("rules"), ProposalRequest("orders", action, "transform", params or {},
                                                                   confidence=0.7), rt.execution_policy()).proposal_id


@pytest.fixture
def history(rt: EmbeddedRuntime) -> tuple[int, int]:
    """Two proposals: one edited then approved (its run queued), one rejected."""
    approved = propose(rt, "scale_workers", {"factor": 2.0})
    rejected = propose(rt, "restart_task")
    queue.edit_params(rt.store, ALICE, approved, {"workers": 6})
    queue.approve(rt.store, ALICE, approved, reason="surge on orders")
    queue.reject(rt.store, Principal("bob", Role.OPERATOR), rejected, "the task is not hung")
    return approved, rejected


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception
    return at


def entries_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "subject" in d.value.columns and "kind" in d.value.columns)


def test_filters_narrow_the_rows_newest_first(rt: EmbeddedRuntime, history: tuple[int, int]) -> None:
    approved, rejected = history
    at = run(AppTest.from_file(PAGE, default_timeout=60))
    assert at.title[0].value.endswith("Audit log")
    with rt.store.read() as conn:
        total = len(audit.entries(conn))
    every = entries_table(at)
    assert len(every) == total >= 5 and list(every["id"]) == sorted(every["id"], reverse=True)

    at.multiselect(key="audit_kind").select("proposal_rejected")
    at = run(at)
    rows = entries_table(at)
    assert list(rows["subject"]) == [f"proposal:{rejected}"] and list(rows["actor"]) == ["bob"]
    assert json.loads(rows["detail"][0]) == {"reason": "the task is not hung"}

    at.multiselect(key="audit_kind").unselect("proposal_rejected")
    at.multiselect(key="audit_actor").select("alice")
    at = run(at)
    assert set(entries_table(at)["kind"]) == {"proposal_edited", "proposal_approved"}

    at.multiselect(key="audit_actor").unselect("alice")
    at.text_input(key="audit_subject").input(f"PROPOSAL:{approved}")
    at = run(at)
    assert set(entries_table(at)["subject"]) == {f"proposal:{approved}"}
    assert len(entries_table(at)) == 3  # created, edited, approved

    at.selectbox(key="audit_window").select("Last hour")
    at = run(at)
    assert len(entries_table(at)) == 3
    at.selectbox(key="audit_window").select("Between dates")
    at = run(at)
    at.date_input(key="audit_dates").set_value((pd.Timestamp("2020-01-01").date(), pd.Timestamp("2020-01-02").date()))
    at = run(at)
    assert "No entries match" in at.info[0].value and at.download_button(key="audit_csv").disabled


def test_the_csv_export_parses_back_to_the_filtered_rows(rt: EmbeddedRuntime, history: tuple[int, int]) -> None:
    at = run(AppTest.from_file(PAGE, default_timeout=60))
    at.multiselect(key="audit_actor").select("alice")
    at = run(at)
    button = at.download_button(key="audit_csv")
    assert not button.disabled and button.label == "Export CSV"
    shown = entries_table(at)
    with rt.store.read() as conn:  # the page hands exactly this frame to the download button
        frame = audit.entries(conn, actors=["alice"])
    parsed = pd.read_csv(io.BytesIO(audit.to_csv(frame)))
    assert list(parsed.columns) == audit.COLUMNS
    assert list(parsed["id"]) == list(shown["id"]) and list(parsed["kind"]) == list(shown["kind"])
    assert [json.loads(d) for d in parsed["detail"]] == list(frame["detail"])
    assert list(pd.to_datetime(parsed["ts"], utc=True)) == list(pd.to_datetime(frame["ts"], utc=True))


def test_the_chain_of_one_proposal_is_in_order(rt: EmbeddedRuntime, history: tuple[int, int]) -> None:
    approved, _ = history
    rt.advance(2)  # the embedded worker picks the run up and hands it to the twin
    at = run(AppTest.from_file(PAGE, default_timeout=60))
    at.number_input(key="audit_chain_id").set_value(approved)
    at = run(at)
    assert len(at.dataframe) == 1 and len(at.table) == 1  # the log as a grid, the chain as a plain table below
    chain = at.table[0].value
    kinds = list(chain["What"])
    assert kinds[:3] == ["proposal_created", "proposal_edited", "proposal_approved"]
    assert "action_started" in kinds and kinds.index("action_started") > 2
    assert list(chain.index) == sorted(chain.index)
    run_id = json.loads(chain["Detail"].iloc[2])["run_id"]
    assert set(chain["About"].iloc[3:]) == {f"run:{run_id}"}


def test_the_router_lists_the_audit_page(rt: EmbeddedRuntime) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/audit.py")
    at = run(at)
    assert at.title[0].value.endswith("Audit log")
