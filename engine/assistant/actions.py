"""The actions the assistant may propose: risk, where they apply, their parameters' bounds, and the usual fix
for each diagnosed cause. Proposing only queues; nothing here executes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.model import ActionKind, FaultKind, Stage


class ActionParams(BaseModel):
    """Every parameter any action takes; `check_params` says which one each action allows."""

    model_config = ConfigDict(extra="forbid")

    workers: int | None = Field(None, ge=1, le=64, description="scale_workers / scale_warehouse: target count")
    factor: float | None = Field(None, ge=0.1, le=8.0, description="scale_*: multiply capacity by this instead")
    base_s: float | None = Field(None, gt=0, le=3600, description="retry_with_backoff: first delay in seconds")
    cap_s: float | None = Field(None, gt=0, le=3600, description="retry_with_backoff: longest delay in seconds")
    max_attempts: int | None = Field(None, ge=1, le=20, description="retry_with_backoff: attempts")
    max_utilisation: float | None = Field(None, ge=0.1, le=1.0,
                                          description="apply_back_pressure: admit at most this share of capacity")
    release: bool | None = Field(None, description="apply_back_pressure: lift back pressure")

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True, slots=True)
class ActionRule:
    risk: str  # low | medium | high
    params: frozenset[str]
    stages: frozenset[Stage] | None  # None: any stage
    default_stage: Stage
    summary: str


_ANY = None
RULES: dict[ActionKind, ActionRule] = {
    ActionKind.RETRY_WITH_BACKOFF: ActionRule("low", frozenset({"base_s", "factor", "cap_s", "max_attempts"}), _ANY,
                                              Stage.TRANSFORM, "retry the task with exponential backoff"),
    ActionKind.RESTART_TASK: ActionRule("medium", frozenset(), _ANY, Stage.TRANSFORM, "restart the hung task"),
    ActionKind.SCALE_WORKERS: ActionRule("high", frozenset({"workers", "factor"}),
                                         frozenset({Stage.SOURCE, Stage.ORCHESTRATOR, Stage.TRANSFORM}),
                                         Stage.TRANSFORM, "add workers to absorb the load"),
    ActionKind.REMAP_SCHEMA: ActionRule("medium", frozenset(), _ANY, Stage.TRANSFORM,
                                        "remap the drifted columns, then rerun"),
    ActionKind.APPLY_BACK_PRESSURE: ActionRule("low", frozenset({"max_utilisation", "release"}),
                                               frozenset({Stage.SOURCE}), Stage.SOURCE,
                                               "throttle ingestion at the source"),
    ActionKind.RESCHEDULE: ActionRule("medium", frozenset(), frozenset({Stage.WAREHOUSE, Stage.ORCHESTRATOR}),
                                      Stage.WAREHOUSE, "move the load out of the busy window"),
    ActionKind.RELOAD_TABLES: ActionRule("high", frozenset(), frozenset({Stage.SOURCE}), Stage.SOURCE,
                                         "reload the source tables"),
    ActionKind.RESTART_CDC_TASK: ActionRule("medium", frozenset(), frozenset({Stage.SOURCE}), Stage.SOURCE,
                                            "restart the DMS replication task"),
    ActionKind.SCALE_WAREHOUSE: ActionRule("high", frozenset({"workers", "factor"}), frozenset({Stage.WAREHOUSE}),
                                           Stage.WAREHOUSE, "resize the warehouse cluster"),
    ActionKind.ESCALATE_TO_HUMAN: ActionRule("low", frozenset(), _ANY, Stage.TRANSFORM, "page the on-call engineer"),
    ActionKind.WAIT: ActionRule("low", frozenset(), _ANY, Stage.TRANSFORM, "wait and watch"),
}


def check_action(action: ActionKind, stage: Stage | None, params: ActionParams) -> Stage:
    """The stage the action lands on; ValueError naming the problem when the stage or a parameter does not fit."""
    rule = RULES[action]
    target = stage or rule.default_stage
    if rule.stages is not None and target not in rule.stages:
        allowed = ", ".join(sorted(s.value for s in rule.stages))
        hint = " (use scale_warehouse for the warehouse)" if action is ActionKind.SCALE_WORKERS else ""
        raise ValueError(f"{action.value} applies to the {allowed} stage, not {target.value}{hint}")
    extra = set(params.given()) - rule.params
    if extra:
        allowed = ", ".join(sorted(rule.params)) or "no parameters"
        raise ValueError(f"{action.value} does not take {', '.join(sorted(extra))}; it takes {allowed}")
    given = params.given()
    if "workers" in given and "factor" in given:
        raise ValueError(f"{action.value}: give either workers or factor, not both")
    if action is ActionKind.RETRY_WITH_BACKOFF and "factor" in given and given["factor"] < 1:
        raise ValueError("retry_with_backoff: factor must be at least 1")
    return target


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
