"""The executor port and the executor over the digital twin.

An executor starts an action and later reports how it went; outcomes are values (an `Execution` with a
status), never exceptions. Approvals, policy files and roles wrap executors later; the loop only needs this
protocol.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from engine.errors import SelfhealError
from engine.execution.catalog import CATALOG, ActionSpec
from engine.model import ActionKind, Stage
from engine.sim.twin import Twin


class ExecStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the action ran and did not work (or could not start)
    REJECTED = "rejected"  # an operator said no: it never ran
    CANCELLED = "cancelled"  # nobody decided in time (expired) or it was withdrawn: it never ran
    TIMED_OUT = "timed_out"  # it did not finish before its deadline

    @property
    def finished(self) -> bool:
        return self is not ExecStatus.RUNNING


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """What the loop asks an executor to do."""

    pipeline_id: str
    action: ActionKind
    stage: Stage
    params: dict[str, Any] = field(default_factory=dict)
    incident_id: int | None = None
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # why (state, Q-values, diagnosis): for approvers
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Execution:
    """An action's state as its executor reports it."""

    ref: str
    request: ActionRequest
    status: ExecStatus
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""


@runtime_checkable
class Executor(Protocol):
    """Carries actions out. `submit` never blocks on the action's completion; `poll` reports progress.

    With an idempotency `key`, submitting the same key again returns the first submission instead of acting
    twice (the way a cloud API honours a client token); the key then is the execution's ref.
    """

    name: str

    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        """Start the action now; a refused or impossible action comes back FAILED/REJECTED, not raised."""
        ...

    def poll(self, ref: str) -> Execution:
        """The current state of a submitted action."""
        ...


@runtime_checkable
class Reconcilable(Protocol):
    """An executor that can say whether a key was ever submitted (a worker taking over a dead worker's run
    asks before submitting) and cancel what has not started."""

    def lookup(self, key: str) -> Execution | None:
        ...

    def cancel(self, key: str) -> bool:
        ...


def request_for(spec: ActionSpec, pipeline_id: str, stage: Stage | None, *, incident_id: int | None = None,
                reason: str = "") -> ActionRequest:
    """The request for catalog action `spec` on an incident rooted at `stage`."""
    return ActionRequest(pipeline_id, spec.kind, spec.target(stage), dict(spec.params), incident_id, reason)


class TwinExecutor:
    """Runs actions in the digital twin (staging). `wait` runs nothing and completes at once."""

    name = "twin"

    def __init__(self, twin: Twin, lock: threading.RLock | None = None) -> None:
        self.twin = twin
        self.lock = lock or threading.RLock()
        self._runs: dict[str, tuple[ActionRequest, int | None, datetime]] = {}

    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        with self.lock:
            if key is not None and key in self._runs:
                return self.poll(key)
            now = self.twin.now
            ref = key or f"twin-{len(self._runs) + 1}"
            if request.action is ActionKind.WAIT:
                self._runs[ref] = (request, None, now)
                return Execution(ref, request, ExecStatus.SUCCEEDED, now, now, "waited")
            try:
                run = self.twin.apply_action(request.pipeline_id, request.action, stage=request.stage,
                                             params=request.params)
            except SelfhealError as e:
                self._runs[ref] = (request, None, now)
                return Execution(ref, request, ExecStatus.FAILED, now, now, str(e))
            self._runs[ref] = (request, run.id, now)
            return Execution(ref, request, ExecStatus.RUNNING, now)

    def lookup(self, key: str) -> Execution | None:
        with self.lock:
            return self.poll(key) if key in self._runs else None

    def cancel(self, key: str) -> bool:
        return False  # twin actions start at once: nothing waits to be cancelled

    def poll(self, ref: str) -> Execution:
        with self.lock:
            request, run_id, started = self._runs[ref]
            if run_id is None:
                return Execution(ref, request, ExecStatus.SUCCEEDED if request.action is ActionKind.WAIT
                                 else ExecStatus.FAILED, started, started)
            run = self.twin.actions[run_id - 1]
            if not run.done:
                return Execution(ref, request, ExecStatus.RUNNING, started)
            status = ExecStatus.SUCCEEDED if run.outcome == "succeeded" else ExecStatus.FAILED
            return Execution(ref, request, status, started, self.twin.time_of(run.completes), run.outcome)


def spec_of(action: ActionKind) -> ActionSpec:
    return CATALOG[action]
