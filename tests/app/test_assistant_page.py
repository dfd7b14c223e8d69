"""AppTest for the Assistant page: ask, see the streamed answer and its tool steps, propose a fix, follow up.

Each test has its own SQLite store and a twin that only moves when the test advances it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from console.auth import SESSION_USER
from console.services import get_runtime, get_settings
from engine.security.users import hash_password
from engine.service import audit
from engine.service.runtime import EmbeddedRuntime
from engine.store.tables import ActionRunRow, ProposalRow

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "console" / "app.py")
PAGE = str(ROOT / "pages" / "assistant.py")
TIMEOUT = 60


@pytest.fixture
def runtime(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedRuntime]:
    """A small fleet with an hour of history and schema drift on the orders Glue job."""
    monkeypatch.setenv("SELFHEAL_LIVE", "false")
    monkeypatch.setenv("SELFHEAL_BACKFILL_MINUTES", "60")
    monkeypatch.setenv("SELFHEAL_FLEET_SIZE", "4")
    for name in ("SELFHEAL_ASSISTANT_BACKEND", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    rt = get_runtime(get_settings())
    rt.inject_fault("orders", "transform", "schema_drift")
    rt.advance(5)
    yield rt
    get_runtime.clear()


USERS = {"olga": {"password_hash": hash_password("pw-olga", rounds=4), "role": "operator"},
         "vic": {"password_hash": hash_password("pw-vic", rounds=4), "role": "viewer"}}


def page(llm: dict | None = None, user: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.secrets["llm"] = llm or {"backend": "offline"}
    if user is not None:
        at.secrets["selfheal"] = {"users": USERS}
        at.session_state[SESSION_USER] = user
    at.run()
    assert not at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="assistant_input").set_value(question).run()
    assert not at.exception
    return at


def proposals(runtime: EmbeddedRuntime, origin: str | None = "chat") -> list[dict]:
    """The chat's proposals (the live agent files its own, origin "agent", for the same incident); all with None."""
    t = ProposalRow.__table__
    q = select(t) if origin is None else select(t).where(t.c.origin == origin)
    with runtime.store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def assistant_text(at: AppTest) -> str:
    return "\n".join(m.value for msg in at.chat_message if msg.name == "assistant" for m in msg.markdown)


def test_asking_shows_the_answer_its_steps_and_its_window(runtime: EmbeddedRuntime) -> None:
    at = page()
    assert "Assistant" in at.title[0].value
    assert "offline analyst" in at.caption[0].value
    ask(at, "how many errors has the orders glue job thrown in the last hour?")
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    text = assistant_text(at)
    assert "`glue-orders-transform` (orders / transform)" in text and "error events" in text
    assert "_Window: last 1 h" in text
    assert any("count_errors" in s.label for s in at.status)  # the tool call, as an expandable step
    assert not at.error


def test_propose_this_fix_files_a_pending_chat_proposal(runtime: EmbeddedRuntime) -> None:
    at = ask(page(), "why is orders failing?")
    assert "schema drift" in assistant_text(at)
    assert at.get("plotly_chart")  # the metric that moved most, around the incident
    assert proposals(runtime) == []  # explaining files nothing
    button = at.button(key="assistant_propose_1")
    assert button.label == "Propose this fix: remap schema on orders/transform"
    button.click().run()
    assert not at.exception
    # The live agent (the runbook) has proposed the same fix already: the chat points at it, never a second one.
    [row] = [p for p in proposals(runtime, origin=None) if p["action"] == "remap_schema"]
    assert (row["pipeline_id"], row["origin"], row["status"]) == ("orders", "agent", "pending")
    assert any(f"Already queued proposal #{row['id']}" in s.value for s in at.success)
    assert not [b for b in at.button if b.key == "assistant_propose_1"]  # filed once, no second button
    with runtime.store.read() as conn:
        assert conn.execute(select(ActionRunRow.__table__)).all() == []  # nothing ran


def test_a_viewer_cannot_propose_from_the_chat_and_an_operators_proposal_names_them(runtime: EmbeddedRuntime,
                                                                                    ) -> None:
    at = ask(page(user="vic"), "why is orders failing?")
    assert at.button(key="assistant_propose_1").disabled
    at = ask(at, "please restart the orders glue job")
    assert proposals(runtime) == []  # the tool itself refuses: the disabled button is not the only guard
    assert any(s.label.startswith("propose_action(") and s.label.endswith("→ error") for s in at.status)
    assert any("vic (viewer) may not propose fixes" in t.value for t in at.text)
    ask(page(user="olga"), "please restart the orders glue job")
    [row] = proposals(runtime)
    assert row["evidence"]["requested_by"] == "olga"
    with runtime.store.read() as conn:
        created = audit.entries(conn, kinds=["proposal_created"], subject=f"proposal:{row['id']}")
    assert created["actor"].tolist() == ["olga"]


def test_a_fix_request_is_queued_from_the_chat(runtime: EmbeddedRuntime) -> None:
    at = ask(page(), "please restart the orders glue job")
    [row] = proposals(runtime)
    assert (row["action"], row["stage"]) == ("restart_task", "transform")
    assert any("waiting for an operator's approval" in s.value for s in at.success)


def test_follow_up_buttons_ask_the_next_question_and_history_stays(runtime: EmbeddedRuntime) -> None:
    at = ask(page(), "average cpu of the orders glue job over the last hour")
    follow = at.button(key="assistant_follow_1_0")
    follow.click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    assert at.chat_message[2].markdown[0].value == follow.label
    assert at.session_state["assistant_history"][-1]["answer"].tool_calls


def test_a_broken_llm_configuration_falls_back_to_the_offline_analyst(runtime: EmbeddedRuntime) -> None:
    at = page({"backend": "openai", "model": "gpt-test"})  # no key, no base URL
    assert "needs OPENAI_API_KEY" in at.warning[0].value
    ask(at, "how is the fleet doing?")
    assert "pipelines at the newest minute" in assistant_text(at)


def test_the_configured_model_is_described_without_its_key(runtime: EmbeddedRuntime) -> None:
    at = page({"backend": "openai", "model": "gpt-test", "api_key": "sk-page-secret-0123456789",
               "base_url": "http://user:pw@llm.internal:8000/v1"})
    shown = " ".join(c.value for c in at.caption)
    assert "gpt-test at http://llm.internal:8000" in shown
    assert "sk-page-secret" not in shown and "pw@" not in shown


def test_the_router_lists_the_assistant(runtime: EmbeddedRuntime) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("../pages/assistant.py").run()
    assert not at.exception
    assert "Assistant" in at.title[0].value
