"""The tool registry: names, descriptions, argument models (which give the OpenAI schemas) and `call_tool`,
which validates arguments and never raises into the loop.

Every tool reads the store through repositories with validated arguments; `propose_action` is the only
one that writes, and it only queues a proposal.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.assistant.args import AnomalyArgs, ErrorArgs, ExplainArgs, MetricArgs, ProposeArgs, SearchArgs, StatusArgs
from engine.assistant.context import ToolContext, ToolFailure
from engine.assistant.diagnosis import explain_incident
from engine.assistant.proposals import propose_action
from engine.assistant.queries import count_errors, fleet_status, get_metric, list_anomalies
from engine.assistant.results import ToolCall, ToolResult, ToolStatus, error, no_data
from engine.assistant.search import search_knowledge
from engine.errors import SelfhealError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[ToolContext, Any], ToolResult]
    writes: bool = False


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("get_metric", "A metric of one pipeline component over a time window, aggregated (avg, max, min, p50, p90, "
         "p95, p99, last, sum), with the per-minute series.", MetricArgs, get_metric),
    Tool("count_errors", "Error counts per component over a window: error events (failed runs, stopped tasks, "
         "error log lines) and the total of the error_count metric.", ErrorArgs, count_errors),
    Tool("list_anomalies", "Incidents and anomalous periods (anomaly score at or above a threshold) in a window, "
         "for one pipeline or the whole fleet.", AnomalyArgs, list_anomalies),
    Tool("explain_incident", "Root cause of an incident with the evidence: metrics before and during, log lines, "
         "timeline, and the usual fix. By incident id, or the latest incident of a pipeline.", ExplainArgs,
         explain_incident),
    Tool("search_knowledge", "Search log lines (warnings and errors) and the runbooks by meaning.", SearchArgs,
         search_knowledge),
    Tool("fleet_status", "Health at the newest minute: one pipeline's stages, freshness and open incident, or "
         "the whole fleet.", StatusArgs, fleet_status),
    Tool("propose_action", "Queue a recovery action as a proposal for an operator to approve. It is NOT executed. "
         "Only when the user asks for a fix.", ProposeArgs, propose_action, writes=True),
)}


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema with `$ref`s into `$defs` replaced by the definitions (plainer for tool-calling models)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **rest})
            return {k: walk(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def openai_tools(names: list[str] | None = None) -> list[dict[str, Any]]:
    """The tools in the chat-completions `tools` format, schemas from the argument models."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": _inline_refs(t.args.model_json_schema())}}
            for t in TOOLS.values() if names is None or t.name in names]


def _problems(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'arguments'}: {x['msg']}" for x in e.errors()[:6])


def call_tool(ctx: ToolContext, name: str, arguments: dict[str, Any] | str | None) -> ToolCall:
    """Validate `arguments` and run tool `name`. Always returns a ToolCall; failures are `error` results."""
    tool = TOOLS.get(name)
    raw: Any = arguments
    if tool is None:
        return ToolCall(name, {}, error(f"unknown tool {name!r}; available: {', '.join(TOOLS)}"))
    if isinstance(arguments, str):
        try:
            raw = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            return ToolCall(name, {}, error(f"arguments are not valid JSON: {e.msg}"))
    if not isinstance(raw, dict):
        return ToolCall(name, {}, error("arguments must be a JSON object"))
    try:
        args = tool.args.model_validate(raw)
    except ValidationError as e:
        return ToolCall(name, raw, error(f"invalid arguments for {name}: {_problems(e)}"))
    shown = args.model_dump(mode="json", exclude_none=True)
    try:
        result = tool.run(ctx, args)
    except ToolFailure as e:
        result = no_data(str(e)) if e.no_data else error(str(e))
    except SelfhealError as e:
        result = error(f"the store could not answer: {e}")
    except Exception as e:  # a tool bug must not take the conversation down; it is logged with its traceback
        log.exception("tool %s failed", name)
        result = ToolResult(ToolStatus.ERROR, f"{name} failed unexpectedly ({type(e).__name__}); see the server log")
    return ToolCall(name, shown, result)
