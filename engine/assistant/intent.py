"""What a question asks for: the intent (metric, errors, anomalies, explain, search, propose, status, ...), the
action and parameters of a fix request, and what to search for. Entities and windows come from
`entities` and `window`; this module decides what to do with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.assistant.entities import Catalog, Mentions, find_mentions, normalise, unknown_name
from engine.assistant.window import Window, parse_window
from engine.model import ActionKind, Stage


class Intent(StrEnum):
    METRIC = "metric"
    ERRORS = "errors"
    ANOMALIES = "anomalies"
    EXPLAIN = "explain"
    SEARCH = "search"
    PROPOSE = "propose"  # file a proposal
    ADVISE = "advise"  # say what would fix it, offer the proposal, file nothing
    CONFIRM = "confirm"  # "yes, do it": file the fix suggested in the previous answer
    STATUS = "status"
    SECRETS = "secrets"
    HELP = "help"


# (phrase, action); the first phrase found in the question wins, so specific phrases come first.
ACTION_PHRASES: tuple[tuple[str, ActionKind | None], ...] = tuple((p, a) for a, phrases in (
    (ActionKind.APPLY_BACK_PRESSURE, ("back pressure", "backpressure", "throttle", "throttling", "rate limit",
                                      "slow down ingestion", "slow down the ingestion")),
    (ActionKind.RETRY_WITH_BACKOFF, ("retry with backoff", "exponential backoff", "backoff", "back off", "retry",
                                     "retries", "re try")),
    (ActionKind.REMAP_SCHEMA, ("remap", "re map", "fix the schema", "update the mapping", "schema mapping",
                               "map the column", "map the new column", "apply the new schema", "fix the mapping")),
    (ActionKind.RELOAD_TABLES, ("reload", "full load", "resync", "re sync", "reload the tables")),
    (ActionKind.RESTART_CDC_TASK, ("restart cdc", "restart the cdc", "restart dms", "restart the dms",
                                   "resume replication", "resume the replication", "restart replication",
                                   "restart the replication", "resume the dms", "start the dms", "resume cdc",
                                   "resume the cdc")),
    (ActionKind.RESCHEDULE, ("reschedule", "re schedule", "move the load", "postpone", "defer the load",
                             "shift the schedule", "run it later")),
    (ActionKind.SCALE_WAREHOUSE, ("scale the warehouse", "resize the warehouse", "resize the cluster",
                                  "scale redshift", "resize redshift", "add nodes", "more nodes", "scale warehouse")),
    (ActionKind.SCALE_WORKERS, ("scale up", "scale out", "scale", "add workers", "more workers", "increase workers",
                                "increase the workers", "add capacity", "more capacity", "increase capacity",
                                "upsize", "add executors", "more executors", "add dpus", "more dpus", "bump",
                                "double the", "triple the", "resize", "increase the worker", "raise the worker")),
    (ActionKind.RESTART_TASK, ("restart", "kill and restart", "bounce", "rerun", "re run", "unstick", "kick",
                               "reboot", "recycle")),
    (ActionKind.ESCALATE_TO_HUMAN, ("escalate", "page someone", "page the on call", "page on call", "page oncall",
                                    "page the oncall", "call a human", "wake someone", "get a human", "page a human",
                                    "notify on call", "notify the on call")),
    (None, ("fix", "remediate", "heal", "mitigate", "repair", "sort out", "sort it out", "resolve",
            "do something about", "take care of", "get it working", "get it running")),
) for p in phrases)

_REQUEST = re.compile(r"^(?:please|pls|plz|kindly|go ahead|lets|let us|can you|could you|would you|will you|"
                      r"can we|could we|i want|i would like|we need|need to|i need|you should|we should|"
                      r"time to|ok|okay|now|just|then|so|hey|hi|assistant)\b")
_ADVICE_ASK = re.compile(r"\b(?:what should (?:i|we) do|what do (?:i|we) do|what can (?:i|we) do|what to do|"
                         r"what would you do|what would you recommend|next steps?|how (?:do|can|should) (?:i|we) fix|"
                         r"how to fix|what s the fix|whats the fix|what is the fix|the fix for|recommend\w*|"
                         r"suggest\w*|advice|advise|any ideas)\b")
_FILE_WORDS = re.compile(r"\b(?:propose|proposal|queue|file|submit|raise|request|open a|create a|schedule a)\b")
_ADVICE = re.compile(r"^(?:how|what|which|should|shall|is|would|why|do|does|did|any|when|where|"
                     r"could it|can it|will)\b")
_CONFIRM = re.compile(r"^(?:yes|yep|yeah|sure|ok|okay|please do|do it|do that|go ahead|go for it|proceed|"
                      r"approve|confirmed?|ship it|sounds good|propose it|propose that|propose this|file it|"
                      r"queue it|apply it|apply that|apply the fix|propose the fix|file the fix|queue the fix|"
                      r"propose this fix|propose the suggested fix)\b")
_SECRETS = re.compile(r"\b(?:api[\s_-]?key|secret|password|passwd|token|credential|credentials|private key|"
                      r"openai[\s_]api|env(?:ironment)? var|system prompt|your instructions|your prompt)\b")
_EXPLAIN = re.compile(r"\b(?:why|root cause|rca|cause|caused|causing|what happened|what is wrong|what went wrong|"
                      r"went wrong|explain|diagnose|diagnosis|investigate|tell me (?:more )?about incident|"
                      r"details? (?:of|on|for) incident|what broke|broken|broke|failing|is down|are down|went down|"
                      r"blew up|what is going on|what is up with|the matter with|trouble with|issue with|"
                      r"problem with|wrong with)\b")
# Questions about "what is wrong" with nothing named: the fleet's state answers them best.
_GENERIC_TROUBLE = re.compile(r"^(?:what is wrong|is (?:anything|something) (?:wrong|broken|down|failing)|"
                              r"what is going on|anything (?:wrong|broken)|what is broken|whats up|what is up|"
                              r"are we ok|are we good|is everything ok)\b")
_OPEN = re.compile(r"\b(?:open|ongoing|active|unresolved|still open|not closed|current|currently|right now)\b")
_ERRORS = re.compile(r"\b(?:errors?|failures?|failed runs?|fails?|failed|exceptions?|error events?|threw|thrown|"
                     r"throw|throwing|crashes|crashed|crash)\b")
_COUNT = re.compile(r"\b(?:how many|number of|count|counts|total|tally|how often|how frequently|many)\b")
_ANOMALY = re.compile(r"\b(?:anomal\w*|incidents|incident|unusual|outliers?|weird|strange|abnormal|odd|spikes|alerts?|"
                      r"outages?|problems|issues|anything wrong|what broke|any trouble|went wrong|go wrong|"
                      r"misbehav\w*|degraded|flagged|suspicious)\b")
_LIST = re.compile(r"\b(?:list|show|any|which|what|were there|was there|have there|has there|how many|all)\b")
_SEARCH = re.compile(r"\b(?:search|grep|find logs?|look for|look up|lookup|runbooks?|playbooks?|docs|documentation|"
                     r"log lines?|logs? (?:mentioning|containing|about|with|that mention|saying|matching|for|like)|"
                     r"show me (?:the )?logs?|messages? (?:mentioning|containing|about|saying)|"
                     r"how (?:do|should|can) (?:i|we) (?:handle|deal with|fix|recover from|troubleshoot|debug)|"
                     r"how to (?:handle|deal with|fix|recover from|troubleshoot|debug)|what does the runbook)\b")
_STATUS = re.compile(r"\b(?:status|health|healthy|unhealthy|how is|how are|overview|doing|state of|summary|"
                     r"summarize|summarise|okay|ok|all good|everything good|any red|up and running|running fine)\b")
_FOLLOW_UP = re.compile(r"^(?:and|what about|how about|same for|and for|also|now for|now|then|ok and|for|"
                        r"and the|and on|and what about|compare)\b")
_HELP = re.compile(r"^(?:help|\?|what can you do|hi|hello|hey)\b")
_QUOTED = re.compile(r"[\"“`']([^\"”`']{2,200})[\"”`']")
_SEARCH_TAIL = re.compile(r"\b(?:for|mentioning|containing|about|matching|saying|like|with|on)\s+(.+)$")
# Any number, signed or not, whole or not: a count out of bounds must reach the bounds check and be refused,
# never be read as a different, valid one ("-5 workers" as 5, "100000" as its first four digits).
_WORKERS = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(?:workers?|nodes?|executors?|dpus?|instances?|slots?)\b|"
                      r"\bto\s+(-?\d+(?:\.\d+)?)\b(?!\s*(?:%|percent|min|minutes|h|hours|s|sec))")
_UNITS_OF_CAPACITY = r"(?:workers?|nodes?|executors?|dpus?|instances?)"
_ADD_WORKERS = re.compile(rf"\b(\d{{1,3}})\s*(?:more|extra|additional)\s+{_UNITS_OF_CAPACITY}|"
                          rf"\b(?:add|another|plus)\s+(\d{{1,3}})\s+{_UNITS_OF_CAPACITY}|\+\s*(\d{{1,3}})\s*{_UNITS_OF_CAPACITY}")
_FACTOR = re.compile(r"\b(?:x\s?(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s?x|factor of (\d+(?:\.\d+)?)|"
                     r"by (\d+(?:\.\d+)?)\s?x)\b")
_PERCENT = re.compile(r"\b(\d{1,3})\s*(?:%|percent|pct)")
_ATTEMPTS = re.compile(r"\b(\d{1,2})\s*(?:attempts?|retries|tries)\b")
_BASE = re.compile(r"\bbase\s*(?:of\s*)?(\d+(?:\.\d+)?)\s*(s|sec|seconds?|m|min|minutes?)?\b")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A question, understood."""

    intent: Intent
    mentions: Mentions
    window: Window | None = None
    action: ActionKind | None = None
    params: dict[str, Any] = field(default_factory=dict)
    add_workers: int | None = None
    query: str | None = None
    search_source: str = "all"
    follow_up: bool = False  # starts like a follow-up: "and ...", "what about ...", "same for ..."
    short: bool = False
    only_open: bool = False  # "open incidents", "what is broken right now"
    unknown_name: str | None = None  # a pipeline or component named outright that the fleet does not have


def is_confirmation(text: str) -> bool:
    """Whether normalised `text` is a short "yes, do it" to a fix suggested earlier."""
    return bool(_CONFIRM.search(text)) and len(text.split()) <= 8


_GROW = re.compile(r"\b(?:increase|raise|bump|grow|expand|boost|up|add|reduce|decrease|lower|shrink|cut)\b"
                   r"(?:\s+[a-z0-9]+){0,4}?\s+(?:capacity|workers?|nodes?|executors?|dpus?|size|cluster size)\b")


def _inflected(phrase: str, past: bool = False) -> str:
    """A phrase that also matches its -s and -ing forms ("scale" → "scales", "scaling"), or its -ed form."""
    head, last = phrase.rsplit(" ", 1) if " " in phrase else ("", phrase)
    if past:
        stem = re.escape(last[:-1]) + r"ed" if last.endswith("e") else re.escape(last) + r"ed"
    else:
        stem = re.escape(last[:-1]) + r"(?:e|es|ing)" if last.endswith("e") else re.escape(last) + r"(?:s|ing)?"
    return (re.escape(head) + " " if head else "") + stem


def find_action(text: str) -> tuple[bool, ActionKind | None]:
    """(whether the text asks for a change, which action if it names one).

    A past participle counts only inside a request ("I need the DAG restarted"), not in a question about the
    past ("was the DAG restarted?").
    """
    for phrase, action in ACTION_PHRASES:
        if re.search(rf"(?<![a-z]){_inflected(phrase)}(?![a-z])", text):
            return True, action
    if _GROW.search(text):
        return True, ActionKind.SCALE_WORKERS
    if _REQUEST.search(text):
        for phrase, action in ACTION_PHRASES:
            if re.search(rf"(?<![a-z]){_inflected(phrase, past=True)}(?![a-z])", text):
                return True, action
    return False, None


def action_params(text: str, action: ActionKind | None) -> tuple[dict[str, Any], int | None]:
    """Parameters named in a fix request ("to 16 workers", "double", "6 attempts", "to 70%")."""
    params: dict[str, Any] = {}
    add = None
    if action in (ActionKind.SCALE_WORKERS, ActionKind.SCALE_WAREHOUSE):
        if m := _ADD_WORKERS.search(text):
            add = int(next(g for g in m.groups() if g))
        elif m := _WORKERS.search(text):
            count = float(m[1] or m[2])
            params["workers"] = int(count) if count.is_integer() else count
        elif "triple" in text:
            params["factor"] = 3.0
        elif "double" in text or "twice" in text:
            params["factor"] = 2.0
        elif m := _FACTOR.search(text):
            params["factor"] = float(next(g for g in m.groups() if g))
        elif m := _PERCENT.search(text):
            params["factor"] = round(1 + int(m[1]) / 100, 2)
    elif action is ActionKind.RETRY_WITH_BACKOFF:
        if m := _ATTEMPTS.search(text):
            params["max_attempts"] = int(m[1])
        if m := _BASE.search(text):
            params["base_s"] = float(m[1]) * (60 if (m[2] or "s").startswith("m") else 1)
    elif action is ActionKind.APPLY_BACK_PRESSURE:
        if re.search(r"\b(?:release|lift|remove|stop|undo|turn off|disable)\b", text):
            params["release"] = True
        elif m := _PERCENT.search(text):
            params["max_utilisation"] = int(m[1]) / 100
    return params, add


def refine_action(action: ActionKind | None, stage: Stage | None) -> ActionKind | None:
    """Fit a generic verb to the stage: restarting the source restarts the CDC task, scaling the warehouse
    resizes the cluster."""
    if action is ActionKind.RESTART_TASK and stage is Stage.SOURCE:
        return ActionKind.RESTART_CDC_TASK
    if action is ActionKind.SCALE_WORKERS and stage is Stage.WAREHOUSE:
        return ActionKind.SCALE_WAREHOUSE
    return action


def search_query(question: str, text: str) -> str:
    if m := _QUOTED.search(question):
        return m[1].strip()
    if m := _SEARCH_TAIL.search(text):
        return m[1].strip()
    return text


def _classify(text: str, m: Mentions, asks_change: bool, action: ActionKind | None) -> Intent:
    wants_file = bool(_FILE_WORDS.search(text))
    advice = bool(_ADVICE.search(text)) and not wants_file
    runbook_question = bool(_SEARCH.search(text)) and not m.pipelines
    if _SECRETS.search(text):
        return Intent.SECRETS
    if _ADVICE_ASK.search(text) and not runbook_question and (m.pipelines or m.incident_id or not _SEARCH.search(text)):
        return Intent.PROPOSE if wants_file else Intent.ADVISE
    if asks_change and not runbook_question:
        if wants_file or _REQUEST.search(text) or not advice:
            return Intent.PROPOSE
        if m.pipelines or action is not None:
            return Intent.ADVISE
    if _SEARCH.search(text):
        return Intent.SEARCH
    if _EXPLAIN.search(text) or (m.incident_id is not None and not _LIST.search(text)):
        if not (m.pipelines or m.incident_id) and (m.whole_fleet or _ANOMALY.search(text)):
            return Intent.ANOMALIES
        if not (m.pipelines or m.incident_id) and _GENERIC_TROUBLE.search(text):
            return Intent.STATUS
        return Intent.EXPLAIN
    errors = bool(_ERRORS.search(text))
    if errors and "error_count" in m.metrics and m.aggregation not in (None, "sum") and not _COUNT.search(text):
        return Intent.METRIC
    if errors:
        return Intent.ERRORS
    if _ANOMALY.search(text):
        return Intent.ANOMALIES
    if m.metrics:
        return Intent.METRIC
    if _STATUS.search(text) or _GENERIC_TROUBLE.search(text):
        return Intent.STATUS
    return Intent.HELP


def parse(question: str, catalog: Catalog, newest: Any = None, earliest: Any = None) -> Parsed:
    """Understand `question` against the fleet in `catalog`; windows need the store's newest minute."""
    text = normalise(question)
    mentions = find_mentions(question, catalog)
    window = parse_window(question, newest, earliest) if newest is not None else None
    if is_confirmation(text) and not mentions.pipelines:
        return Parsed(Intent.CONFIRM, mentions, window)
    asks_change, action = find_action(text)
    intent = _classify(text, mentions, asks_change, action)
    if _HELP.search(text) and intent is Intent.STATUS and not mentions.pipelines:
        intent = Intent.HELP
    if intent is Intent.STATUS and window is not None and not _OPEN.search(text):
        intent = Intent.ANOMALIES  # "was inventory healthy between 02:00 and 04:00?": health over that window
    action = refine_action(action, mentions.stage)
    params, add = action_params(text, action) if intent in (Intent.PROPOSE, Intent.ADVISE) else ({}, None)
    query, source = None, "all"
    if intent is Intent.SEARCH:
        query = search_query(question, text)
        if re.search(r"\b(?:runbooks?|playbooks?|docs|documentation|how (?:do|should|can|to))\b", text):
            source = "runbooks"
        elif re.search(r"\blogs?\b|\bmessages?\b|\blines?\b", text):
            source = "logs"
    return Parsed(intent, mentions, window, action, params, add, query, source,
                  follow_up=bool(_FOLLOW_UP.search(text)), short=len(text.split()) <= 4,
                  only_open=bool(_OPEN.search(text)) and intent is Intent.ANOMALIES,
                  unknown_name=None if mentions.pipelines else unknown_name(question, catalog))
