"""Anomalies: a stage's metrics with its anomaly score, the alarm level and incidents; incidents with evidence."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from console import charts
from console.services import runtime_or_stop
from engine.errors import SelfhealError
from engine.model import METRICS, STAGES, IncidentStatus, Stage
from engine.service.reports import anomaly_view, data_range, incidents_frame, incidents_in

WINDOWS = {"Last hour": 60, "Last 6 hours": 360, "Last 24 hours": 1440, "Everything": None}
DEFAULT_METRICS = ("cpu_pct", "latency_s", "throughput_rows_s", "cdc_lag_s", "queue_wait_s", "error_count")

settings, runtime = runtime_or_stop()
st.title(":material/troubleshoot: Anomalies", anchor=False)
st.caption("Anomaly scores are in [0, 1], higher is stranger: 0.5 means a one-in-ten-thousand minute for that "
           "stage's own recent baseline. Two such minutes in a row raise an alarm; alarms and failures on any "
           "stage of a pipeline become one incident, with a suspected root-cause stage and error type.")

try:
    span = data_range(runtime.store)
except SelfhealError as e:
    st.error(f"Could not read the store: {e}", icon=":material/database_off:")
    st.stop()
if span is None:
    st.info("No telemetry yet: the twin writes its first minutes shortly after start.", icon=":material/hourglass_top:")
    st.stop()
first, last = span

ids = [p.id for p in runtime.pipelines()]
c1, c2, c3, c4 = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
label = c3.selectbox("Window", list(WINDOWS), index=1, key="anom_window")
minutes = WINDOWS[label]
end = last + timedelta(minutes=1)
start = first if minutes is None else max(first, end - timedelta(minutes=minutes))
try:
    incidents = incidents_in(runtime.store, start, end)
except SelfhealError as e:
    st.error(f"Could not read incidents: {e}", icon=":material/database_off:")
    st.stop()
focus = next((i for i in reversed(incidents) if i.status is IncidentStatus.OPEN), incidents[-1] if incidents else None)
default_pid = focus.pipeline_id if focus and focus.pipeline_id in ids else ids[0]
default_stage = focus.stage if focus and focus.stage else Stage.TRANSFORM
pipeline = c1.selectbox("Pipeline", ids, index=ids.index(default_pid), key="anom_pipeline")
stage = c2.selectbox("Stage", [s.value for s in STAGES], index=STAGES.index(default_stage), key="anom_stage")
c4.button("Refresh", icon=":material/refresh:", key="anom_refresh")

view = anomaly_view(runtime.store, pipeline, Stage(stage), start, end, alarm_at=runtime.scorer.alarm_at)
present = [m for m in METRICS if m in view.series]
chosen = st.multiselect("Metrics", present, default=[m for m in DEFAULT_METRICS if m in present][:3],
                        key="anom_metrics")
if view.series.empty:
    st.info(f"No telemetry for {pipeline} / {stage} in this window.", icon=":material/info:")
else:
    st.plotly_chart(charts.anomaly_chart(view, chosen), config=charts.png_config(f"anomalies-{pipeline}-{stage}"))
    latest = view.series.iloc[-1]
    m1, m2, m3 = st.columns(3)
    m1.metric("Score now", "n/a" if latest.anomaly_score != latest.anomaly_score else f"{latest.anomaly_score:.3f}")
    m2.metric("Minutes over the alarm level", int((view.series["anomaly_score"] >= view.alarm_at).sum()))
    m3.metric("Status now", latest.status)

st.subheader("Incidents in the window", anchor=False)
frame = incidents_frame(incidents)
if frame.empty:
    st.success("No incidents in this window.", icon=":material/check_circle:")
else:
    st.dataframe(frame.sort_values("onset_at", ascending=False), hide_index=True, width="stretch",
                 column_config={"confidence": st.column_config.NumberColumn("Confidence", format="%.2f"),
                                "mttd_minutes": st.column_config.NumberColumn("MTTD (min)", format="%.0f"),
                                "mttr_minutes": st.column_config.NumberColumn("MTTR (min)", format="%.0f")})
    for inc in reversed([i for i in incidents if i.pipeline_id == pipeline]):
        state = "open" if inc.status is IncidentStatus.OPEN else f"closed {inc.closed_at:%H:%M}"
        where = inc.stage.value if inc.stage else "unknown stage"
        with st.expander(f"#{inc.id} · {inc.error_type.replace('_', ' ')} at {where} · confidence "
                         f"{inc.confidence:.2f} · onset {inc.onset_at:%Y-%m-%d %H:%M} UTC · {state}"):
            stages = inc.evidence.get("stages") or {}
            if stages:
                st.markdown("**Stages involved**")
                st.table([{"stage": k, "status": v.get("status"), "why": v.get("reason")} for k, v in stages.items()])
            lines = inc.evidence.get("log_lines") or []
            if lines:
                st.markdown("**Log lines**")
                st.code("\n".join(f"{ln['ts'][11:16]} {ln['stage']:<12} {ln['level']:<7} {ln['message']}"
                                  for ln in lines), language=None)
