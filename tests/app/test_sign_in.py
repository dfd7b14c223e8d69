"""App tests for sign-in: open mode, local users with passwords (form, errors, throttle, sign-out), OIDC roles.

Each test hands the app its secrets through ``at.secrets``, so a developer's own .streamlit/secrets.toml
does not leak in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import ADD_USER_HINT, SESSION_PRINCIPAL, WRONG_CREDENTIALS
from engine.security.roles import Principal, Role
from engine.security.users import hash_password
from engine.service.runtime import EmbeddedRuntime

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "console" / "app.py")
PASSWORD = "correct horse"
USERS = {"alice": {"password_hash": hash_password(PASSWORD, rounds=4), "role": "operator"},
         "vic": {"password_hash": hash_password("viewer pw", rounds=4), "role": "viewer"}}


def app(secrets: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets.update(secrets)
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception
    return at


def sidebar_text(at: AppTest) -> str:
    return " ".join([m.value for m in at.sidebar.markdown] + [w.value for w in at.sidebar.warning])


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="auth_name").input(name)
    at.text_input(key="auth_password").input(password)
    at.button[0].click()  # the form's submit button
    return run(at)


def page_shown(at: AppTest) -> bool:
    return any("Fleet health" in t.value for t in at.title)


# -- open mode -------------------------------------------------------------------------------------------------------
def test_open_mode_warns_in_the_sidebar_and_shows_the_pages(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {}}))
    assert page_shown(at)
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "Open mode" in warning and ADD_USER_HINT in warning
    assert at.session_state[SESSION_PRINCIPAL] == Principal("local", Role.ADMIN, "user")
    at.switch_page("../pages/slo.py").run()
    assert not at.exception and "SLO & MTTR" in at.title[0].value


def test_open_mode_is_refused_when_sign_in_is_required(runtime: EmbeddedRuntime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_REQUIRE_SIGN_IN", "1")
    at = run(app({"selfheal": {}}))
    assert "SELFHEAL_REQUIRE_SIGN_IN" in at.error[0].value
    assert ADD_USER_HINT in at.info[0].value
    assert not page_shown(at)


PAGE_USING_THE_PRINCIPAL = """
import streamlit as st
from console.auth import current_principal

principal = current_principal()
st.markdown(f"acting as {principal.name} ({principal.role.value})")
"""


def test_a_page_run_on_its_own_asks_for_the_principal(runtime: EmbeddedRuntime) -> None:
    at = AppTest.from_string(PAGE_USING_THE_PRINCIPAL, default_timeout=60)
    at.secrets["selfheal"] = {}
    run(at)
    assert "acting as local (admin)" in [m.value for m in at.markdown]
    at = AppTest.from_string(PAGE_USING_THE_PRINCIPAL, default_timeout=60)
    at.secrets["selfheal"] = {"users": USERS}
    run(at)
    assert at.title[0].value == "Sign in to selfheal"
    assert not any("acting as" in m.value for m in at.markdown)
    sign_in(at, "alice", PASSWORD)
    assert "acting as alice (operator)" in [m.value for m in at.markdown]


# -- local users -----------------------------------------------------------------------------------------------------
def test_local_users_see_only_the_sign_in_form_until_they_sign_in(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    assert at.title[0].value == "Sign in to selfheal"
    assert not page_shown(at)
    assert not at.sidebar.caption  # no twin status or store URL for strangers
    assert SESSION_PRINCIPAL not in at.session_state


def test_a_wrong_password_or_an_unknown_user_gets_the_same_error(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    sign_in(at, "alice", "wrong")
    assert [e.value for e in at.error] == [WRONG_CREDENTIALS]
    assert not page_shown(at)
    sign_in(at, "mallory", PASSWORD)
    assert [e.value for e in at.error] == [WRONG_CREDENTIALS]  # no hint that the name does not exist
    assert not page_shown(at)


def test_the_right_password_shows_the_page_and_the_sidebar_names_the_user(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    sign_in(at, "alice", PASSWORD)
    assert page_shown(at)
    assert "alice" in sidebar_text(at) and "operator" in sidebar_text(at)
    assert at.session_state[SESSION_PRINCIPAL] == Principal("alice", Role.OPERATOR, "user")
    assert "Open mode" not in sidebar_text(at)
    at.switch_page("../pages/slo.py").run()
    assert not at.exception and "SLO & MTTR" in at.title[0].value  # still signed in on another page


def test_sign_out_returns_to_the_form(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    sign_in(at, "vic", "viewer pw")
    assert "viewer" in sidebar_text(at)
    at.sidebar.button(key="auth_sign_out").click()
    run(at)
    assert at.title[0].value == "Sign in to selfheal"
    assert not page_shown(at)
    assert SESSION_PRINCIPAL not in at.session_state


def test_a_user_removed_from_the_file_is_signed_out_and_a_new_role_applies(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    sign_in(at, "alice", PASSWORD)
    at.secrets["selfheal"] = {"users": {**USERS, "alice": {**USERS["alice"], "role": "admin"}}}
    run(at)
    assert at.session_state[SESSION_PRINCIPAL].role is Role.ADMIN
    at.secrets["selfheal"] = {"users": {"vic": USERS["vic"]}}
    run(at)
    assert at.title[0].value == "Sign in to selfheal"


def test_failed_sign_ins_are_throttled_even_for_the_right_password(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": USERS}}))
    for _ in range(5):
        sign_in(at, "alice", "guess")
        assert [e.value for e in at.error] == [WRONG_CREDENTIALS]
    sign_in(at, "alice", PASSWORD)
    assert "Too many failed sign-ins" in at.error[0].value
    assert not page_shown(at)


def test_a_malformed_user_entry_stops_the_console_instead_of_opening_it(runtime: EmbeddedRuntime) -> None:
    at = run(app({"selfheal": {"users": {"bob": {"password_hash": "hunter2", "role": "admin"}}}}))
    assert "misconfigured" in at.error[0].value and "bcrypt" in at.error[0].value
    assert not page_shown(at)
    assert "Open mode" not in sidebar_text(at)


# -- OIDC (st.login) -------------------------------------------------------------------------------------------------
OIDC = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "selfheal", "client_secret": "s",
                 "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"},
        "selfheal": {"roles": {"boss@example.com": "admin", "*@example.com": "operator"},
                     "users": USERS}}  # local users are ignored when OIDC is configured


def test_oidc_shows_a_sign_in_button_and_no_page_while_logged_out(runtime: EmbeddedRuntime) -> None:
    at = app(OIDC)
    at.user = {"is_logged_in": False}
    run(at)
    assert at.title[0].value == "Sign in to selfheal"
    assert at.button(key="auth_login_default").label == "Sign in"
    assert not at.text_input  # no password form
    assert not page_shown(at)


@pytest.mark.parametrize(("email", "verified", "role"), [
    ("boss@example.com", True, Role.ADMIN),
    ("ann@example.com", True, Role.OPERATOR),
    ("ann@example.com", False, Role.VIEWER),  # unverified addresses get no mapped role
    ("eve@elsewhere.org", True, Role.VIEWER),
])
def test_oidc_users_get_their_role_from_the_mapping(runtime: EmbeddedRuntime, email: str, verified: bool,
                                                    role: Role) -> None:
    at = app(OIDC)
    at.user = {"is_logged_in": True, "email": email, "email_verified": verified, "name": "Some One"}
    run(at)
    assert page_shown(at)
    assert at.session_state[SESSION_PRINCIPAL] == Principal(email, role, "user")
    assert "Some One" in sidebar_text(at) and role.value in sidebar_text(at)


def test_a_malformed_role_mapping_stops_the_console(runtime: EmbeddedRuntime) -> None:
    at = app({**OIDC, "selfheal": {"roles": {"ann@example.com": "boss"}}})
    at.user = {"is_logged_in": True, "email": "ann@example.com"}
    run(at)
    assert "unknown role 'boss'" in at.error[0].value
    assert not page_shown(at)


def test_oidc_sign_out_logs_out(runtime: EmbeddedRuntime) -> None:
    at = app(OIDC)
    at.user = {"is_logged_in": True, "email": "ann@example.com", "name": "Ann"}
    run(at)
    at.sidebar.button(key="auth_sign_out").click()
    run(at)
    assert at.user == {"is_logged_in": False}
    run(at)
    assert not page_shown(at)
