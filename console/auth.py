"""Who is using the console, decided once per run by the entry point before it routes to a page.

Three modes, from ``st.secrets``:

1. OIDC: an ``[auth]`` section (Streamlit's built-in ``st.login``); the role comes from ``[selfheal.roles]``
   by e-mail or ``*@domain``, and unmapped users are viewers.
2. Local users: ``[selfheal.users.<name>]`` entries with bcrypt hashes (``selfheal users add``); a sign-in form.
3. Open mode: neither, so everyone is the admin "local" and the sidebar says how to add users. Refused when
   ``SELFHEAL_REQUIRE_SIGN_IN=1``.

A broken secrets file or a malformed user entry stops the console with an error: it never falls back to open mode.
Pages get the principal from `current_principal()` and pass it to engine services, which enforce the role.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from console.services import get_settings
from engine.errors import ConfigError
from engine.security.roles import Principal, Role
from engine.security.throttle import SignInThrottle
from engine.security.users import authenticate, role_for_email, role_map_from_mapping, users_from_mapping
from engine.settings import Settings

SESSION_PRINCIPAL = "auth_principal"  # this run's principal, for current_principal()
SESSION_USER = "auth_user"  # local mode: the signed-in user's name (the role is looked up again on every run)
SESSION_THROTTLE = "auth_throttle"
OPEN_MODE = Principal("local", Role.ADMIN, "user")
WRONG_CREDENTIALS = "Wrong user name or password."
ADD_USER_HINT = "selfheal users add NAME --role admin"


def signed_in_principal(settings: Settings | None = None) -> Principal:
    """The principal of this session. When nobody is signed in, shows the sign-in screen and stops the run.

    Call once per run, before ``st.navigation``; it also puts who is signed in (and a sign-out button) in the sidebar.
    """
    st.session_state.pop(SESSION_PRINCIPAL, None)
    secrets = _secrets_or_stop()
    try:
        if "auth" in secrets:
            principal = _oidc_principal(secrets)
        elif users := users_from_mapping(secrets):
            principal = _local_principal(users)
        else:
            principal = _open_mode(settings)
    except ConfigError as e:
        st.error(f"Sign-in is misconfigured: {e}", icon=":material/lock:")
        st.info("Fix the named entry in .streamlit/secrets.toml (`selfheal users add NAME --replace` rewrites a "
                "user), then reload the page.", icon=":material/lightbulb:")
        st.stop()
    st.session_state[SESSION_PRINCIPAL] = principal
    return principal


def current_principal() -> Principal:
    """The signed-in principal of this run, for pages to pass to engine services (which check its role).

    The entry point signs in afresh on every run; a page run without it (a test) signs in on its first call.
    """
    principal = st.session_state.get(SESSION_PRINCIPAL)
    return principal if isinstance(principal, Principal) else signed_in_principal()


def _secrets_or_stop() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError as e:  # Streamlit raises it both for no file and for one it cannot parse
        if any(Path(p).exists() for p in st.get_option("secrets.files")):
            st.error(f"The secrets file cannot be read, so nobody can sign in: {e}", icon=":material/lock:")
            st.info("Fix .streamlit/secrets.toml, then reload the page.", icon=":material/lightbulb:")
            st.stop()
        return {}


# -- the three modes -------------------------------------------------------------------------------------------------

def _oidc_principal(secrets: Mapping[str, Any]) -> Principal:
    if not isinstance(secrets["auth"], Mapping):
        raise ConfigError("[auth] must be a table (Streamlit's st.login settings)")
    role_map = role_map_from_mapping(secrets)
    if not st.user.get("is_logged_in"):
        _oidc_sign_in(secrets["auth"])
        st.stop()
    email = st.user.get("email")
    # An address the provider has not verified could be anyone's: it gets no mapped role.
    verified = st.user.get("email_verified") is not False
    role = role_for_email(role_map, email) if verified else Role.VIEWER
    principal = Principal(str(email or st.user.get("sub") or "unknown"), role, "user")
    _account_sidebar(str(st.user.get("name") or principal.name), principal, sign_out=st.logout)
    return principal


def _oidc_sign_in(auth: Mapping[str, Any]) -> None:
    st.title("Sign in to selfheal")
    named = [key for key, value in auth.items() if isinstance(value, Mapping)]
    providers: list[str | None] = ([None] if "client_id" in auth or not named else []) + named
    for provider in providers:
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        st.button(label, key=f"auth_login_{provider or 'default'}", type="primary", icon=":material/login:",
                  on_click=st.login, args=() if provider is None else (provider,))


def _local_principal(users: Mapping[str, Any]) -> Principal:
    user = users.get(st.session_state.get(SESSION_USER, ""))
    if user is None:  # not signed in, or removed from the file since
        st.session_state.pop(SESSION_USER, None)
        _sign_in_form(users)
        st.stop()
    principal = user.principal()
    _account_sidebar(principal.name, principal, sign_out=lambda: st.session_state.pop(SESSION_USER, None))
    return principal


def _sign_in_form(users: Mapping[str, Any]) -> None:
    throttle = st.session_state.setdefault(SESSION_THROTTLE, SignInThrottle())
    st.title("Sign in to selfheal")
    with st.columns([2, 3])[0], st.form("auth_sign_in"):
        name = st.text_input("User name", key="auth_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if not submitted:
        return
    now = time.monotonic()
    wait = throttle.retry_after(now)
    if wait > 0:
        st.error(f"Too many failed sign-ins. Try again in {math.ceil(wait)} s.", icon=":material/timer:")
        return
    principal = authenticate(users, name, password)
    if principal is None:
        throttle.failed(now)
        st.error(WRONG_CREDENTIALS, icon=":material/lock:")
        return
    throttle.succeeded()
    st.session_state[SESSION_USER] = principal.name
    st.rerun()


def _open_mode(settings: Settings | None) -> Principal:
    if settings is None:
        settings = get_settings()
    if settings.require_sign_in:
        st.error("Sign-in is required (SELFHEAL_REQUIRE_SIGN_IN) but no users are configured.", icon=":material/lock:")
        st.info(f"Add one with `{ADD_USER_HINT}` (or configure OIDC under [auth] in .streamlit/secrets.toml), "
                "then restart the console.", icon=":material/lightbulb:")
        st.stop()
    with st.sidebar:
        st.warning(f"Open mode: no users are configured, so everyone is the admin **local**. Add users with "
                   f"`{ADD_USER_HINT}`, then restart the console.", icon=":material/lock_open:")
    return OPEN_MODE


def _account_sidebar(display_name: str, principal: Principal, *, sign_out: Any) -> None:
    with st.sidebar:
        st.markdown(f":material/account_circle: **{_md_escape(display_name)}** · {principal.role.value}")
        st.button("Sign out", key="auth_sign_out", icon=":material/logout:", on_click=sign_out)


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~:$])", r"\\\1", text)
