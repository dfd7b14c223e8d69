"""The port every assistant backend implements, and helpers shared by callers (CLI, console, evals)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Protocol

from engine.assistant.results import Answer, Done, ProposalDraft, ReplyEvent, TextDelta, ToolCall, Turn
from engine.security.roles import Principal
from engine.store.db import Store


class AssistantBackend(Protocol):
    """Answers a question over the store: streams tool steps and text, ends with `Done(answer)`."""

    name: str

    def stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[ReplyEvent]: ...


def ask(backend: AssistantBackend, question: str, history: Sequence[Turn] = ()) -> Answer:
    """Drain a backend's stream and return the finished answer."""
    for event in backend.stream(question, history):
        if isinstance(event, Done):
            return event.answer
    raise RuntimeError(f"backend {backend.name} ended without an answer")


def chunks(text: str) -> Iterator[TextDelta]:
    """Text in word-sized pieces, for backends that compose an answer whole and stream it out."""
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield TextDelta(piece)


def file_suggestion(store: Store, draft: ProposalDraft, *, actor: str = "operator", question: str = "",
                    principal: Principal | None = None) -> ToolCall:
    """Queue a suggested fix (the "Propose this fix" button): the same validated `propose_action` tool, which
    refuses a `principal` without the right to propose."""
    from engine.assistant.context import ToolContext
    from engine.assistant.tools import call_tool

    return call_tool(ToolContext(store, actor=actor, question=question, principal=principal), "propose_action",
                     draft.as_arguments())
