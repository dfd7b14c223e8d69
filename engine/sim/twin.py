"""The digital twin: a fleet of CDC → DAG → Glue → Redshift pipelines on a simulated clock.

Deterministic from a seed: baseline noise, fault draws and action outcomes come from separate
random streams, so injecting a fault or acting never shifts the noise of other pipelines.
The twin never tells the agent which fault is active; consumers see only `MinuteTelemetry`.
`faults` and `actions` are the ground truth, for evaluation and tests only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from engine.errors import SelfhealError, UnknownActionError, UnknownPipelineError
from engine.model import (
    EPOCH,
    STAGES,
    ActionKind,
    Event,
    EventKind,
    FaultKind,
    PipelineSpec,
    Stage,
    floor_minute,
)
from engine.sim import faults as fault_physics
from engine.sim.actions import (
    DEFAULT_STAGE,
    FIXES,
    MAX_SCALE,
    PIPELINE_WIDE,
    RETRY_POLICY_MINUTES,
    TIMING,
    PendingAction,
    RetryPolicy,
    retry_window_minutes,
)
from engine.sim.faults import Effects, Fault
from engine.sim.fleet import component_names
from engine.sim.scenario import PipelineConfig, Scenario

S = len(STAGES)
SOURCE, ORCH, TRANSFORM, WAREHOUSE = range(S)
QUEUED = slice(ORCH, WAREHOUSE + 1, WAREHOUSE - ORCH)  # the stages with a queue (orchestrator, warehouse), as a view
assert list(range(S))[QUEUED] == [ORCH, WAREHOUSE]
# Nominal worker counts per stage: DMS instances, Airflow slots, Glue workers, Redshift nodes.
BASE_WORKERS = np.array([1.0, 4.0, 10.0, 2.0])
BASE_LATENCY_S = np.array([2.0, 10.0, 45.0, 8.0])
# Metrics that only some stages emit.
STAGE_METRICS: dict[str, tuple[int, ...]] = {
    "cdc_lag_s": (SOURCE,),
    "queue_wait_s": (ORCH, WAREHOUSE),
    "freshness_s": (WAREHOUSE,),
}
# Adaptive back pressure, in minutes of the pipeline's nominal load. Each minute a throttled pipeline's admitted
# share of capacity moves by BP_STEP: down (to `min_utilisation`) while more than BP_TIGHTEN_MIN is queued
# downstream; up (to `max_utilisation`) while downstream keeps up but the source holds rows back; and once
# everything held, at the source and downstream, stays under BP_CALM_MIN for BP_CALM_MINUTES, up past
# `max_utilisation` until the throttle would admit the whole capacity and releases itself.
BP_TIGHTEN_MIN = 2.0
BP_CALM_MIN = 1.0
BP_CALM_MINUTES = 3
BP_STEP = 0.1


class ActionParamError(SelfhealError):
    """An action's parameters are out of bounds."""


@dataclass(frozen=True, slots=True)
class MinuteTelemetry:
    """One simulated minute: metrics as [pipelines, stages] arrays (NaN where a stage has no such metric)."""

    minute: int
    ts: datetime
    metrics: dict[str, np.ndarray]
    events: list[Event]


class Twin:
    """A simulated fleet that emits telemetry each minute and responds to faults and actions."""

    def __init__(self, pipelines: list[PipelineConfig], *, seed: int = 0, start: datetime = EPOCH) -> None:
        if not pipelines:
            raise SelfhealError("the twin needs at least one pipeline")
        self.seed = seed
        self.start = floor_minute(start)
        self.pipelines = [PipelineSpec(p.id, p.freshness_target_minutes, component_names(p.id)) for p in pipelines]
        self._index = {p.id: i for i, p in enumerate(self.pipelines)}
        n = len(self.pipelines)
        setup = np.random.default_rng([seed, 0])
        self._noise = np.random.default_rng([seed, 1])
        self._fault_rng = np.random.default_rng([seed, 2])
        self._action_rng = np.random.default_rng([seed, 3])
        self.base_load = 60_000.0 * np.exp(setup.normal(0.0, 0.6, n))  # rows per minute
        self.phase = setup.uniform(0.0, 2 * math.pi, n)
        self.cap_base = self.base_load[:, None] * setup.uniform(2.6, 3.4, (n, S))
        self.base_latency = BASE_LATENCY_S * setup.uniform(0.7, 1.3, (n, S))
        self.base_fresh_min = setup.uniform(3.0, 6.0, n)
        self.scale = np.ones((n, S))
        self.backlog = np.zeros(n)  # rows admitted but not yet in the warehouse
        self.src_backlog = np.zeros(n)  # rows held at the source (stopped CDC, back pressure)
        self.admit_fraction = np.full(n, np.inf)  # back pressure: admit at most this share of capacity
        self.admit_floor = np.full(n, 0.1)  # the adaptive throttle's bounds while lag is high
        self.admit_ceiling = np.full(n, 1.0)
        self.calm_minutes = np.zeros(n, dtype=int)  # minutes in a row a throttled pipeline held little
        self.retry: dict[tuple[int, int], tuple[RetryPolicy, int]] = {}  # (pipeline, stage) → (policy, until)
        self.restart_until = np.full((n, S), -1)
        self._restarting = False  # a restart may still be under way (restart_until is in the future somewhere)
        self.util = np.zeros((n, S))
        self.load_ratio = np.zeros((n, S))  # new arrivals / capacity, last minute (no catch-up backlog)
        self.minute = 0
        self.faults: list[Fault] = []
        self.actions: list[PendingAction] = []
        self._running: list[PendingAction] = []  # the actions not done yet, in the order they started
        self._pending_events: list[Event] = []

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Twin:
        twin = cls(scenario.pipelines, seed=scenario.seed, start=scenario.start)
        for f in scenario.faults:
            twin.inject_fault(f.pipeline, f.stage_enum, f.kind_enum, severity=f.severity,
                              duration_minutes=f.duration_minutes, at_minute=f.at_minute)
        return twin

    # -- clock ----------------------------------------------------------------------------------
    def time_of(self, minute: int) -> datetime:
        return self.start + timedelta(minutes=minute)

    @property
    def now(self) -> datetime:
        """The start of the next minute the twin will simulate."""
        return self.time_of(self.minute)

    def index_of(self, pipeline_id: str) -> int:
        try:
            return self._index[pipeline_id]
        except KeyError:
            raise UnknownPipelineError(f"unknown pipeline {pipeline_id!r}") from None

    # -- faults and actions ---------------------------------------------------------------------
    def inject_fault(self, pipeline: str, stage: Stage | str, kind: FaultKind | str, *, severity: float = 0.8,
                     duration_minutes: int = 60, at_minute: int | None = None) -> Fault:
        """Schedule a fault (default: starting with the next simulated minute)."""
        try:
            stage, kind = Stage(stage), FaultKind(kind)
        except ValueError as e:
            raise SelfhealError(str(e)) from e
        if not 0 < severity <= 1:
            raise SelfhealError(f"severity must be in (0, 1], got {severity}")
        if duration_minutes <= 0:
            raise SelfhealError(f"duration_minutes must be positive, got {duration_minutes}")
        fault = Fault(pipeline, self.index_of(pipeline), stage, kind,
                      self.minute if at_minute is None else at_minute, duration_minutes, severity)
        self.faults.append(fault)
        return fault

    def apply_action(self, pipeline: str, action: ActionKind | str, *, stage: Stage | str | None = None,
                     params: dict[str, Any] | None = None) -> PendingAction:
        """Start an action now; it completes (or fails) after its delay. Returns the pending action."""
        i = self.index_of(pipeline)
        try:
            action = ActionKind(action)
        except ValueError:
            raise UnknownActionError(f"unknown action {action!r}; expected one of "
                                     f"{[a.value for a in ActionKind]}") from None
        target = Stage(stage) if stage is not None else DEFAULT_STAGE.get(action, Stage.TRANSFORM)
        params = dict(params or {})
        _check_params(action, params)
        lo, hi, p_ok = TIMING[action]
        delay = int(self._action_rng.integers(lo, hi + 1))
        succeeds = bool(self._action_rng.random() < p_ok)
        run = PendingAction(len(self.actions) + 1, pipeline, i, action, target, params,
                            self.minute, self.minute + delay, succeeds)
        self.actions.append(run)
        self._running.append(run)
        s = STAGES.index(target)
        if action is ActionKind.RESTART_TASK:
            self.restart_until[i, s] = run.completes
            self._restarting = True
        elif action is ActionKind.APPLY_BACK_PRESSURE:
            fraction = float(params.get("max_utilisation", 0.8))
            self.admit_fraction[i] = np.inf if params.get("release") else fraction
            self.admit_floor[i] = float(params.get("min_utilisation", max(0.1, fraction / 2)))
            self.admit_ceiling[i] = fraction
            self.calm_minutes[i] = 0
        self._pending_events.append(Event(pipeline, target, self.now, EventKind.ACTION,
                                          f"{action.value} started (action #{run.id})"))
        return run

    def _complete_actions(self, minute: int) -> None:
        due = [run for run in self._running if run.completes <= minute]
        if not due:
            return
        self._running = [run for run in self._running if run.completes > minute]
        for run in due:
            run.done = True
            run.outcome = "succeeded" if run.succeeds else "failed"
            self._pending_events.append(Event(run.pipeline, run.stage, self.time_of(minute), EventKind.ACTION,
                                              f"{run.action.value} {run.outcome} (action #{run.id})",
                                              "info" if run.succeeds else "warning"))
            if run.succeeds:
                self._land(run, minute)

    def _land(self, run: PendingAction, minute: int) -> None:
        i, s = run.index, STAGES.index(run.stage)
        if run.action is ActionKind.RETRY_WITH_BACKOFF:
            # The policy stays attached to the task for its next runs (RETRY_POLICY_MINUTES).
            until = minute + max(RETRY_POLICY_MINUTES, retry_window_minutes(run.params))
            self.retry[(i, s)] = (RetryPolicy.from_params(run.params), until)
        if run.action is ActionKind.SCALE_WORKERS or run.action is ActionKind.SCALE_WAREHOUSE:
            if "workers" in run.params:
                self.scale[i, s] = float(run.params["workers"]) / BASE_WORKERS[s]
            else:
                self.scale[i, s] = min(MAX_SCALE, self.scale[i, s] * float(run.params.get("factor", 2.0)))
        for f in self.faults:
            if f.index != i or not f.active(minute) or f.fixed_at is not None:
                continue
            same_stage = f.stage is run.stage or run.action in PIPELINE_WIDE
            if same_stage and f.kind in FIXES.get(run.action, ()):
                f.fixed_at = minute
            elif run.action is ActionKind.RESTART_TASK and f.kind is FaultKind.NETWORK_FAILURE and same_stage:
                # Restarting hard against a flapping target trips its rate limits: the outage lasts longer.
                f.cause_end += 10

    # -- simulation -----------------------------------------------------------------------------
    def run_until(self, minute: int) -> list[MinuteTelemetry]:
        """Simulate every minute before `minute` that has not been simulated yet."""
        out = []
        while self.minute < minute:
            out.append(self.step())
        return out

    def step(self) -> MinuteTelemetry:
        """Simulate one minute and return its telemetry."""
        m = self.minute
        n = len(self.pipelines)
        self._complete_actions(m)
        # Noise is drawn in fixed shapes every minute so faults and actions never shift it.
        eps_load = self._noise.normal(0.0, 0.05, n)
        eps = self._noise.normal(0.0, 1.0, (6, n, S))
        throttled = np.isfinite(self.admit_fraction)
        fx = Effects(load_mult=np.ones(n), extra_load=np.zeros(n), cap_mult=np.ones((n, S)), up=np.ones((n, S)),
                     cpu_add=np.zeros((n, S)), mem_add=np.zeros((n, S)), errors=np.zeros((n, S)),
                     queue_add=np.zeros((n, S)), hung_minutes=np.zeros((n, S)),
                     oom_guard=throttled.copy(), scale=self.scale,
                     retry={key: policy for key, (policy, until) in self.retry.items() if until >= m},
                     wait_s=np.zeros((n, S)))
        for f in self.faults:
            if f.active(m):
                fault_physics.apply(f, m, fx, self.load_ratio, self._fault_rng)
        if self._restarting:
            restarting = self.restart_until > m
            fx.up[restarting] = 0.0
            self._restarting = bool(restarting.any())

        tod = (self.start.hour * 60 + self.start.minute + m) % 1440
        season = 1.0 + 0.35 * np.sin(2 * math.pi * tod / 1440 + self.phase)
        nominal = self.base_load * season
        offered = (nominal * fx.load_mult + self.base_load * fx.extra_load) * np.exp(eps_load)
        cap_nominal = self.cap_base * self.scale * fx.cap_mult
        cap = cap_nominal * fx.up
        bottleneck = cap.min(axis=1)
        # The source admits what arrived plus what it held back, unless stopped or throttled.
        arrivals = offered + self.src_backlog
        limit = np.where(throttled, self.admit_fraction * cap_nominal.min(axis=1), np.inf)
        admitted = np.minimum(arrivals, limit) * fx.up[:, SOURCE]
        self.src_backlog = arrivals - admitted
        demand = self.backlog + admitted
        processed = np.minimum(demand, bottleneck)
        self.backlog = demand - processed
        # Stages see what flows through them; only the bottleneck sees the queue in front of it.
        flow = np.repeat(processed[:, None], S, axis=1)
        flow[:, SOURCE] = admitted
        neck = np.argmin(cap, axis=1)
        rows = np.arange(n)
        flow[rows, neck] = np.where(neck == SOURCE, arrivals, demand)
        self.util = np.minimum(flow / cap_nominal, 1.5)
        self.load_ratio = np.minimum(offered[:, None] / cap_nominal, 1.5)
        saturated = self.util >= 0.95
        if throttled.any():
            self._adapt_back_pressure(m, nominal)

        metrics = self._metrics(fx, eps, nominal=nominal, cap_nominal=cap_nominal, admitted=admitted,
                                processed=processed, saturated=saturated)
        events = self._pending_events + [Event(self.pipelines[i].id, stage, self.time_of(m), kind, msg, level)
                                         for i, stage, kind, level, msg in fx.events]
        self._pending_events = []
        self._periodic_events(m, events, fx)
        self.minute += 1
        return MinuteTelemetry(m, self.time_of(m), metrics, events)

    def _metrics(self, fx: Effects, eps: np.ndarray, *, nominal: np.ndarray, cap_nominal: np.ndarray,
                 admitted: np.ndarray, processed: np.ndarray, saturated: np.ndarray) -> dict[str, np.ndarray]:
        n = len(self.pipelines)
        util = np.minimum(self.util, 1.0) * fx.up
        hung = fx.hung_minutes > 0
        cpu = np.where(hung, 3.0 + eps[0], 12.0 + 65.0 * util + 2.0 * eps[0] + fx.cpu_add)
        mem = np.where(hung, 35.0 + eps[1], 25.0 + 45.0 * util + 2.0 * eps[1] + fx.mem_add)
        queue_time = np.where(saturated, self.backlog[:, None] / cap_nominal * 60.0, 0.0)
        latency = self.base_latency * (1.0 + 6.0 * np.maximum(0.0, util - 0.75)) * np.exp(0.05 * eps[2])
        # Rows that arrive while a run waits between connection attempts wait half of it on average.
        latency = np.where(hung, self.base_latency + fx.hung_minutes * 60.0, latency + queue_time + fx.wait_s / 2)
        thr = np.repeat((processed / 60.0)[:, None], S, axis=1)
        thr[:, SOURCE] = admitted / 60.0
        thr = thr * fx.up
        held_min = (self.backlog + self.src_backlog) / nominal
        nan = np.full((n, S), np.nan)
        cdc = nan.copy()
        cdc[:, SOURCE] = np.maximum(0.5, 4.0 + eps[3, :, SOURCE] + self.src_backlog / nominal * 60.0)
        queue = nan.copy()
        q = QUEUED  # the stages with a queue
        queue[:, q] = np.maximum(0.0, 3.0 * (1 + 5 * np.maximum(0.0, util[:, q] - 0.7)) + eps[4][:, q]
                                 + fx.queue_add[:, q])
        fresh = nan.copy()
        fresh[:, WAREHOUSE] = (self.base_fresh_min + 0.3 * eps[5, :, WAREHOUSE] + held_min) * 60.0
        return {
            "cpu_pct": np.minimum(np.maximum(cpu, 0.0), 100.0),  # np.clip's result, without its overhead
            "memory_pct": np.minimum(np.maximum(mem, 0.0), 100.0),
            "latency_s": np.maximum(latency, 0.1),
            "throughput_rows_s": np.maximum(thr, 0.0),
            "error_count": fx.errors,
            "workers": BASE_WORKERS * self.scale,
            "cdc_lag_s": cdc,
            "queue_wait_s": queue,
            "freshness_s": np.maximum(fresh, 0.0),
        }

    def _adapt_back_pressure(self, m: int, nominal: np.ndarray) -> None:
        """Move every throttle one step (see BP_STEP): tighter while rows queue downstream, looser while
        downstream keeps up, and past its ceiling to a release (with an event) once little is held for a while."""
        for i in np.flatnonzero(np.isfinite(self.admit_fraction)):
            queued, held = self.backlog[i] / nominal[i], (self.backlog[i] + self.src_backlog[i]) / nominal[i]
            share, pid = float(self.admit_fraction[i]), self.pipelines[i].id
            if queued > BP_TIGHTEN_MIN:
                self.calm_minutes[i] = 0
                tighter = max(float(self.admit_floor[i]), share - BP_STEP)
                if tighter < share - 1e-9:
                    self.admit_fraction[i] = tighter
                    self._pending_events.append(Event(
                        pid, Stage.SOURCE, self.time_of(m), EventKind.ACTION,
                        f"back pressure tightened: admitting {tighter:.0%} of capacity ({queued:.1f} min queued)"))
                continue
            self.calm_minutes[i] = self.calm_minutes[i] + 1 if held < BP_CALM_MIN else 0
            if self.calm_minutes[i] < BP_CALM_MINUTES:
                if queued < BP_CALM_MIN:  # downstream keeps up: admit more of what the source holds, up to the cap
                    self.admit_fraction[i] = max(share, min(float(self.admit_ceiling[i]), share + BP_STEP))
                continue
            if share + BP_STEP < 1.0 - 1e-9:
                self.admit_fraction[i] = share + BP_STEP
                continue
            self.admit_fraction[i] = np.inf
            self.calm_minutes[i] = 0
            self._pending_events.append(Event(
                pid, Stage.SOURCE, self.time_of(m), EventKind.ACTION,
                f"back pressure released: under {BP_CALM_MIN:g} min of data held for {BP_CALM_MINUTES}+ min"))

    def _periodic_events(self, m: int, events: list[Event], fx: Effects) -> None:
        # A DAG run every 15 minutes, logged as succeeded when the whole chain is up.
        if m % 15:
            return
        ts = self.time_of(m)
        for i, p in enumerate(self.pipelines):
            if fx.up[i].all():
                events.append(Event(p.id, Stage.ORCHESTRATOR, ts, EventKind.RUN_SUCCEEDED,
                                    f"DAG run {p.component(Stage.ORCHESTRATOR)} succeeded"))


def _check_params(action: ActionKind, params: dict[str, Any]) -> None:
    if action in (ActionKind.SCALE_WORKERS, ActionKind.SCALE_WAREHOUSE):
        if "workers" in params and not 1 <= float(params["workers"]) <= 64:
            raise ActionParamError(f"{action.value}: workers must be within 1..64, got {params['workers']}")
        if "factor" in params and not 0.1 <= float(params["factor"]) <= MAX_SCALE:
            raise ActionParamError(f"{action.value}: factor must be within 0.1..{MAX_SCALE}, got {params['factor']}")
    if action is ActionKind.APPLY_BACK_PRESSURE:
        unknown = set(params) - {"max_utilisation", "min_utilisation", "release"}
        if unknown:
            raise ActionParamError(f"apply_back_pressure: unknown parameter(s) {sorted(unknown)}")
        top = float(params.get("max_utilisation", 0.8))
        if not 0.1 <= top <= 1.0:
            raise ActionParamError("apply_back_pressure: max_utilisation must be within 0.1..1.0")
        if not 0.1 <= float(params.get("min_utilisation", max(0.1, top / 2))) <= top:
            raise ActionParamError("apply_back_pressure: min_utilisation must be within 0.1..max_utilisation")
    if action is ActionKind.RETRY_WITH_BACKOFF:
        unknown = set(params) - {"base_s", "factor", "cap_s", "max_attempts"}
        if unknown:
            raise ActionParamError(f"retry_with_backoff: unknown parameter(s) {sorted(unknown)}")
        try:
            retry_window_minutes(params)
        except (ValueError, TypeError) as e:
            raise ActionParamError(str(e)) from e
