"""The offline analyst: the embedded default backend. No key, no network.

It parses the question (intent, entities, window), fills gaps from the previous turn for follow-ups
("and for payments?"), calls the same tools the OpenAI backend calls, and writes the answer in plain words
with the numbers, the window it used and a chart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from engine.assistant import answers, fixes
from engine.assistant.backend import chunks
from engine.assistant.context import ToolContext, utcnow
from engine.assistant.entities import normalise
from engine.assistant.intent import Intent, Parsed, parse
from engine.assistant.results import (
    Answer,
    Done,
    ReplyEvent,
    Turn,
    filed_proposal,
    last_chart,
    last_window,
)
from engine.assistant.safety import redact
from engine.assistant.session import Reply, Session, Steps
from engine.assistant.window import parse_window
from engine.model import Stage
from engine.security.roles import Principal
from engine.store.db import Store

_NEEDS_PIPELINE = (Intent.METRIC, Intent.ERRORS, Intent.EXPLAIN, Intent.PROPOSE, Intent.ADVISE, Intent.STATUS,
                   Intent.ANOMALIES)
_PRONOUN = frozenset({"it", "its", "this", "that", "them", "same", "one"})


def _previous_context(history: Sequence[Turn]) -> dict[str, Any]:
    for turn in reversed(history):
        if turn.role == "assistant" and turn.context:
            return turn.context
    return {}


def with_context(p: Parsed, prior: dict[str, Any], text: str) -> Parsed:
    """Fill what a follow-up leaves out ("and for payments?", "what about memory?", "and the peak?") from the
    previous turn. Only follow-ups inherit: a question with its own intent and target stands alone."""
    m = p.mentions
    intent = p.intent
    names_something = bool(m.pipelines or m.metrics or m.stage or p.window or m.aggregation or m.unit)
    inherited = False
    if prior.get("intent") and intent is Intent.HELP and names_something and (p.follow_up or p.short):
        intent, inherited = Intent(prior["intent"]), True
    if intent is Intent.HELP and m.pipelines:
        intent = Intent.STATUS
    if not prior:
        return replace(p, intent=intent)
    refers = p.follow_up or inherited or bool(set(text.split()) & _PRONOUN)
    changes: dict[str, Any] = {}
    if not m.pipelines and not m.whole_fleet and prior.get("pipelines") and intent in _NEEDS_PIPELINE and refers:
        changes["pipelines"] = tuple(prior["pipelines"])
    if m.stage is None and prior.get("stage") and refers and (changes or not m.metrics or inherited):
        changes["stage"] = Stage(prior["stage"])
    if not m.metrics and intent is Intent.METRIC and prior.get("metrics"):
        changes["metrics"] = tuple(prior["metrics"])
    if m.aggregation is None and refers and prior.get("aggregation") and intent is Intent.METRIC:
        changes["aggregation"] = prior["aggregation"]
    if m.unit is None and refers and prior.get("unit"):
        changes["unit"] = prior["unit"]
    if m.incident_id is None and prior.get("incident_id") and intent is Intent.EXPLAIN and not m.pipelines \
            and refers and "pipelines" not in changes:
        changes["incident_id"] = prior["incident_id"]
    if intent is Intent.METRIC and not (m.metrics or changes.get("metrics")):
        intent = Intent.STATUS
    mentions = replace(m, **changes) if changes else m
    return replace(p, intent=intent, mentions=mentions, follow_up=refers)


class OfflineAnalyst:
    """Rule-based analyst over the tools; deterministic for a given store and question."""

    name = "offline"

    def __init__(self, store: Store, *, actor: str = "assistant", clock: Callable[[], datetime] = utcnow,
                 principal: Principal | None = None) -> None:
        self.store = store
        self.actor = actor
        self.clock = clock
        self.principal = principal

    def understand(self, question: str, history: Sequence[Turn] = (), ctx: ToolContext | None = None) -> Parsed:
        """The parsed question, with follow-up gaps filled from the history."""
        ctx = ctx or ToolContext(self.store, actor=self.actor, question=question, clock=self.clock,
                                 principal=self.principal)
        span = ctx.span()
        parsed = parse(question, ctx.catalog(), *(span[1], span[0]) if span else (None, None))
        prior = _previous_context(history)
        parsed = with_context(parsed, prior, normalise(question))
        if parsed.window is None and parsed.follow_up and prior.get("window") and span:
            parsed = replace(parsed, window=parse_window(prior["window"], span[1], span[0]))
        return parsed

    def stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[ReplyEvent]:
        ctx = ToolContext(self.store, actor=self.actor, question=question[:2000], clock=self.clock,
                          principal=self.principal)
        parsed = self.understand(question, history, ctx)
        session = Session(ctx)
        prior = _previous_context(history)
        reply = yield from self._dispatch(session, parsed, prior)
        text = redact(reply.text)
        yield from chunks(text)
        calls = tuple(session.calls)
        context = self._context(parsed, reply, prior)
        yield Done(Answer(text=text, backend=self.name, tool_calls=calls, window=last_window(calls),
                          chart=last_chart(calls), follow_ups=tuple(reply.follow_ups[:3]), suggestion=reply.suggestion,
                          proposal=filed_proposal(calls), context=context))

    def _dispatch(self, s: Session, p: Parsed, prior: dict[str, Any]) -> Steps:
        handlers: dict[Intent, Callable[[Session, Parsed], Steps]] = {
            Intent.METRIC: answers.metric, Intent.ERRORS: answers.errors, Intent.ANOMALIES: answers.anomalies,
            Intent.STATUS: answers.status, Intent.SEARCH: answers.search, Intent.SECRETS: answers.secrets,
            Intent.EXPLAIN: fixes.explain, Intent.PROPOSE: fixes.propose, Intent.ADVISE: fixes.advise,
        }
        if p.intent is Intent.CONFIRM:
            return (yield from fixes.confirm(s, p, prior.get("suggestion")))
        if p.unknown_name and p.intent is not Intent.SECRETS:
            return answers.unknown_name_reply(s.ctx.catalog(), p.unknown_name)
        if p.intent in handlers:
            return (yield from handlers[p.intent](s, p))
        return answers.help_reply(s.ctx.catalog(), p.mentions, s.ctx.question)

    @staticmethod
    def _context(p: Parsed, reply: Reply, prior: dict[str, Any]) -> dict[str, Any]:
        m = p.mentions
        context: dict[str, Any] = {
            "intent": p.intent.value if p.intent not in (Intent.CONFIRM, Intent.HELP, Intent.SECRETS)
            else prior.get("intent"),
            "pipelines": list(m.pipelines) or prior.get("pipelines") or [],
            "stage": m.stage.value if m.stage else None, "metrics": list(m.metrics) or prior.get("metrics") or [],
            "aggregation": m.aggregation, "unit": m.unit, "incident_id": m.incident_id,
            "window": p.window.phrase if p.window else None,
            "suggestion": reply.suggestion.as_arguments() if reply.suggestion else prior.get("suggestion"),
        }
        context.update(reply.context)
        return context


def window_of(question: str, store: Store) -> str | None:
    """The window a question names, described (for tests and the CLI); None when it names none."""
    ctx = ToolContext(store)
    span = ctx.span()
    if span is None:
        return None
    w = parse_window(question, span[1], span[0])
    return w.describe() if w else None
