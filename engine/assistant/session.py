"""One answer in progress for the offline analyst: the tool calls made so far and how the reply reads.

Handlers are generators: they yield a `ToolStep` for each tool call as it happens (so a page can show the
steps live) and return a `Reply` with the text.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from engine.assistant.context import ToolContext
from engine.assistant.results import ProposalDraft, ReplyEvent, ToolCall, ToolStep
from engine.assistant.tools import call_tool

DEFAULT_METRIC_WINDOW = "last 1 hour"
DEFAULT_EVENT_WINDOW = "last 24 hours"


@dataclass(slots=True)
class Reply:
    text: str
    suggestion: ProposalDraft | None = None
    follow_ups: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


Steps = Generator[ReplyEvent, None, Reply]


class Session:
    """The tool calls of one answer, made through `call_tool` (validated, never raising)."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.calls: list[ToolCall] = []

    def call(self, name: str, **arguments: Any) -> Generator[ReplyEvent, None, ToolCall]:
        args = {k: v for k, v in arguments.items() if v is not None}
        result = call_tool(self.ctx, name, args)
        self.calls.append(result)
        yield ToolStep(result)
        return result


def window_note(call: ToolCall | None, fallback: str | None = None) -> str:
    described = call.result.window if call is not None and call.result.window else fallback
    if not described:
        return ""
    return f"\n\n_Window: {described}; relative windows count back from the newest telemetry in the store._"
