"""The action catalog: what each recovery action risks, costs, where it applies and when it may run again.

Shared by the decision layer (which actions a policy may pick for an observation) and by executors (where an
action lands and with which parameters). One explicit registry, one entry per `ActionKind`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from engine.model import ActionKind, Stage

ANY_STAGE = frozenset(Stage)


class Risk(StrEnum):
    """How much harm an action can do if it is the wrong one (guardrails read this)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One recovery action as the loop knows it.

    `cost` is in abstract money-and-toil units (the reward subtracts it; the bench adds it up);
    `cooldown_minutes` is how long after its last start the same action may not run again on a pipeline;
    `verify_minutes` is how long the loop watches after the action completes before judging it;
    `stages` are the stages it can act on (a stage outside them makes the action unavailable).
    """

    kind: ActionKind
    risk: Risk
    cost: float
    cooldown_minutes: int
    stages: frozenset[Stage]
    default_stage: Stage
    summary: str
    verify_minutes: int = 3
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    changes_capacity: bool = False  # a deliberate change of the stage's normal (its telemetry baseline restarts)
    pipeline_wide: bool = False  # lands on its default stage whatever stage the incident points at
    needs_failure: bool = False  # disruptive: only while the root-cause stage is failing, never on a merely slow one
    hands_off: bool = False  # a human takes the incident over: the loop does nothing more until it closes
    max_streak: int | None = None  # at most this many times in a row (the loop does not sit on a failing pipeline)
    max_tries: int | None = None  # at most this many starts per incident (None: no limit)
    relief: bool = False  # relieves load elsewhere: may land on a healthy stage (nothing else acts on one)

    def target(self, stage: Stage | None) -> Stage:
        """The stage the action lands on for an incident rooted at `stage`."""
        if self.pipeline_wide or stage is None or stage not in self.stages:
            return self.default_stage
        return stage

    def applies_to(self, stage: Stage | None) -> bool:
        """Whether the action makes sense for an incident rooted at `stage` (None: root unknown)."""
        return self.pipeline_wide or stage is None or stage in self.stages


_NO_WAREHOUSE = frozenset({Stage.SOURCE, Stage.ORCHESTRATOR, Stage.TRANSFORM})
CATALOG: dict[ActionKind, ActionSpec] = {
    ActionKind.RETRY_WITH_BACKOFF: ActionSpec(ActionKind.RETRY_WITH_BACKOFF, Risk.LOW, 0.5, 10, ANY_STAGE,
                                              Stage.TRANSFORM, "retry the task with exponential backoff"),
    ActionKind.RESTART_TASK: ActionSpec(ActionKind.RESTART_TASK, Risk.MEDIUM, 1.0, 5,
                                        frozenset({Stage.ORCHESTRATOR, Stage.TRANSFORM}), Stage.TRANSFORM,
                                        "restart the hung task", needs_failure=True),
    ActionKind.SCALE_WORKERS: ActionSpec(ActionKind.SCALE_WORKERS, Risk.HIGH, 4.0, 20, _NO_WAREHOUSE,
                                         Stage.TRANSFORM, "add workers to absorb the load",
                                         params=MappingProxyType({"factor": 2.0}), changes_capacity=True),
    ActionKind.REMAP_SCHEMA: ActionSpec(ActionKind.REMAP_SCHEMA, Risk.MEDIUM, 1.0, 10,
                                        frozenset({Stage.SOURCE, Stage.TRANSFORM, Stage.WAREHOUSE}),
                                        Stage.TRANSFORM, "remap the drifted columns, then rerun", needs_failure=True),
    ActionKind.APPLY_BACK_PRESSURE: ActionSpec(ActionKind.APPLY_BACK_PRESSURE, Risk.LOW, 0.5, 30, ANY_STAGE,
                                               Stage.SOURCE, "throttle ingestion at the source",
                                               params=MappingProxyType({"max_utilisation": 0.8}),
                                               pipeline_wide=True, relief=True),
    ActionKind.RESCHEDULE: ActionSpec(ActionKind.RESCHEDULE, Risk.MEDIUM, 1.0, 15, ANY_STAGE, Stage.WAREHOUSE,
                                      "move the load out of the busy warehouse window", pipeline_wide=True,
                                      relief=True),
    ActionKind.RELOAD_TABLES: ActionSpec(ActionKind.RELOAD_TABLES, Risk.HIGH, 3.0, 30, ANY_STAGE, Stage.SOURCE,
                                         "reload the source tables", pipeline_wide=True, needs_failure=True),
    ActionKind.RESTART_CDC_TASK: ActionSpec(ActionKind.RESTART_CDC_TASK, Risk.MEDIUM, 1.0, 5, ANY_STAGE,
                                            Stage.SOURCE, "restart the DMS replication task", pipeline_wide=True,
                                            needs_failure=True),
    ActionKind.SCALE_WAREHOUSE: ActionSpec(ActionKind.SCALE_WAREHOUSE, Risk.HIGH, 6.0, 30, ANY_STAGE,
                                           Stage.WAREHOUSE, "resize the warehouse cluster",
                                           params=MappingProxyType({"factor": 2.0}), changes_capacity=True,
                                           pipeline_wide=True),
    ActionKind.ESCALATE_TO_HUMAN: ActionSpec(ActionKind.ESCALATE_TO_HUMAN, Risk.LOW, 8.0, 60, ANY_STAGE,
                                             Stage.TRANSFORM, "page the on-call engineer", verify_minutes=0,
                                             hands_off=True),
    ActionKind.WAIT: ActionSpec(ActionKind.WAIT, Risk.LOW, 0.0, 0, ANY_STAGE, Stage.TRANSFORM,
                                "wait and watch", verify_minutes=2, max_streak=2),
}
ACTIONS: tuple[ActionKind, ...] = tuple(CATALOG)
assert set(ACTIONS) == set(ActionKind), "every ActionKind needs a catalog entry"


def available(stage: Stage | None, started: Sequence[tuple[ActionKind, int] | tuple[ActionKind, int, Stage | None]],
              minute: int, catalog: Mapping[ActionKind, ActionSpec] = CATALOG, *,
              failing: bool = True, troubled: Collection[Stage] | None = None,
              earlier: Sequence[tuple[ActionKind, int, Stage | None]] = ()) -> tuple[ActionKind, ...]:
    """Actions whose preconditions hold: the stage fits, disruptive actions only while the root stage is
    failing (`failing`), the cooldown since the action's last start has passed, an action limited to a
    streak (waiting) has not just run that many times in a row, and no action runs more than its
    `max_tries` on one incident (when it has one).

    `troubled` (the stages not healthy now; None: not known) leaves out actions that would land on a healthy
    component other than `stage`: restarting a replication task that runs fine or resizing an idle warehouse
    fixes nothing and costs money or a catch-up; only `relief` actions (back pressure, rescheduling) act on a
    healthy component to relieve another.

    `started` is the incident's history of (action, start minute) or (action, start minute, stage it landed
    on); `minute` is now, on the same clock. A cooldown guards the component an action landed on: a retry
    against the orchestrator does not make a retry against the warehouse wait (pipeline-wide actions, and
    entries that name no stage, cool down for the whole pipeline). `earlier` holds the pipeline's starts for
    incidents that have ended, in the same form: they count for cooldowns only (a component resized for the
    last incident is not resized again for the next one within the cooldown), not for streaks or tries.
    """
    last: dict[ActionKind, int] = {}
    for entry in (*earlier, *started):
        kind, at = entry[0], entry[1]
        landed = entry[2] if len(entry) > 2 else None
        spec = catalog.get(kind)
        if spec is not None and not spec.pipeline_wide and landed is not None and landed is not spec.target(stage):
            continue  # it ran on another component: no cooldown here
        last[kind] = max(at, last.get(kind, at))
    kinds = [entry[0] for entry in started]
    streak = 0
    for kind in reversed(kinds):
        if kind is not kinds[-1]:
            break
        streak += 1
    out = []
    for kind, spec in catalog.items():
        if not spec.applies_to(stage) or (spec.needs_failure and not failing):
            continue
        landing = spec.target(stage)
        if troubled is not None and not spec.relief and landing is not stage and landing not in troubled:
            continue
        if spec.max_streak is not None and kinds and kinds[-1] is kind and streak >= spec.max_streak:
            continue
        if spec.max_tries is not None and kinds.count(kind) >= spec.max_tries:
            continue
        if kind in last and minute - last[kind] < spec.cooldown_minutes:
            continue
        out.append(kind)
    return tuple(out) or (ActionKind.WAIT,)  # everything spent: watch (a human was paged at the latest by now)
