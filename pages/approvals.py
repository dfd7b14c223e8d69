"""Approvals: the proposal queue with filters, each proposal's evidence, decisions, what ran, and the policy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import streamlit as st

from console import approvals_panel as panel
from console.auth import current_principal
from console.services import runtime_or_stop
from engine.errors import ActionParamsError, ConflictError, NotFoundError, PermissionDenied, PolicyError, SelfhealError
from engine.execution import policy, queue
from engine.service.approvals_view import evidence_window
from engine.service.reports import anomaly_view

settings, runtime = runtime_or_stop()
principal = current_principal()
deciding = panel.can_decide(principal)
st.title(":material/fact_check: Approvals", anchor=False)
st.caption("What the agent (or the chat) wants to run waits here unless the policy below lets it run on its own. "
           "Approving queues the action exactly once; a rejection, with its reason, teaches the agent a penalty. "
           "Proposals nobody decides expire.")


def flash(level: str, text: str) -> None:
    st.session_state.setdefault("appr_flash", []).append((level, text))


def clear_selection() -> None:
    st.session_state["appr_version"] = st.session_state.get("appr_version", 0) + 1
    st.session_state.pop("appr_shown", None)


def attempt(call: Callable[[], Any]) -> Any | None:
    """Run one engine call; on a refusal show why and what to do (nothing has changed then)."""
    try:
        return call()
    except PermissionDenied as e:
        st.error(f"Not allowed: {e}", icon=":material/block:")
    except ConflictError as e:
        st.error(f"Too late: {e}", icon=":material/sync_problem:")
        st.caption("Someone (or the policy, or the expiry clock) decided it first. Nothing was changed.")
    except ActionParamsError as e:
        st.error(f"Parameters refused: {e}", icon=":material/tune:")
        st.caption("Nothing was changed. Keep each parameter within the bounds shown in its help.")
    except NotFoundError as e:
        st.error(str(e), icon=":material/search_off:")
    except SelfhealError as e:
        st.error(str(e), icon=":material/error:")
    return None


for level, text in st.session_state.pop("appr_flash", []):
    getattr(st, level)(text, icon=":material/check_circle:" if level == "success" else ":material/warning:")
if not deciding:
    st.info(panel.VIEWER_HINT, icon=":material/visibility:")

# -- the queue ------------------------------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns(4)
statuses = c1.multiselect("Status", panel.STATUSES, default=["pending"], key="appr_status")
pipelines = c2.multiselect("Pipeline", [p.id for p in runtime.pipelines()], key="appr_pipeline")
origins = c3.multiselect("Origin", panel.ORIGINS, key="appr_origin")
risks = c4.multiselect("Risk", panel.RISKS, key="appr_risk")
try:
    with runtime.store.read() as conn:
        frame = queue.proposals(conn, statuses=statuses, pipelines=pipelines, origins=origins, risks=risks)
except SelfhealError as e:
    st.error(f"Could not read the queue: {e}", icon=":material/database_off:")
    st.info("Check that the store is reachable, then reload the page.", icon=":material/lightbulb:")
    st.stop()

table = panel.queue_table(frame)
# The parameters shown in the run the user acted on: a bulk approval holds each proposal to them.
seen_params = st.session_state.get("appr_seen_params", {})
st.session_state["appr_seen_params"] = {int(i): dict(p or {}) for i, p in zip(frame["id"], frame["params"],
                                                                            strict=True)}
ids = [int(i) for i in table["id"]]
key = f"appr_queue_{st.session_state.get('appr_version', 0)}"
rows = list((st.session_state.get(key) or {}).get("selection", {}).get("rows", []))
selection = panel.carry_selection(st.session_state.get("appr_shown"), rows, ids)
if selection.moved:  # the queue changed under the selection: draw it afresh where those proposals are now
    clear_selection()
    key = f"appr_queue_{st.session_state['appr_version']}"
st.session_state["appr_shown"] = ids

head, refresh = st.columns([5, 1], vertical_alignment="bottom")
head.subheader(f"Queue ({len(table)})", anchor=False)
refresh.button("Refresh", icon=":material/refresh:", key="appr_refresh", help="Read the queue again (new proposals, "
               "decisions by others, expiries).")
if table.empty:
    st.success("Nothing matches these filters.", icon=":material/check_circle:")
else:
    st.dataframe(table, key=key, on_select="rerun", selection_mode="multi-row", hide_index=True, width="stretch",
                 selection_default={"selection": {"rows": selection.rows}} if selection.moved else None,
                 column_config={
                     "id": st.column_config.NumberColumn("#", format="%d"),
                     "created_at": st.column_config.DatetimeColumn("Proposed (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                     "expires_at": st.column_config.DatetimeColumn("Expires (UTC)", format="HH:mm"),
                     "confidence": st.column_config.NumberColumn("Confidence", format="%.2f")})
    st.caption("Select rows to see a proposal's evidence and to act on several at once.")

if len(selection.ids) > 1:
    with st.container(border=True):
        st.markdown(f"**{len(selection.ids)} selected:** " + ", ".join(f"#{i}" for i in selection.ids))
        reason = st.text_input("Reason (required to reject)", key="appr_bulk_reason", disabled=not deciding)
        b1, b2 = st.columns(2)
        bulk_ok = b1.button(f"Approve {len(selection.ids)} selected", icon=":material/done_all:", key="appr_bulk_ok",
                            disabled=not deciding, help=None if deciding else panel.VIEWER_HINT)
        bulk_no = b2.button(f"Reject {len(selection.ids)} selected", icon=":material/block:", key="appr_bulk_no",
                            disabled=not deciding, help=None if deciding else panel.VIEWER_HINT)
        if bulk_no and not reason.strip():
            st.error("A rejection needs a reason: say why, so the agent and the auditors learn from it.",
                     icon=":material/edit_note:")
        elif bulk_ok or bulk_no:
            outcomes = attempt(lambda: queue.decide_many(runtime.store, principal, selection.ids,
                                                         approve_them=bulk_ok, reason=reason,
                                                         expected={i: seen_params[i] for i in selection.ids
                                                                   if i in seen_params}))
            if outcomes is not None:
                done, failed = panel.outcome_lines(outcomes)
                if done:
                    flash("success", f"{len(done)} done: " + "; ".join(done))
                if failed:
                    flash("warning", f"{len(failed)} not done: " + "; ".join(failed))
                clear_selection()
                st.rerun()


def decide(proposal: dict[str, Any]) -> None:
    """Approve, reject, or edit the parameters of one pending proposal."""
    pid = proposal["id"]
    fields = panel.param_fields(proposal["action"])
    current = proposal.get("params") or {}
    # What this operator saw when they clicked is what the last run drew; the engine refuses to decide if the
    # parameters changed since (someone else's edit), so what runs is what was approved.
    seen_key = f"appr_seen_{pid}"
    seen = st.session_state.get(seen_key, current)
    st.session_state[seen_key] = current
    if fields:
        st.markdown("**Parameters**")
        values: dict[str, Any] = {}
        cols = st.columns(len(fields))
        for col, f in zip(cols, fields, strict=True):
            k = f"appr_p{pid}_{f.name}"
            given = col.checkbox(f"set {f.name}", value=f.name in current, key=f"{k}_on", disabled=not deciding)
            if f.kind is bool:
                value: Any = col.toggle(f.name, value=bool(current.get(f.name)), key=k, help=f.help,
                                        disabled=not deciding or not given)
            else:
                cast = f.kind
                start = current.get(f.name, f.min_value if f.min_value is not None else 1)
                value = col.number_input(
                    f.name, value=cast(start), min_value=None if f.min_value is None else cast(f.min_value),
                    max_value=None if f.max_value is None else cast(f.max_value), step=1 if cast is int else 0.1,
                    key=k, help=f.help, disabled=not deciding or not given)
            if given:
                values[f.name] = value
        save = st.button("Save parameters", icon=":material/tune:", key=f"appr_save_{pid}", disabled=not deciding,
                         help=panel.VIEWER_HINT if not deciding else "Only the ticked parameters are kept.")
        if save and attempt(lambda: queue.edit_params(runtime.store, principal, pid, values,
                                                                 expected_params=seen)) is not None:
            flash("success", f"#{pid}: parameters saved ({panel.compact(values) or 'none'}).")
            st.rerun()
    a, r = st.columns(2)
    if a.button("Approve", type="primary", icon=":material/check:", key=f"appr_approve_{pid}", disabled=not deciding,
                help=panel.VIEWER_HINT if not deciding else "Queues the action once with the saved parameters."):
        done = attempt(lambda: queue.approve(runtime.store, principal, pid, expected_params=seen))
        if done is not None:
            flash("success", f"#{pid} approved: run #{done.run_id} queued.")
            clear_selection()
            st.rerun()
    reason = r.text_input("Reason for rejecting", key=f"appr_reason_{pid}", disabled=not deciding)
    if r.button("Reject", icon=":material/block:", key=f"appr_reject_{pid}", disabled=not deciding,
                help=panel.VIEWER_HINT if not deciding else None):
        if not reason.strip():
            st.error("A rejection needs a reason: say why, so the agent and the auditors learn from it.",
                     icon=":material/edit_note:")
        elif attempt(lambda: queue.reject(runtime.store, principal, pid, reason)) is not None:
            flash("success", f"#{pid} rejected.")
            clear_selection()
            st.rerun()


def evidence(pid: int) -> None:
    """One proposal: what it would do, why, the alternatives, the incident's metrics, and its fate."""
    try:
        with runtime.store.read() as conn:
            p = queue.proposal(conn, pid)
            window = evidence_window(conn, p)
        view = None if window is None else anomaly_view(runtime.store, window.pipeline_id, window.stage,
                                                        window.start, window.end, alarm_at=runtime.scorer.alarm_at)
    except SelfhealError as e:
        st.error(f"Could not read proposal #{pid}: {e}", icon=":material/database_off:")
        return
    st.subheader(f"#{pid} · {p['action']} on {p['pipeline_id']} / {p['stage']}", anchor=False)
    facts = panel.evidence_facts(p)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Risk", facts.pop("Risk"))
    m2.metric("Confidence", facts.pop("Confidence"))
    m3.metric("Cost", facts.pop("Cost"))
    m4.metric("Status", p["status"])
    st.markdown("\n".join(f"- **{label}:** {text}" for label, text in facts.items()))
    q = panel.q_values_frame(p.get("evidence") or {}, p["action"])
    if not q.empty:
        st.markdown("**Alternatives the agent weighed** (Q-values; higher is better, the proposed one in blue)")
        st.plotly_chart(panel.q_values_chart(q), key=f"appr_q_{pid}")
    if window is not None and view is not None and not view.series.empty:
        st.plotly_chart(panel.evidence_chart(view, window.at), key=f"appr_chart_{pid}")
        st.caption("Simulated time of the staging twin; the dotted line is when the agent proposed this.")
    if p["status"] == "pending":
        decide(p)
    else:
        who = f" by {p['decided_by']}" if p.get("decided_by") else ""
        why = f": {p['reason']}" if p.get("reason") else ""
        st.info(f"{p['status'].capitalize()}{who}{why}", icon=":material/info:")
        if p.get("run"):
            run = p["run"]
            st.caption(f"Run #{run['id']}: {run['status']}" + (f" on {run['worker']}" if run.get("worker") else ""))


# A proposal to open: the table's selection, else the picker, else a link (?proposal=12, e.g. from an alert).
linked = panel.linked_proposal(st.query_params.get("proposal"))
labels = panel.proposal_labels(table)
if linked is not None and linked not in labels:
    labels = {linked: f"#{linked}", **labels}
opened = st.selectbox("Open a proposal", list(labels), index=list(labels).index(linked) if linked in labels else None,
                      format_func=labels.get, placeholder="Pick one, or select rows in the table",
                      key="appr_open") if labels else None
if opened is not None:
    st.query_params["proposal"] = str(opened)
elif "proposal" in st.query_params:
    del st.query_params["proposal"]
if selection.ids:
    if len(selection.ids) > 1:
        st.caption(f"Evidence of the first of {len(selection.ids)} selected proposals.")
    with st.container(border=True):
        evidence(selection.ids[0])
elif opened is not None:
    with st.container(border=True):
        evidence(int(opened))

# -- history ----------------------------------------------------------------------------------------------------------
st.subheader("History", anchor=False)
with runtime.store.read() as conn:
    ran = queue.runs(conn, limit=200)
if ran.empty:
    st.info("Nothing has run yet.", icon=":material/history:")
else:
    st.dataframe(panel.runs_table(ran), hide_index=True, width="stretch", key="appr_history",
                 column_config={c: st.column_config.DatetimeColumn(c, format="YYYY-MM-DD HH:mm:ss")
                                for c in ("queued_at", "started_at", "finished_at")})

# -- policy -----------------------------------------------------------------------------------------------------------
st.subheader("Policy", anchor=False)
path = settings.policy_path
file_text, exists = panel.policy_file_text(path)
st.caption(f"In force now, from `{path}`" + ("" if exists else " (no file yet: the built-in default)") +
           ". Everything no rule allows waits for an operator here.")
st.code(policy.dump(runtime.execution_policy()), language="toml")
admin = panel.can_change_policy(principal)
with st.expander("Edit the policy", icon=":material/edit:", expanded=False):
    if not admin:
        st.info(panel.ADMIN_HINT, icon=":material/admin_panel_settings:")
    # Keyed on the file's text: when the file changes (another admin, `selfheal policy`), the editor starts afresh.
    text = st.text_area("Policy (TOML)", value=file_text, height=320, disabled=not admin,
                        key=f"appr_policy_text_{hashlib.sha1(file_text.encode()).hexdigest()[:12]}")
    if st.button("Save policy", type="primary", icon=":material/save:", key="appr_policy_save", disabled=not admin,
                 help=panel.ADMIN_HINT if not admin else "Validated first; nothing changes if it is invalid."):
        try:
            saved = policy.save(runtime.store, principal, path, text)
        except PolicyError as e:
            st.error(f"Not saved: {e}", icon=":material/rule:")
            st.caption("The policy in force is unchanged. See the format in the README (Approvals and audit).")
        except SelfhealError as e:
            st.error(f"Not saved: {e}", icon=":material/block:")
        else:
            flash("success", f"Policy saved: {len(saved.auto)} auto rule(s), proposals expire after "
                             f"{saved.proposal_ttl_minutes} min.")
            st.rerun()
