"""Audit log: every proposal, decision, execution and outcome (who, when, why), filterable and exportable as CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from console.services import runtime_or_stop
from engine.errors import SelfhealError
from engine.service import audit

WINDOWS = {"Everything": None, "Last hour": 60, "Last 24 hours": 1440, "Last 7 days": 7 * 1440, "Between dates": -1}

settings, runtime = runtime_or_stop()
st.title(":material/history: Audit log", anchor=False)
st.caption("Append-only: the console and the engine can add entries but never change or delete one (the database "
           "refuses it). Times are wall-clock UTC; `sim_time` in a detail is the staging twin's simulated time.")

try:
    with runtime.store.read() as conn:
        actors, kinds = audit.facets(conn)
except SelfhealError as e:
    st.error(f"Could not read the audit log: {e}", icon=":material/database_off:")
    st.info("Check that the store is reachable, then reload the page.", icon=":material/lightbulb:")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
chosen_actors = c1.multiselect("Actor", actors, key="audit_actor")
chosen_kinds = c2.multiselect("Kind", kinds, key="audit_kind")
subject = c3.text_input("Subject contains", key="audit_subject", placeholder="proposal:12, run:5, pipeline:orders")
window = c4.selectbox("When", list(WINDOWS), key="audit_window")
start = end = None
if WINDOWS[window] == -1:
    today = datetime.now(UTC).date()
    picked = st.date_input("Between (UTC, inclusive)", value=(today - timedelta(days=7), today), key="audit_dates")
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    if days:  # one date picked so far (the second click is still to come): that day alone
        start = datetime.combine(days[0], time.min, UTC)
        end = datetime.combine(days[-1], time.min, UTC) + timedelta(days=1)
        if len(days) == 1:
            st.caption(f"Showing {days[0]:%Y-%m-%d} only; pick the second date for a range.")
elif WINDOWS[window] is not None:
    start = datetime.now(UTC) - timedelta(minutes=WINDOWS[window])

with runtime.store.read() as conn:
    rows = audit.entries(conn, actors=chosen_actors, kinds=chosen_kinds, subject=subject, start=start, end=end)
left, right = st.columns([3, 1], vertical_alignment="bottom")
left.subheader(f"Entries ({len(rows):,}, newest first)", anchor=False)
right.download_button("Export CSV", data=audit.to_csv(rows), file_name="selfheal-audit.csv", mime="text/csv",
                      icon=":material/download:", key="audit_csv", disabled=rows.empty,
                      help="The filtered rows, with each detail as JSON.")
if rows.empty:
    st.info("No entries match these filters.", icon=":material/filter_alt_off:")
else:
    shown = rows.assign(detail=[json.dumps(d, sort_keys=True, default=str) for d in rows["detail"]])
    st.dataframe(shown, hide_index=True, width="stretch", key="audit_table",
                 column_config={"id": st.column_config.NumberColumn("#", format="%d"),
                                "ts": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss")})

st.subheader("The chain of one proposal", anchor=False)
st.caption("Proposed, edited, decided, started, finished: every entry about a proposal and its run, oldest first.")
pid = st.number_input("Proposal #", min_value=1, step=1, value=None, key="audit_chain_id")
if pid is not None:
    with runtime.store.read() as conn:
        trail = audit.chain(conn, int(pid))
    if trail.empty:
        st.info(f"No entries about proposal #{int(pid)}.", icon=":material/search_off:")
    else:
        # A short story, read top to bottom: a plain table (selectable, printable) rather than a grid.
        st.table(pd.DataFrame({
            "When (UTC)": [f"{pd.Timestamp(t):%Y-%m-%d %H:%M:%S}" for t in trail["ts"]],
            "Who": trail["actor"], "What": trail["kind"], "About": trail["subject"],
            "Detail": [json.dumps(d, sort_keys=True, default=str) for d in trail["detail"]]}).set_index("When (UTC)"))
