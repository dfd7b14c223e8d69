"""The selfheal console: `streamlit run console/app.py` (or `selfheal console`).

The entry point sets the page up, starts (once per server) the embedded runtime, shows its status in
the sidebar and routes to the pages. Pages are thin views over engine services.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from console.auth import signed_in_principal
from console.services import redacted_url, runtime_or_stop
from engine.service.runtime import EmbeddedRuntime
from engine.settings import Settings

PAGES = Path(__file__).resolve().parent.parent / "pages"

st.set_page_config(page_title="selfheal", page_icon=":material/healing:", layout="wide")

settings, runtime = runtime_or_stop()
signed_in_principal(settings)  # stops here with the sign-in screen until someone is signed in


@st.fragment(run_every=settings.refresh_seconds)
def runtime_status(runtime: EmbeddedRuntime, settings: Settings) -> None:
    """The twin's clock and health, refreshed with the live panels."""
    status = runtime.status()
    if not runtime.hosting:
        st.markdown("**Store view** · no simulated fleet (SELFHEAL_TWIN=false)")
        st.caption(f"Newest data: {status.sim_now:%Y-%m-%d %H:%M} UTC")
        st.caption(f"{len(runtime.pipelines())} pipelines, fed by other processes (e.g. `selfheal watch`)")
        return
    mode = "live" if status.running else ("stopped" if settings.live else "paused (SELFHEAL_LIVE=false)")
    st.markdown(f"**Staging twin** · {mode}")
    st.caption(f"Simulated time: {status.sim_now:%Y-%m-%d %H:%M} UTC")
    tick = "" if status.last_tick_seconds is None else f", last took {1000 * status.last_tick_seconds:.0f} ms"
    st.caption(f"Ticks: {status.ticks:,}{tick}")
    st.caption(f"{len(runtime.pipelines())} pipelines · {settings.sim_speed:g} simulated min per second")
    if status.last_error:
        st.error(f"Last tick failed: {status.last_error}", icon=":material/error:")
        st.caption("The twin keeps ticking and retries; check the store if this stays.")
    elif settings.live and not status.running:
        st.warning("The twin is not ticking. Restart the console to resume.", icon=":material/pause_circle:")


with st.sidebar:
    runtime_status(runtime, settings)
    st.caption(f"Store: {redacted_url(settings.store_url)}")

page = st.navigation([
    st.Page(PAGES / "fleet.py", title="Fleet health", icon=":material/monitor_heart:", default=True),
    st.Page(PAGES / "anomalies.py", title="Anomalies", icon=":material/troubleshoot:"),
    st.Page(PAGES / "slo.py", title="SLO & MTTR", icon=":material/speed:"),
    st.Page(PAGES / "assistant.py", title="Assistant", icon=":material/forum:"),
    st.Page(PAGES / "agent.py", title="Agent", icon=":material/psychology:"),
    st.Page(PAGES / "approvals.py", title="Approvals", icon=":material/fact_check:"),
    st.Page(PAGES / "audit.py", title="Audit log", icon=":material/history:"),
])
page.run()
