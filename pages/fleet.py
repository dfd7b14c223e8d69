"""Fleet health: every pipeline's status right now, refreshed live, and fault injection for drills."""

from __future__ import annotations

import streamlit as st

from console.fleet_panel import render_fleet, render_inject_form
from console.services import runtime_or_stop

settings, runtime = runtime_or_stop()

st.title(":material/monitor_heart: Fleet health", anchor=False)
st.caption(f"Each pipeline's newest minute: stage status, freshness against its target, throughput over the "
           f"last hour and any open incident. Refreshes every {settings.refresh_seconds:g} s.")


@st.fragment(run_every=settings.refresh_seconds)
def live_fleet() -> None:
    render_fleet(runtime, slo_target=settings.slo_target)


live_fleet()
render_inject_form(runtime)
