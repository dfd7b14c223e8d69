"""Browser journey: open the Assistant, type a question, watch the answer stream in with its tool step."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import wait_for_app_run

PAGE_READY_MS = 30_000


def test_ask_a_question_and_see_the_answer(console_page: Page, snap: Callable[[Page, str], Path]) -> None:
    page = console_page
    page.get_by_role("link", name="Assistant").click()
    expect(page.get_by_role("heading", name="Assistant")).to_be_visible(timeout=PAGE_READY_MS)
    wait_for_app_run(page)

    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("How many errors has the orders Glue job thrown in the last 2 hours?")
    box.press("Enter")

    answer = page.get_by_test_id("stChatMessage").filter(has_text="error events")
    expect(answer).to_be_visible(timeout=PAGE_READY_MS)
    expect(answer).to_contain_text("glue-orders-transform")
    # The end carries its own date when the window crosses midnight UTC.
    expect(answer).to_contain_text(
        re.compile(r"Window: last 2 h \(\d{4}-\d\d-\d\d \d\d:\d\d → (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC\)"))
    expect(page.get_by_test_id("stExpander").filter(has_text="count_errors")).to_have_count(1)
    wait_for_app_run(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    snap(page, "assistant-answer")
