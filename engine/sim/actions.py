"""How the twin responds to recovery actions: delays, success odds, and which faults each one fixes.

The right action fixes its fault with high probability after a realistic delay; a wrong one wastes
time, costs money (scaling) or makes things worse (restarting hard against a flapping network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.model import ActionKind, FaultKind, Stage

# (min, max) minutes until the action completes, and the chance it completes successfully.
TIMING: dict[ActionKind, tuple[int, int, float]] = {
    ActionKind.RETRY_WITH_BACKOFF: (1, 2, 0.98),
    ActionKind.RESTART_TASK: (2, 4, 0.95),
    ActionKind.SCALE_WORKERS: (3, 5, 0.97),
    ActionKind.REMAP_SCHEMA: (3, 6, 0.95),
    ActionKind.APPLY_BACK_PRESSURE: (1, 1, 0.99),
    ActionKind.RESCHEDULE: (2, 4, 0.85),
    ActionKind.RELOAD_TABLES: (10, 20, 0.98),
    ActionKind.RESTART_CDC_TASK: (3, 5, 0.85),
    ActionKind.SCALE_WAREHOUSE: (8, 12, 0.95),
    ActionKind.ESCALATE_TO_HUMAN: (30, 60, 0.97),
    ActionKind.WAIT: (1, 1, 1.0),
}

# Which fault kinds an action removes when it succeeds (on the stage it targets, or pipeline-wide).
# Scaling also relieves its faults through the physics (capacity); listing it here ends the fault once the
# action lands, so the stage's telemetry settles back to normal instead of staying at the fault's level for
# as long as the cause would have lasted. Retry with backoff is not listed: it cannot end a flapping link,
# it attaches a retry policy to the task and the twin plays every run's attempts against the outages
# (`faults._network_failure`), so how well it protects depends on its base, factor, cap and attempts.
FIXES: dict[ActionKind, frozenset[FaultKind]] = {
    ActionKind.RESTART_TASK: frozenset({FaultKind.TIMEOUT}),
    ActionKind.REMAP_SCHEMA: frozenset({FaultKind.SCHEMA_DRIFT}),
    ActionKind.RESCHEDULE: frozenset({FaultKind.WAREHOUSE_OVERLOAD, FaultKind.WAREHOUSE_SATURATION}),
    ActionKind.SCALE_WORKERS: frozenset({FaultKind.RESOURCE_CONTENTION}),
    ActionKind.SCALE_WAREHOUSE: frozenset({FaultKind.WAREHOUSE_OVERLOAD, FaultKind.WAREHOUSE_SATURATION,
                                           FaultKind.RESOURCE_CONTENTION}),
    ActionKind.RELOAD_TABLES: frozenset({FaultKind.CDC_STOPPED}),
    ActionKind.RESTART_CDC_TASK: frozenset({FaultKind.CDC_STOPPED}),
    ActionKind.ESCALATE_TO_HUMAN: frozenset(FaultKind),
}
PIPELINE_WIDE = frozenset({ActionKind.REMAP_SCHEMA, ActionKind.ESCALATE_TO_HUMAN, ActionKind.RESCHEDULE,
                           ActionKind.RELOAD_TABLES, ActionKind.RESTART_CDC_TASK})

# Where an action lands when the caller names no stage.
DEFAULT_STAGE: dict[ActionKind, Stage] = {
    ActionKind.RELOAD_TABLES: Stage.SOURCE,
    ActionKind.RESTART_CDC_TASK: Stage.SOURCE,
    ActionKind.SCALE_WAREHOUSE: Stage.WAREHOUSE,
    ActionKind.RESCHEDULE: Stage.WAREHOUSE,
}

# A retry policy's default: base 30 s, factor 2, cap 300 s, 6 attempts.
RETRY_DEFAULTS = {"base_s": 30.0, "factor": 2.0, "cap_s": 300.0, "max_attempts": 6}
MAX_SCALE = 8.0
# How long a retry policy, once set on a task, stays in force for its next runs.
RETRY_POLICY_MINUTES = 360


MAX_RETRY_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry with exponential backoff and full jitter (AWS's "full jitter"): after the k-th failed attempt
    (k = 0, 1, …) the task waits uniform(0, min(cap_s, base_s · factor^k)) seconds, at most `max_attempts`
    attempts in all (the first one included)."""

    base_s: float = RETRY_DEFAULTS["base_s"]
    factor: float = RETRY_DEFAULTS["factor"]
    cap_s: float = RETRY_DEFAULTS["cap_s"]
    max_attempts: int = int(RETRY_DEFAULTS["max_attempts"])

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.factor >= 1 and self.cap_s > 0
                and 1 <= self.max_attempts <= MAX_RETRY_ATTEMPTS):
            raise ValueError("retry_with_backoff: need base_s > 0, factor >= 1, cap_s > 0 and "
                             f"1 <= max_attempts <= {MAX_RETRY_ATTEMPTS}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RetryPolicy:
        p = {**RETRY_DEFAULTS, **params}
        return cls(float(p["base_s"]), float(p["factor"]), float(p["cap_s"]), int(p["max_attempts"]))

    def ceiling(self, k: int) -> float:
        """The longest wait after the k-th failed attempt (the jitter draws below it)."""
        return min(self.cap_s, self.base_s * self.factor ** k)

    def window_s(self) -> float:
        """The longest the policy can keep a run retrying: the sum of its capped delays."""
        return sum(self.ceiling(k) for k in range(self.max_attempts))


def retry_window_minutes(params: dict[str, Any]) -> int:
    """How long a retry-with-backoff policy keeps retrying: the sum of its capped backoff delays."""
    return max(1, round(RetryPolicy.from_params(params).window_s() / 60))


@dataclass(slots=True)
class PendingAction:
    """An action the twin is carrying out."""

    id: int
    pipeline: str
    index: int
    action: ActionKind
    stage: Stage
    params: dict[str, Any]
    started: int
    completes: int
    succeeds: bool
    done: bool = False
    outcome: str = field(default="running")
