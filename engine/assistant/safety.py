"""Guards that hold whatever a model, a log line or a user writes.

- Secrets never leave: answers are redacted of the configured key and of anything shaped like a credential.
- Proposals need a user who asked for a change: text inside tool results cannot make the assistant queue one.
- Log text shown in answers is quoted as data (inline code), never as markdown that could render links.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.assistant.entities import normalise
from engine.assistant.intent import find_action, is_confirmation

_KEY_SHAPES = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}|\bAKIA[0-9A-Z]{16}\b|"
                         r"\beyJ[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-.]+|(?i:bearer\s+)[A-Za-z0-9_\-.=]{12,}")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like an API key replaced by [redacted]."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def defang_markdown(text: str) -> str:
    """Model-written markdown without links or images: an image URL is fetched by the browser, which makes it a
    way to carry data out of the page. "[a](b)" becomes "[a] (b)" and "![" becomes "! [", which render as text."""
    return text.replace("](", "] (").replace("![", "! [")


def user_requested_change(question: str) -> bool:
    """Whether the user's own words ask for a change (an action verb, "fix", or "yes, do it")."""
    text = normalise(question)
    asks, _ = find_action(text)
    return asks or is_confirmation(text) or bool(re.search(r"\bpropos\w*|\bqueue\b|\bfile (?:it|a|the)\b", text))


def quote_log(message: str, limit: int = 220) -> str:
    """A log line as inline code: backticks and newlines neutralised, cut to `limit` characters."""
    clean = " ".join(message.replace("`", "'").split())
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return f"`{clean}`"
