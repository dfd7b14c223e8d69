"""The actions the assistant may propose: risk, where they apply, their parameters' bounds, and the usual fix
for each diagnosed cause. Proposing only queues; nothing here executes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.errors import ActionParamsError
from engine.execution.catalog import ANY_STAGE, CATALOG, ActionSpec
from engine.execution.params import ALLOWED, ActionParams, check_params
from engine.model import ActionKind, FaultKind, Stage

__all__ = ["RULES", "ActionParams", "ActionRule", "check_action", "remedy"]


@dataclass(frozen=True, slots=True)
class ActionRule:
    """The chat's view of one catalog action: risk, parameters, the stages it may name, where it lands."""

    risk: str  # low | medium | high
    params: frozenset[str]
    stages: frozenset[Stage] | None  # None: any stage
    default_stage: Stage
    summary: str
    pipeline_wide: bool = False


def _rule(spec: ActionSpec) -> ActionRule:
    # A pipeline-wide action always lands on its default stage (a DMS task lives at the source), so that is
    # the one stage the chat names for it.
    stages = frozenset({spec.default_stage}) if spec.pipeline_wide else (
        None if spec.stages == ANY_STAGE else spec.stages)
    return ActionRule(spec.risk.value, ALLOWED.get(spec.kind, frozenset()), stages, spec.default_stage,
                      spec.summary, spec.pipeline_wide)


# One catalog for the whole product: the chat proposes exactly what execution would accept.
RULES: dict[ActionKind, ActionRule] = {kind: _rule(spec) for kind, spec in CATALOG.items()}


def check_action(action: ActionKind, stage: Stage | None, params: ActionParams) -> Stage:
    """The stage the action lands on; ValueError naming the problem when the stage or a parameter does not fit."""
    spec, rule = CATALOG[action], RULES[action]
    if stage is not None and rule.stages is not None and stage not in rule.stages:
        allowed = ", ".join(sorted(s.value for s in rule.stages))
        hint = " (use scale_warehouse for the warehouse)" if action is ActionKind.SCALE_WORKERS else ""
        raise ValueError(f"{action.value} applies to the {allowed} stage, not {stage.value}{hint}")
    try:
        check_params(action, params)
    except ActionParamsError as e:
        raise ValueError(str(e)) from e
    return spec.target(stage)


# The usual fix per diagnosed cause (the runbooks explain why); scale actions get a size from telemetry.
REMEDIES: dict[str, ActionKind] = {
    FaultKind.SCHEMA_DRIFT.value: ActionKind.REMAP_SCHEMA,
    FaultKind.RESOURCE_CONTENTION.value: ActionKind.SCALE_WORKERS,
    FaultKind.NETWORK_FAILURE.value: ActionKind.RETRY_WITH_BACKOFF,
    FaultKind.TIMEOUT.value: ActionKind.RESTART_TASK,
    FaultKind.WAREHOUSE_OVERLOAD.value: ActionKind.SCALE_WAREHOUSE,
    FaultKind.CDC_STOPPED.value: ActionKind.RESTART_CDC_TASK,
    "warehouse_saturation": ActionKind.SCALE_WAREHOUSE,
    # Anything else (expired credentials, unknown) goes to a human.
}


def remedy(error_type: str, stage: Stage | None, current_workers: float | None) -> tuple[ActionKind, Stage, dict]:
    """The action, stage and parameters that usually fix `error_type` (escalation when the cause is unknown)."""
    action = REMEDIES.get(error_type, ActionKind.ESCALATE_TO_HUMAN)
    rule = RULES[action]
    target = stage if stage is not None and (rule.stages is None or stage in rule.stages) else rule.default_stage
    params: dict[str, Any] = {}
    if action in (ActionKind.SCALE_WORKERS, ActionKind.SCALE_WAREHOUSE):
        base = current_workers if current_workers and current_workers > 0 else 2.0
        params["workers"] = int(min(64, max(base + 1, math.ceil(base * 2))))
    return action, target, params
