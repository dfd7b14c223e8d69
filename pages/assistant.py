"""Assistant: ask about metrics, errors, incidents and root causes; fixes are proposed, never run."""

from __future__ import annotations

import streamlit as st

from console.assistant_panel import (
    PENDING_KEY,
    assistant_backend,
    history,
    render_answer,
    render_extras,
    stream_answer,
    turns,
)
from console.auth import current_principal
from console.services import runtime_or_stop

settings, runtime = runtime_or_stop()
backend, config, warning = assistant_backend(runtime.store, current_principal())

st.title(":material/forum: Assistant", anchor=False)
st.caption("Answers come from the fleet's telemetry in the store; relative windows (“last 2 hours”) count back "
           "from the newest minute. Fixes are queued as proposals for an operator's approval, never run from here. "
           f"Answering with the {config.describe() if config else 'offline analyst'}.")
if warning:
    st.warning(warning, icon=":material/settings_alert:")

entries = history()
if not entries:
    st.info("Try: *What was the average CPU of the orders Glue job over the last 24 h?* · *How many errors has the "
            "payments DAG thrown in the last 2 hours?* · *Any incidents today?* · *Why is orders failing?*",
            icon=":material/lightbulb:")

for i, entry in enumerate(entries):
    with st.chat_message(entry["role"]):
        if entry["role"] == "user":
            st.markdown(entry["text"])
        else:
            render_answer(runtime.store, i, entry)

typed = st.chat_input("Ask about the fleet…", key="assistant_input", max_chars=2000)
question = typed or st.session_state.pop(PENDING_KEY, None)
if question:
    past = turns(entries)
    entries.append({"role": "user", "text": question})
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        answer = stream_answer(backend, question, past)
        if answer is not None:
            entries.append({"role": "assistant", "answer": answer, "question": question})
            render_extras(runtime.store, len(entries) - 1, entries[-1])
