"""The Fleet page's panels: live fleet health (the body of a refreshing fragment) and fault injection.

Kept out of ``pages/fleet.py`` so tests can run the fragment body on its own: AppTest does not fire
``run_every`` timers.
"""

from __future__ import annotations

import streamlit as st

from console.auth import current_principal
from console.widgets import fleet_table_html, percent
from engine.errors import SelfhealError
from engine.model import FaultKind, Health, Stage
from engine.security.roles import Permission
from engine.service.reports import FleetSnapshot, fleet_snapshot
from engine.service.runtime import EmbeddedRuntime

WINDOW_MINUTES = 60
DEFAULT_PIPELINE = "orders"


def render_fleet(runtime: EmbeddedRuntime, *, slo_target: float) -> FleetSnapshot | None:
    """Headline metrics and the fleet table from a fresh snapshot; returns it (None on a store error)."""
    try:
        snapshot = fleet_snapshot(runtime.store, window_minutes=WINDOW_MINUTES)
    except SelfhealError as e:
        st.error(f"Could not read the fleet from the store: {e}", icon=":material/database_off:")
        st.caption("The page retries on its next refresh. If this persists, check the store's disk space or "
                   "database server and the runtime status in the sidebar.")
        return None
    if snapshot.as_of is None:
        st.info("No telemetry in the store yet. The twin writes its first minutes within a few seconds; "
                "this panel refreshes by itself.", icon=":material/hourglass_top:")
        return snapshot
    _headline(snapshot, slo_target)
    only_problems = st.toggle("Only pipelines that need attention", key="fleet_only_problems")
    rows = [p for p in snapshot.pipelines if p.status is not Health.HEALTHY] if only_problems else snapshot.pipelines
    if not rows:
        st.success("Every pipeline is healthy right now.", icon=":material/check_circle:")
    else:
        st.html(fleet_table_html(snapshot, rows))
    clock = "simulated" if runtime.hosting else "newest data"
    st.caption(f"As of {snapshot.as_of:%Y-%m-%d %H:%M} UTC ({clock}). Worst first. Hover a stage for its "
               "component and the reason for its status.")
    return snapshot


def _headline(snapshot: FleetSnapshot, slo_target: float) -> None:
    cols = st.columns(6)
    cols[0].metric("Pipelines", len(snapshot.pipelines))
    cols[1].metric("Healthy", snapshot.count(Health.HEALTHY))
    cols[2].metric("Degraded", snapshot.count(Health.DEGRADED))
    cols[3].metric("Failed", snapshot.count(Health.FAILED))
    cols[4].metric("Open incidents", snapshot.open_incidents)
    slo = snapshot.slo_window
    delta = None if slo is None else f"{100 * (slo - slo_target):+.2f} pp vs target"
    cols[5].metric("SLO, last hour", percent(slo), delta=delta,
                   help=f"Healthy pipeline-minutes over the last {WINDOW_MINUTES} simulated minutes "
                        f"(fresh within target and no stage failed). Target {percent(slo_target)}.")


def render_inject_form(runtime: EmbeddedRuntime) -> None:
    """A form that starts a fault in the staging twin, for drills and demos; the injection is audited."""
    ids = [p.id for p in runtime.twin_pipelines()]
    if not ids:  # SELFHEAL_TWIN=false: real pipelines only, and nothing is ever injected into those
        return
    stages = [s.value for s in Stage]
    kinds = [k.value for k in FaultKind]
    if not current_principal().can(Permission.INJECT):
        st.caption("Fault injection (staging twin) is for operators and admins.")
        return
    with st.expander("Inject a fault (staging twin)", icon=":material/science:"):
        st.caption("Starts the fault with the next simulated minute in the staging twin only; production is "
                   "never touched. Schema drift, stopped CDC and hung tasks stay until the right fix runs.")
        with st.form("fleet_inject_form", border=False):
            c1, c2, c3 = st.columns(3)
            pipeline = c1.selectbox("Pipeline", ids, key="fleet_inject_pipeline",
                                    index=ids.index(DEFAULT_PIPELINE) if DEFAULT_PIPELINE in ids else 0)
            stage = c2.selectbox("Stage", stages, index=stages.index(Stage.TRANSFORM), key="fleet_inject_stage")
            kind = c3.selectbox("Fault kind", kinds, index=kinds.index(FaultKind.SCHEMA_DRIFT),
                                key="fleet_inject_kind", format_func=lambda k: k.replace("_", " "))
            c4, c5 = st.columns(2)
            severity = c4.slider("Severity", 0.05, 1.0, 0.8, 0.05, key="fleet_inject_severity",
                                 help="How hard the fault hits, in (0, 1].")
            duration = c5.number_input("Duration (simulated minutes)", 1, 24 * 60, 60, 5, key="fleet_inject_duration",
                                       help="How long the cause lasts if nobody acts.")
            submitted = st.form_submit_button("Inject fault", icon=":material/bolt:", type="primary")
    if not submitted:
        return
    try:
        fault = runtime.inject_fault(pipeline, stage, kind, severity=float(severity), duration_minutes=int(duration),
                                     actor=current_principal())
    except SelfhealError as e:
        st.error(f"The fault was not injected: {e}", icon=":material/error:")
        st.caption("Pick a pipeline, stage and kind from the lists; severity must be in (0, 1] and the "
                   "duration positive.")
        return
    starts = runtime.twin.time_of(fault.start)
    message = (f"Injected {fault.kind.value.replace('_', ' ')} on {pipeline} / {fault.stage.value} "
               f"(severity {severity:.2f}, {int(duration)} min) from {starts:%H:%M} UTC simulated.")
    st.success(message + " The table shows it within a refresh or two.", icon=":material/check_circle:")
    st.toast(message, icon=":material/bolt:")
