"""Browser journey: a console with local users (a real secrets file written by the CLI) signs people in and out.

Served on its own, with ``--secrets.files`` pointing at a file in tmp, so the session server of the other journeys
stays in open mode and a developer's own .streamlit/secrets.toml plays no part.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from engine.security.users import add_user

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "e2e"
STARTUP_DEADLINE_S = 60.0
PAGE_READY_MS = 30_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def _wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        try:  # waiting on the process is the poll interval and notices an early exit
            proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        break
    pytest.fail(f"console did not serve within {STARTUP_DEADLINE_S:.0f}s:\n{log.read_text()}", pytrace=False)


@pytest.fixture(scope="module")
def signed_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console with two local users in a secrets file of its own; yields the base URL."""
    root = tmp_path_factory.mktemp("sign-in")
    secrets = root / "secrets.toml"
    add_user(secrets, "alice", "operator", "alice pw")
    add_user(secrets, "vic", "viewer", "vic pw")
    env = {**os.environ, "SELFHEAL_DATA_DIR": str(root), "SELFHEAL_DATABASE_URL": f"sqlite:///{root}/selfheal.db"}
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "console" / "app.py"),
           "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
           "--browser.gatherUsageStats=false", f"--secrets.files={secrets}"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "sign-in-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            _wait_until_healthy(proc, f"http://127.0.0.1:{port}/_stcore/health", log)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_for_app_run(page: Page) -> None:
    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=PAGE_READY_MS)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=PAGE_READY_MS)


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
