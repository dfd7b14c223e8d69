"""Baseline policies in the same interface as the learner: manual, rules (the static runbook) and oracle.

- `manual`: the alert pages a human; after `PAGING_DELAY_MINUTES` of an open incident (the alert's
  "for" clause plus acknowledgement) the on-call engineer takes it over (`escalate_to_human`, whose own
  30–60 minutes in the twin are the engineer's diagnosis and fix). Nothing automated runs.
- `rules`: the runbook a competent engineer writes: coarse thresholds and the diagnosed error type map to
  one fixed action; two failed tries of the runbook, or a case it has no rule for, page a human as above.
- `oracle`: knows the true active faults (from the twin) and applies the best fix at once. A lower bound
  for benchmarking only; nothing else may read the twin's truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import numpy as np

from engine.decision.policy import Choice, Transition, Update
from engine.decision.state import Observation
from engine.model import ActionKind, FaultKind, Stage

PAGING_DELAY_MINUTES = 5
RUNBOOK_TRIES = 2

_ESCALATE, _WAIT = ActionKind.ESCALATE_TO_HUMAN, ActionKind.WAIT


def _pick(wanted: ActionKind, allowed: Sequence[ActionKind], reason: str) -> Choice:
    if wanted in allowed:
        return Choice(wanted, reason)
    return Choice(_WAIT, f"{reason}, but {wanted.value} is not allowed now (cooldown or stage): waiting")


def _page(obs: Observation, allowed: Sequence[ActionKind], why: str) -> Choice:
    if obs.minutes_open < PAGING_DELAY_MINUTES:
        return Choice(_WAIT, f"{why}; paging a human after {PAGING_DELAY_MINUTES} min")
    return _pick(_ESCALATE, allowed, f"{why}: the on-call engineer takes over")


class _Baseline:
    name = "baseline"

    def learn(self, t: Transition) -> Update | None:
        return None

    def end_episode(self) -> None:
        return None


class ManualPolicy(_Baseline):
    """Alert, then a human fixes it after the paging delay."""

    name = "manual"

    def choose(self, obs: Observation, allowed: Sequence[ActionKind], rng: np.random.Generator) -> Choice:
        return _page(obs, allowed, "alert fired")


# The runbook's rules, first match wins: (condition on the observation, action, why).
RUNBOOK: tuple[tuple[Callable[[Observation], bool], ActionKind, str], ...] = (
    (lambda o: o.error_type == "schema_drift", ActionKind.REMAP_SCHEMA, "column errors → remap the schema"),
    (lambda o: o.error_type == "cdc_stopped", ActionKind.RESTART_CDC_TASK, "CDC lag high / task stopped → restart it"),
    (lambda o: o.error_type == "timeout", ActionKind.RESTART_TASK, "run hung with no progress → restart the task"),
    (lambda o: o.error_type == "network_failure", ActionKind.RETRY_WITH_BACKOFF, "connection errors → retry"),
    (lambda o: o.error_type == "warehouse_overload" or o.warehouse_queue_s >= 60.0, ActionKind.SCALE_WAREHOUSE,
     "warehouse queue wait high → scale the warehouse"),
    (lambda o: o.stage is Stage.WAREHOUSE and (o.hot or o.error_type == "resource_contention"),
     ActionKind.SCALE_WAREHOUSE, "warehouse CPU > 90% → scale the warehouse"),
    (lambda o: o.hot or o.error_type == "resource_contention", ActionKind.SCALE_WORKERS,
     "CPU > 90% → scale workers"),
)


class RulesPolicy(_Baseline):
    """The static runbook."""

    name = "rules"

    def choose(self, obs: Observation, allowed: Sequence[ActionKind], rng: np.random.Generator) -> Choice:
        if obs.attempts >= RUNBOOK_TRIES and obs.last_action is not _ESCALATE:
            return _page(obs, allowed, f"runbook tried {obs.attempts} times")
        for applies, action, why in RUNBOOK:
            if applies(obs):
                return _pick(action, allowed, why)
        return _page(obs, allowed, f"no runbook rule for {obs.error_type} at {obs.stage or 'an unknown stage'}")


# The best fix per true fault kind (fast and reliable beats slow and sure only when the odds allow).
BEST_FIX: dict[FaultKind, ActionKind] = {
    FaultKind.SCHEMA_DRIFT: ActionKind.REMAP_SCHEMA,
    FaultKind.RESOURCE_CONTENTION: ActionKind.SCALE_WORKERS,
    FaultKind.NETWORK_FAILURE: ActionKind.RETRY_WITH_BACKOFF,
    FaultKind.TIMEOUT: ActionKind.RESTART_TASK,
    FaultKind.WAREHOUSE_OVERLOAD: ActionKind.RESCHEDULE,
    FaultKind.CDC_STOPPED: ActionKind.RESTART_CDC_TASK,
    FaultKind.CREDENTIALS_EXPIRED: ActionKind.ESCALATE_TO_HUMAN,
    FaultKind.WAREHOUSE_SATURATION: ActionKind.RESCHEDULE,
}
assert set(BEST_FIX) == set(FaultKind), "the oracle needs a fix for every fault kind"

# (pipeline id, minute's timestamp) → the faults active then, as (kind, stage), earliest first.
Truth = Callable[[str, datetime], Sequence[tuple[FaultKind, Stage]]]


class OraclePolicy(_Baseline):
    """Knows the true faults; applies the best fix of each on its stage at once (benchmarks only).

    Faults are taken earliest first, untreated ones before those whose fix it applied within that action's
    cooldown (a retry schedule absorbing a network outage keeps the outage "active" until it ends, and the
    second fault must not wait for it); when every fault's fix is at work, the earliest one's is repeated.
    Asked about a second stage beside a step at work (`Observation.concurrent`), it fixes a fault on that
    stage or waits."""

    name = "oracle"

    def __init__(self, truth: Truth, cooldowns: Mapping[ActionKind, int] | None = None) -> None:
        self.truth = truth
        self.cooldowns = cooldowns or {}  # minutes per action (the catalog's; the caller passes them)
        self._applied: dict[tuple[str, ActionKind, Stage], datetime] = {}

    def choose(self, obs: Observation, allowed: Sequence[ActionKind], rng: np.random.Generator) -> Choice:
        fixes = [(kind, stage, self._fix(kind, stage)) for kind, stage in self.truth(obs.pipeline_id, obs.ts)]
        if obs.concurrent:  # beside a step at work: only a fault on the stage in question
            fixes = [f for f in fixes if f[1] is obs.stage]
        if not fixes:
            return Choice(_WAIT, "no fault active any more: waiting for the pipeline to drain")
        untreated = [f for f in fixes if not self._at_work(obs, f[2], f[1])]
        kind, stage, action = (untreated or fixes)[0]
        self._applied[(obs.pipeline_id, action, stage)] = obs.ts
        return Choice(action, f"the true fault is {kind.value} at {stage.value}", stage=stage)

    @staticmethod
    def _fix(kind: FaultKind, stage: Stage) -> ActionKind:
        if kind is FaultKind.RESOURCE_CONTENTION and stage is Stage.WAREHOUSE:
            return ActionKind.SCALE_WAREHOUSE
        return BEST_FIX[kind]

    def _at_work(self, obs: Observation, action: ActionKind, stage: Stage) -> bool:
        at = self._applied.get((obs.pipeline_id, action, stage))
        return at is not None and (obs.ts - at).total_seconds() < 60 * self.cooldowns.get(action, 0)
