"""Browser journey: a console with local users (a real secrets file written by the CLI) signs people in and out.

Served on its own, with ``--secrets.files`` pointing at a file in tmp, so the session server of the other journeys
stays in open mode and a developer's own .streamlit/secrets.toml plays no part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from engine.security.users import add_user
from tests.e2e.conftest import serve_console, wait_for_app_run

PAGE_READY_MS = 30_000


@pytest.fixture(scope="module")
def signed_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console with two local users in a secrets file of its own; yields the base URL."""
    root = tmp_path_factory.mktemp("sign-in")
    secrets = root / "secrets.toml"
    add_user(secrets, "alice", "operator", "alice pw")
    add_user(secrets, "vic", "viewer", "vic pw")
    with serve_console(root, name="sign-in-server", secrets=secrets) as url:
        yield url


def submit(page: Page, name: str, password: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait_for_app_run(page)


def test_sign_in_wrong_then_right_then_sign_out(browser_page: Page, signed_console: str,
                                                snap: Callable[[Page, str], Path]) -> None:
    page = browser_page
    page.goto(signed_console)
    wait_for_app_run(page)
    expect(page.get_by_role("heading", name="Sign in to selfheal")).to_be_visible()
    expect(page.get_by_role("heading", name="Fleet health")).to_have_count(0)
    snap(page, "sign-in-form")

    submit(page, "alice", "not her password")
    expect(page.get_by_text("Wrong user name or password.")).to_be_visible()
    expect(page.get_by_role("heading", name="Fleet health")).to_have_count(0)

    submit(page, "alice", "alice pw")
    expect(page.get_by_role("heading", name="Fleet health")).to_be_visible(timeout=PAGE_READY_MS)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text("alice")
    expect(sidebar).to_contain_text("operator")
    expect(sidebar).not_to_contain_text("Open mode")
    snap(page, "signed-in-operator")

    sidebar.get_by_role("button", name="Sign out").click()
    wait_for_app_run(page)
    expect(page.get_by_role("heading", name="Sign in to selfheal")).to_be_visible()
    expect(page.get_by_role("heading", name="Fleet health")).to_have_count(0)
