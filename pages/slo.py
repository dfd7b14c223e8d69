"""SLO & MTTR: attainment, error-budget burn and incident timing over a period, with CSV exports."""

from __future__ import annotations

import streamlit as st

from console import charts
from console.services import runtime_or_stop
from console.widgets import minutes, percent
from engine.errors import SelfhealError
from engine.service.reports import data_range, slo_report

PER_PIPELINE_COLUMNS = {
    "pipeline_id": "Pipeline",
    "minutes": st.column_config.NumberColumn("Minutes"),
    "healthy_minutes": st.column_config.NumberColumn("Healthy minutes"),
    "attainment": st.column_config.NumberColumn("Attainment", format="percent"),
    "target": st.column_config.NumberColumn("Target", format="percent"),
    "meets_target": st.column_config.CheckboxColumn("Meets target"),
    "budget_minutes": st.column_config.NumberColumn("Budget (min)", format="%.1f"),
    "budget_spent_minutes": st.column_config.NumberColumn("Budget spent (min)"),
    "budget_remaining_pct": st.column_config.NumberColumn("Budget left", format="%.1f %%"),
}
INCIDENT_COLUMNS = {
    "id": st.column_config.NumberColumn("#", format="%d"),
    "pipeline_id": "Pipeline",
    "status": "Status",
    "stage": "Stage",
    "error_type": "Cause",
    "confidence": st.column_config.NumberColumn("Confidence", format="%.2f"),
    "onset_at": st.column_config.DatetimeColumn("Onset (UTC)", format="YYYY-MM-DD HH:mm"),
    "opened_at": st.column_config.DatetimeColumn("Opened (UTC)", format="YYYY-MM-DD HH:mm"),
    "closed_at": st.column_config.DatetimeColumn("Closed (UTC)", format="YYYY-MM-DD HH:mm"),
    "mttd_minutes": st.column_config.NumberColumn("MTTD (min)", format="%.0f"),
    "mttr_minutes": st.column_config.NumberColumn("MTTR (min)", format="%.0f"),
}

settings, runtime = runtime_or_stop()

st.title(":material/speed: SLO & MTTR", anchor=False)
st.caption(f"A pipeline-minute is healthy when data is fresh within its target and no stage failed. "
           f"Target {percent(settings.slo_target)}. MTTD: fault onset to incident opened; MTTR: onset to "
           "healthy again.")

try:
    span = data_range(runtime.store)
except SelfhealError as e:
    st.error(f"Could not read the store: {e}", icon=":material/database_off:")
    st.info("Check the runtime status in the sidebar, then reload the page.", icon=":material/lightbulb:")
    st.stop()
if span is None:
    st.info("No health data yet: the twin writes its first minutes shortly after start. Reload in a moment.",
            icon=":material/hourglass_top:")
    st.stop()
first, last = span

picker, _ = st.columns([1, 2])
period = picker.date_input("Period (UTC days)", value=(first.date(), last.date()), min_value=first.date(),
                           max_value=last.date(), format="YYYY-MM-DD", key="slo_period")
window = charts.report_window(period, first, last)
if window is None:
    st.info("Pick the last day of the period too.", icon=":material/date_range:")
    st.stop()
try:
    report = slo_report(runtime.store, *window, settings.slo_target)
except SelfhealError as e:
    st.error(f"Could not build the SLO report: {e}", icon=":material/error:")
    st.info("Try a shorter period, or check the store in the sidebar.", icon=":material/lightbulb:")
    st.stop()
st.caption(f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC "
           f"({'simulated time' if runtime.hosting else 'as the data was read'})")

head = charts.headline(report)
cols = st.columns(5)
delta = None if head.overall is None else f"{100 * (head.overall - report.target):+.2f} pp vs target"
cols[0].metric("SLO attainment", percent(head.overall), delta=delta)
cols[1].metric("Pipelines meeting target", f"{head.meeting_target} of {head.pipelines}")
cols[2].metric("Error budget left", percent(head.budget_remaining, 1),
               help="Fleet-wide: 1 − bad pipeline-minutes ÷ the minutes the target allows. Negative: overspent.")
cols[3].metric("Incidents", head.incidents, help=f"{head.open_incidents} still open")
cols[4].metric("MTTD / MTTR", f"{minutes(head.mttd_mean)} / {minutes(head.mttr_mean)}",
               help="Means over the period; MTTR counts closed incidents only.")

left, right = st.columns(2)
left.plotly_chart(charts.attainment_bars(report.per_pipeline, report.target),
                  config=charts.png_config("slo_attainment"))
right.plotly_chart(charts.budget_burn(report.burn), config=charts.png_config("error_budget_burn"))
if report.incidents.empty:
    st.info("No incidents in this period, so no MTTD / MTTR or causes to chart.", icon=":material/verified:")
else:
    left, right = st.columns(2)
    left.plotly_chart(charts.detection_recovery(report.incidents, report.daily, report.end),
                      config=charts.png_config("mttd_mttr"))
    right.plotly_chart(charts.incidents_by_cause(report.incidents), config=charts.png_config("incidents_by_cause"))

stamp = f"{report.start:%Y%m%d-%H%M}_{report.end:%Y%m%d-%H%M}"
st.subheader("Per pipeline", anchor=False)
st.dataframe(report.per_pipeline, hide_index=True, column_config=PER_PIPELINE_COLUMNS)
st.download_button("Per-pipeline SLO (CSV)", report.per_pipeline.to_csv(index=False), f"slo_per_pipeline_{stamp}.csv",
                   "text/csv", icon=":material/download:", on_click="ignore", key="slo_download_pipelines")
st.subheader("Incidents", anchor=False)
if report.incidents.empty:
    st.caption("None in this period.")
else:
    st.dataframe(report.incidents, hide_index=True, column_config=INCIDENT_COLUMNS)
st.download_button("Incidents (CSV)", report.incidents.to_csv(index=False), f"incidents_{stamp}.csv", "text/csv",
                   icon=":material/download:", on_click="ignore", key="slo_download_incidents")
