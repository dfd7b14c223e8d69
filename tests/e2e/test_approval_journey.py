"""Browser journey through the whole loop: a fault is injected, the agent's proposal appears on the Approvals page,
an operator signs in and approves it, the pipeline recovers on the Fleet page, and the audit log tells the chain.

Served on its own (its own store, a secrets file with an operator) and a little faster than real time
(3 simulated minutes per second), so recovery fits in a bounded wait.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from engine.security.users import add_user
from tests.e2e.conftest import choose, serve_console, wait_for_app_run

PAGE_READY_MS = 30_000
PROPOSAL_MS = 30_000  # the agent proposes within a few simulated minutes of the failure
RECOVERY_MS = 90_000  # remap (3–6 simulated min), then the backlog drains; generous for a slow CI machine
PIPELINE = "payments"


@pytest.fixture(scope="module")
def journey_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("approval-journey")
    secrets = root / "secrets.toml"
    add_user(secrets, "olga", "operator", "olga pw")
    env = {"SELFHEAL_SIM_SPEED": "3", "SELFHEAL_BACKFILL_MINUTES": "120", "SELFHEAL_AGENT_POLICY": "rules"}
    with serve_console(root, name="approval-journey-server", env=env, secrets=secrets) as url:
        yield url, root / "selfheal.db"


def sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait_for_app_run(page)


def open_pending(page: Page, pattern: re.Pattern[str], attempts: int = 60) -> None:
    """Reload the Approvals page until the queue holds a pending proposal matching `pattern`, then open it.

    The page has no live refresh, so this presses its Refresh button (a reload would start a new session and
    sign out); each script run paces the next (no sleeps), and the attempts bound the wait.
    """
    page.get_by_role("link", name="Approvals").click()
    wait_for_app_run(page)
    for _ in range(attempts):
        if page.get_by_role("heading", name=re.compile(r"^Queue \([1-9]\d*\)")).count():
            break
        page.get_by_role("button", name="Refresh").click()
        wait_for_app_run(page)
    else:
        raise AssertionError(f"no pending proposal after {attempts} refreshes of the Approvals page")
    choose(page, "Open a proposal", pattern)


def test_inject_propose_approve_recover_audit(browser_page: Page, journey_console: tuple[str, Path],
                                             snap: Callable[[Page, str], Path]) -> None:
    url, _ = journey_console
    page = browser_page
    page.goto(url)
    wait_for_app_run(page)
    sign_in(page, "olga", "olga pw")
    expect(page.get_by_role("heading", name="Fleet health")).to_be_visible(timeout=PAGE_READY_MS)
    stage = page.locator(f"[data-pipeline='{PIPELINE}'][data-stage='transform']")
    expect(stage).to_have_attribute("data-status", "healthy", timeout=PAGE_READY_MS)

    # 1. A fault in the staging twin.
    page.get_by_text("Inject a fault (staging twin)").click()
    choose(page, "Pipeline", PIPELINE)
    choose(page, "Stage", "transform")
    choose(page, "Fault kind", "schema drift")
    page.get_by_role("button", name="Inject fault").click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(
        f"Injected schema drift on {PIPELINE} / transform", timeout=PAGE_READY_MS)
    expect(stage).to_have_attribute("data-status", "failed", timeout=PROPOSAL_MS)

    # 2. The agent's proposal waits on the Approvals page (remapping is medium risk: the policy wants a human).
    open_pending(page, re.compile(rf"remap_schema on {PIPELINE} \/ transform \(pending\)"))  # "/" escaped for JS
    header = page.get_by_role("heading", name=re.compile(rf"^#\d+ · remap_schema on {PIPELINE} \/ transform"))
    expect(header).to_be_visible(timeout=PAGE_READY_MS)
    proposal_id = int(re.match(r"#(\d+)", header.inner_text()).group(1))
    expect(page.get_by_text("schema_drift").first).to_be_visible()  # the diagnosis is part of the evidence
    snap(page, "approvals-pending")

    # 3. The operator approves it.
    page.get_by_role("button", name="Approve", exact=True).click()
    wait_for_app_run(page)
    expect(page.get_by_test_id("stAlertContentSuccess").filter(has_text=f"#{proposal_id} approved: run #")
           ).to_be_visible(timeout=PAGE_READY_MS)

    # 4. The pipeline recovers on the Fleet page (live panel, no reloads).
    page.get_by_role("link", name="Fleet health").click()
    expect(page.get_by_role("heading", name="Fleet health")).to_be_visible(timeout=PAGE_READY_MS)
    expect(stage).to_have_attribute("data-status", "healthy", timeout=RECOVERY_MS)
    expect(page.locator(f"tr[data-pipeline='{PIPELINE}']")).to_have_attribute("data-status", "healthy",
                                                                            timeout=RECOVERY_MS)
    snap(page, "fleet-recovered")

    # 5. The audit log tells the whole chain of that proposal, in order.
    page.get_by_role("link", name="Audit log").click()
    wait_for_app_run(page)
    page.get_by_label("Proposal #").fill(str(proposal_id))
    page.keyboard.press("Enter")
    wait_for_app_run(page)
    chain = page.get_by_test_id("stTable")
    expect(chain).to_contain_text("agent_feedback", timeout=PAGE_READY_MS)
    story = chain.inner_text()
    steps = ["proposal_created", "proposal_approved", "action_started", "action_finished", "agent_feedback"]
    assert [story.index(s) for s in steps] == sorted(story.index(s) for s in steps), story
    assert "olga" in story and "worker:" in story and "succeeded" in story
    expect(page.get_by_test_id("stException")).to_have_count(0)
    snap(page, "audit-chain")
