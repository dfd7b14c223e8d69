"""The Assistant page's widgets: the configured backend, a streamed answer with its tool steps, charts,
follow-up questions and the "Propose this fix" button. The conversation lives in `st.session_state` under
``assistant_*`` keys (UI state only; proposals go to the store).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from console.auth import current_principal
from engine.assistant import AssistantBackend, AssistantConfig, load_assistant_config, make_backend
from engine.assistant.backend import file_suggestion
from engine.assistant.results import Answer, ChartSpec, Done, TextDelta, ToolCall, ToolStatus, ToolStep, Turn
from engine.errors import ConfigError, SelfhealError
from engine.security.roles import Permission, Principal
from engine.store.db import Store

log = logging.getLogger(__name__)
HISTORY_KEY = "assistant_history"
PENDING_KEY = "assistant_pending"
_STATUS_ICON = {ToolStatus.SUCCESS: ":material/check_circle:", ToolStatus.NO_DATA: ":material/info:",
                ToolStatus.ERROR: ":material/error:", ToolStatus.APPROVAL_REQUIRED: ":material/pending_actions:"}


def _llm_secrets() -> dict[str, Any]:
    """The ``[llm]`` table of Streamlit secrets, or nothing when there is no secrets file or table."""
    try:
        table = st.secrets.get("llm")
    except FileNotFoundError:  # StreamlitSecretNotFoundError: no secrets.toml at all
        return {}
    return dict(table) if table else {}


def assistant_backend(store: Store, principal: Principal,
                      ) -> tuple[AssistantBackend, AssistantConfig | None, str | None]:
    """(backend, its config, a warning to show) answering for `principal` (whose role decides whether a fix may be
    proposed; the audit log names them). A bad LLM configuration falls back to the offline analyst."""
    try:
        config = load_assistant_config(**_llm_secrets())
        return make_backend(store, config, actor=principal.label, principal=principal), config, None
    except ConfigError as e:
        return make_backend(store, AssistantConfig(backend="offline"), actor=principal.label, principal=principal), \
            None, f"{e}. Answering with the offline analyst instead."


def history() -> list[dict[str, Any]]:
    return st.session_state.setdefault(HISTORY_KEY, [])


def turns(entries: list[dict[str, Any]]) -> list[Turn]:
    out = []
    for e in entries:
        if e["role"] == "user":
            out.append(Turn("user", e["text"]))
        elif e.get("answer") is not None:
            out.append(e["answer"].as_turn())
    return out


def ask_later(question: str) -> None:
    """A follow-up button's callback: the next run asks `question`."""
    st.session_state[PENDING_KEY] = question


def _file(store: Store, index: int) -> None:
    """The "Propose this fix" callback: queue the suggestion of answer `index` (validated, audited)."""
    entry = history()[index]
    answer: Answer = entry["answer"]
    if answer.suggestion is None:
        return
    try:
        principal = current_principal()
        call = file_suggestion(store, answer.suggestion, actor=principal.label, question=entry.get("question", ""),
                               principal=principal)
    except SelfhealError as e:  # call_tool never raises; this guards the import-time store handle only
        entry["filed"] = {"ok": False, "text": str(e)}
        return
    entry["filed"] = {"ok": call.result.status is ToolStatus.APPROVAL_REQUIRED, "text": call.result.text,
                      "proposal_id": call.result.data.get("proposal_id")}


def render_step(container: Any, call: ToolCall) -> None:
    """One tool call as a collapsed status box: arguments and the result's short text."""
    args = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in call.arguments.items()
                     if k not in ("reason",))
    state = "error" if call.result.status is ToolStatus.ERROR else "complete"
    with container.status(f"{call.name}({args[:120]}) → {call.result.status.value}", state=state, expanded=False):
        st.markdown(_STATUS_ICON[call.result.status])
        st.text(call.result.text)  # tool text carries log lines: shown as plain text, never as markdown
        if call.result.window:
            st.caption(f"Window: {call.result.window}")


def chart_figure(spec: ChartSpec) -> go.Figure:
    frame = pd.DataFrame(spec.rows)
    if spec.kind == "bar":
        fig = px.bar(frame, x=spec.x, y=spec.y, title=spec.title)
    else:
        frame[spec.x] = pd.to_datetime(frame[spec.x])
        fig = px.line(frame, x=spec.x, y=spec.y, color=spec.color, title=spec.title)
        for mark in spec.markers:
            fig.add_vline(x=pd.Timestamp(mark["x"]).to_pydatetime().timestamp() * 1000, line_dash="dot",
                          annotation_text=mark["label"])
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, yaxis_title=spec.y_label or spec.y,
                      xaxis_title=None, legend_title=None)
    return fig


def render_extras(store: Store, index: int, entry: dict[str, Any]) -> None:
    """Chart, the "Propose this fix" button (or what it filed), and follow-up questions of answer `index`."""
    answer: Answer = entry["answer"]
    if answer.chart is not None and answer.chart.rows:
        st.plotly_chart(chart_figure(answer.chart), key=f"assistant_chart_{index}")
    filed = entry.get("filed")
    if answer.proposal is not None:
        st.success(f"Proposal #{answer.proposal['proposal_id']} is waiting for an operator's approval.",
                   icon=":material/pending_actions:")
    elif filed is not None:
        if filed["ok"]:
            st.success(filed["text"], icon=":material/pending_actions:")
        else:
            st.error(f"Could not propose the fix: {filed['text']}", icon=":material/error:")
    elif answer.suggestion is not None:
        may = current_principal().can(Permission.PROPOSE)
        st.button(f"Propose this fix: {answer.suggestion.describe()}", key=f"assistant_propose_{index}",
                  icon=":material/add_task:", type="primary", on_click=_file, args=(store, index), disabled=not may,
                  help="Queues the fix for an operator's approval. Nothing runs from here." if may else
                  "Viewers cannot propose fixes; ask an operator.")
    follow_ups = [q for q in answer.follow_ups
                  if not (q.startswith("Propose") and (filed is not None or answer.proposal is not None))]
    if follow_ups:
        cols = st.columns(len(follow_ups))
        for k, (col, question) in enumerate(zip(cols, follow_ups, strict=True)):
            col.button(question, key=f"assistant_follow_{index}_{k}", icon=":material/subdirectory_arrow_right:",
                       type="tertiary", on_click=ask_later, args=(question,))


def render_answer(store: Store, index: int, entry: dict[str, Any]) -> None:
    """An answer from the history, as it was streamed: steps, text, extras."""
    answer: Answer = entry["answer"]
    steps = st.container()
    for call in answer.tool_calls:
        render_step(steps, call)
    st.markdown(answer.text)
    if answer.error:
        st.caption(f"Backend: {answer.backend}; the model call failed.")
    render_extras(store, index, entry)


def stream_answer(backend: AssistantBackend, question: str, past: list[Turn]) -> Answer | None:
    """Stream an answer into the current chat message: tool steps as they run, then the text."""
    steps = st.container()
    final: dict[str, Answer] = {}

    def text() -> Iterator[str]:
        for event in backend.stream(question, past):
            if isinstance(event, ToolStep):
                render_step(steps, event.call)
            elif isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, Done):
                final["answer"] = event.answer

    try:
        st.write_stream(text())
    except SelfhealError as e:
        st.error(f"The assistant could not read the store: {e}", icon=":material/database_off:")
        st.info("Check the runtime status in the sidebar, then ask again.", icon=":material/lightbulb:")
        return None
    return final.get("answer")
