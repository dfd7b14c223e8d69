"""The console's handles on the engine: settings and the one embedded runtime per server.

Every page gets its engine objects here and nowhere else, so a server starts exactly one twin
whatever the number of tabs, and tests that point SELFHEAL_DATA_DIR elsewhere get their own.
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from engine.errors import ConfigError, SelfhealError
from engine.service.runtime import EmbeddedRuntime
from engine.settings import Settings, load_settings

log = logging.getLogger(__name__)


def get_settings() -> Settings:
    """Settings from the SELFHEAL_* environment, read on every call; raises ConfigError.

    Not cached on purpose: reading a dozen variables is cheap, and a cache keyed on nothing would
    freeze the environment of the first run (tests point SELFHEAL_DATA_DIR at a fresh directory each).
    """
    return load_settings()


def _runtime_key(settings: Settings) -> tuple[object, ...]:
    # Only what shapes the twin and its store: changing the refresh period or the SLO target of a
    # running server must not start a second twin ticking into the same database.
    return (settings.store_url, settings.fleet_size, settings.seed, settings.sim_speed, settings.tick_seconds,
            settings.backfill_minutes, settings.live)


def _stop_runtime(runtime: EmbeddedRuntime) -> None:
    runtime.stop()


@st.cache_resource(show_spinner="Starting the staging twin…", hash_funcs={Settings: _runtime_key},
                   on_release=_stop_runtime)
def get_runtime(settings: Settings) -> EmbeddedRuntime:
    """The started embedded runtime for these settings: one per server (global cache), shared by all tabs.

    Starting backfills the configured history, then ticks in a daemon thread when ``settings.live``.
    Raises a SelfhealError (e.g. StoreError) when the store cannot be opened; nothing is cached then.
    """
    log.info("starting the embedded runtime on %s", redacted_url(settings.store_url))
    return EmbeddedRuntime(settings).start()


def runtime_or_stop() -> tuple[Settings, EmbeddedRuntime]:
    """Settings and the running runtime; on a configuration or store error, explain it and stop the run."""
    try:
        settings = get_settings()
    except ConfigError as e:
        st.error(f"selfheal cannot start: {e}", icon=":material/settings_alert:")
        st.info("Fix or unset the SELFHEAL_* environment variables named above, then reload the page.",
                icon=":material/lightbulb:")
        st.stop()
    try:
        runtime = get_runtime(settings)
    except SelfhealError as e:
        st.error(f"The embedded runtime could not start: {e}", icon=":material/database_off:")
        st.info(f"Check that the store at {redacted_url(settings.store_url)} is reachable and writable "
                "(SELFHEAL_DATA_DIR or SELFHEAL_DATABASE_URL), then reload the page.", icon=":material/lightbulb:")
        st.stop()
    return settings, runtime


def redacted_url(url: str) -> str:
    """A database URL fit to show on screen: the password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"
