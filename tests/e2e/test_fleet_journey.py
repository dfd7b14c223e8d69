"""Browser journeys over the live console: watch the fleet, inject a fault, see it fail; read the SLO page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import choose

# The twin ticks every second and the fleet panel refreshes every 2 s: a fault shows within a few
# seconds; the bound leaves room for a slow CI machine.
FAULT_VISIBLE_MS = 20_000
PAGE_READY_MS = 30_000


def test_inject_schema_drift_turns_transform_failed(console_page: Page, snap: Callable[[Page, str], Path]) -> None:
    page = console_page
    expect(page.get_by_role("heading", name="Fleet health")).to_be_visible(timeout=PAGE_READY_MS)
    orders = page.locator("tr[data-pipeline='orders']")
    expect(orders).to_be_visible(timeout=PAGE_READY_MS)
    expect(orders.locator(".sh-pid")).to_have_text("orders")
    expect(page.locator("tr[data-pipeline]")).to_have_count(12)
    # Live: the panel's as-of time moves on by itself, without any interaction.
    as_of = page.get_by_text(re.compile(r"^As of \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    first = as_of.inner_text()
    expect(as_of).not_to_have_text(first, timeout=FAULT_VISIBLE_MS)
    stage = page.locator("[data-pipeline='orders'][data-stage='transform']")
    expect(stage).to_have_attribute("data-status", "healthy")
    snap(page, "fleet-before")

    page.get_by_text("Inject a fault (staging twin)").click()
    choose(page, "Pipeline", "orders")
    choose(page, "Stage", "transform")
    choose(page, "Fault kind", "schema drift")
    page.get_by_role("button", name="Inject fault").click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(
        "Injected schema drift on orders / transform", timeout=PAGE_READY_MS)

    expect(stage).to_have_attribute("data-status", "failed", timeout=FAULT_VISIBLE_MS)
    expect(stage).to_have_attribute("title", re.compile(r"glue-orders-transform .*customer_id"))
    expect(page.locator("tr[data-pipeline='orders']")).to_have_attribute("data-status", "failed")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.get_by_role("heading", name="Fleet health").scroll_into_view_if_needed()
    snap(page, "fleet-after-schema-drift")


def test_slo_page_renders_charts_and_exports(console_page: Page, snap: Callable[[Page, str], Path]) -> None:
    page = console_page
    page.get_by_role("link", name="SLO & MTTR").click()
    expect(page.get_by_role("heading", name="SLO & MTTR")).to_be_visible(timeout=PAGE_READY_MS)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=PAGE_READY_MS)
    expect(page.get_by_test_id("stDownloadButton")).to_have_count(2)
    expect(page.get_by_test_id("stMetric").filter(has_text="SLO attainment")).to_contain_text("%")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    snap(page, "slo")
