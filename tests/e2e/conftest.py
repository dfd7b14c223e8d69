"""Browser-test fixtures: the console served on a free port and headless Debian Chromium.

Every test under tests/e2e is marked ``browser``. The app served is ``console/app.py``,
or the script named by ``SELFHEAL_E2E_APP`` (relative to the repo root, or absolute).
Server logs and screenshots land in ``artifacts/e2e/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import require_services

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ARTIFACTS = REPO_ROOT / "artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_DEADLINE_S = 60.0
FAILED_CALL = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory as a browser test (the hook sees the whole session)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Remember a failed test body so ``browser_page`` can keep a screenshot of it."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_CALL] = True
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health_ok(url: str) -> bool:
    # No proxies: the server is on loopback whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def _wait_until_healthy(proc: subprocess.Popen[bytes], url: str, stderr_log: Path) -> None:
    """Poll the health endpoint until "ok"; raise with the server's stderr on exit or deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if _health_ok(url):
            return
        try:  # waiting on the process doubles as the poll interval and notices an early exit
            proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"console exited with {proc.returncode} before serving:\n{stderr_log.read_text()}")
    raise RuntimeError(f"console not healthy after {STARTUP_DEADLINE_S:.0f}s:\n{stderr_log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def serve_console(data_dir: Path, *, name: str = "console-server", env: Mapping[str, str] | None = None,
                  secrets: Path | None = None) -> Iterator[str]:
    """Serve the console with Streamlit on a free port on its own SQLite store in `data_dir`; yield the base URL.

    `secrets` is the only secrets file the server reads (default: an empty one in `data_dir`), so a developer's
    own .streamlit/secrets.toml (local users, OIDC) never changes what a journey sees.
    """
    app = REPO_ROOT / os.environ.get("SELFHEAL_E2E_APP", "console/app.py")
    if not app.is_file():
        pytest.fail(f"no Streamlit app at {app}", pytrace=False)
    if secrets is None:
        secrets = data_dir / "secrets.toml"
        secrets.touch()
    full_env = {**os.environ, "SELFHEAL_DATA_DIR": str(data_dir),
                "SELFHEAL_DATABASE_URL": f"sqlite:///{data_dir}/selfheal.db", **(env or {})}
    port = str(_free_port())
    options = {
        "server.headless": "true",
        "server.port": port,
        "server.address": "127.0.0.1",
        "browser.gatherUsageStats": "false",
        "secrets.files": str(secrets),
    }
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), *(f"--{k}={v}" for k, v in options.items())]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stdout_log, stderr_log = ARTIFACTS / f"{name}.out.log", ARTIFACTS / f"{name}.err.log"
    base_url = f"http://127.0.0.1:{port}"
    with stdout_log.open("wb") as out, stderr_log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _wait_until_healthy(proc, f"{base_url}/_stcore/health", stderr_log)
            yield base_url
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console in its embedded default (open mode, 12 pipelines) for the session's journeys."""
    with serve_console(tmp_path_factory.mktemp("console-data")) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the session (Playwright never downloads its own)."""
    if not CHROMIUM.exists():
        require_services(f"{CHROMIUM} is missing (apt-get install -y chromium; see scripts/ensure-services)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh 1400x900 page in its own context; a failing test leaves artifacts/e2e/FAILED-*.png."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    if request.node.stash.get(FAILED_CALL, False):
        _snap(page, "FAILED-" + "".join(c if c.isalnum() else "_" for c in request.node.name))
    context.close()


@pytest.fixture
def console_page(browser_page: Page, console_server: str) -> Page:
    """``browser_page`` opened on the console, after the app's first run has finished."""
    browser_page.goto(console_server)
    wait_for_app_run(browser_page)
    return browser_page


def choose(page: Page, label: str, option: str | re.Pattern[str], attempts: int = 8) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`.

    The dropdown closes, and its options are rendered anew, when the page moves under it (an expander still
    opening, a live refresh above it; often on a loaded machine), so opening it and clicking the option are
    retried together a bounded number of times, each step with a short deadline, until the box shows `option`.
    """
    box = page.get_by_test_id("stSelectbox").filter(has_text=label)
    listbox = page.get_by_role("listbox", name=label)
    combobox = page.get_by_role("combobox", name=label)
    for attempt in range(attempts):
        try:
            box.click()
            expect(listbox).to_be_visible(timeout=2_000)
            listbox.get_by_role("option", name=option, exact=True).click(timeout=3_000)
            expect(combobox).to_have_value(option, timeout=3_000)
            return
        except (AssertionError, PlaywrightTimeoutError):
            if attempt == attempts - 1:
                raise
            if listbox.is_visible():
                page.keyboard.press("Escape")


def wait_for_app_run(page: Page, timeout_ms: float = 30_000) -> None:
    """Wait until Streamlit is connected and its script run is over (never sleep instead)."""
    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout_ms)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)


def _snap(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def snap() -> Callable[[Page, str], Path]:
    """``snap(page, name)`` saves a full-page screenshot to artifacts/e2e/NAME.png and returns its path."""
    return _snap
