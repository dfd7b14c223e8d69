"""The embedded runtime: the twin, its telemetry source and the store, ticking in a background thread.

The console starts one per server (through a cached factory); `selfheal agent` runs the same loop in
the foreground. Time is simulated: `sim_speed` simulated minutes pass per real second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.detection.stage_scores import StageScorer
from engine.errors import SelfhealError
from engine.execution.queue import expire_due
from engine.execution.twin_inbox import InboxExecutor, TwinHost
from engine.execution.worker import Worker, WorkerStep
from engine.model import FaultKind, PipelineSpec, Stage, floor_minute
from engine.security.roles import Permission, Principal, require
from engine.service.audit import record
from engine.service.healing import PolicyFile, live_healer, resolve_policy
from engine.service.tick import TickResult, register, tick, warm_scorer
from engine.settings import Settings
from engine.sim.faults import Fault
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store import repo
from engine.store.db import Store
from engine.telemetry.simulator import SimulatorSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    running: bool
    sim_now: datetime
    ticks: int
    last_tick_seconds: float | None
    last_error: str | None


class SimClock:
    """Simulated time that runs `speed` simulated minutes per real second from an origin."""

    def __init__(self, origin: datetime, speed: float, real: Callable[[], float] = time.monotonic) -> None:
        self.origin = origin
        self.speed = speed
        self._real = real
        self._real_origin = real()

    def now(self) -> datetime:
        return self.origin + timedelta(minutes=(self._real() - self._real_origin) * self.speed)


class EmbeddedRuntime:
    """Owns the live twin and ticks it into the store. Safe to call from several threads.

    With `settings.twin` off it hosts nothing: it only hands the store to the pages (which then show what other
    processes, e.g. `selfheal watch`, write there), and refuses to tick or inject faults."""

    def __init__(self, settings: Settings, store: Store | None = None, *, policy: str | None = None,
                 worker: bool | None = None) -> None:
        self.settings = settings
        self.store = store or Store.open(settings.store_url)
        self.hosting = settings.twin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ticks = 0
        self._last_seconds: float | None = None
        self._last_error: str | None = None
        self.scorer = StageScorer(seed=settings.seed)
        self.execution_policy = PolicyFile(settings.policy_path)  # what auto-executes (re-read when it changes)
        if not self.hosting:
            self.twin, self.source, self.host, self.healer, self.worker = None, None, None, None, None
            self.policy_name, self.last_worker_step, self._clock = "none", None, None
            return
        with self.store.read() as conn:
            newest = repo.latest_health_ts(conn)
        if newest is None:
            start = floor_minute(datetime.now(UTC)) - timedelta(minutes=settings.backfill_minutes)
        else:
            # Resume after what the store already holds: history stays, the twin starts afresh.
            start = newest + timedelta(minutes=1)
        self.twin = Twin(fleet_pipelines(settings.fleet_size, settings.seed), seed=settings.seed, start=start)
        self.source = SimulatorSource(self.twin)
        register(self.store, self.source)
        if newest is not None:
            warm_scorer(self.store, self.scorer, newest)
        self.host = TwinHost(self.store, self.twin, self.source.lock)
        self.policy_name = resolve_policy(self.store, policy or settings.agent_policy)
        self.healer = live_healer(self.store, self.policy_name, self.execution_policy, seed=settings.seed,
                                  on_capacity_change=self.scorer.rebaseline)
        run_worker = settings.embedded_worker if worker is None else worker
        self.worker = Worker(self.store, InboxExecutor(self.store, "embedded"), f"embedded:{os.getpid()}",
                             lease_seconds=settings.worker_lease_seconds,
                             run_timeout_seconds=settings.run_timeout_seconds,
                             pipelines=[p.id for p in self.twin.pipelines]) if run_worker else None
        self.last_worker_step: WorkerStep | None = None
        self._backfill_until = start + timedelta(minutes=settings.backfill_minutes if newest is None else 0)
        self._clock: SimClock | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def backfill(self) -> TickResult | None:
        """Simulate the configured history quickly (once, before going live)."""
        if not self.hosting or self.twin.now >= self._backfill_until:
            return None
        log.info("backfilling %s of simulated history", self._backfill_until - self.twin.now)
        result = None
        while self.twin.now < self._backfill_until:
            result = self.advance_to(min(self._backfill_until, self.twin.now + timedelta(hours=1)))
        return result

    def start(self) -> EmbeddedRuntime:
        """Backfill, then tick in a daemon thread (when settings.live). Idempotent."""
        with self._lock:
            if self._thread is not None:
                return self
            self.backfill()
            if not self.settings.live or not self.hosting:
                return self
            self._clock = SimClock(self.twin.now, self.settings.sim_speed)
            self._thread = threading.Thread(target=self._loop, name="selfheal-twin", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            if self.host is not None:
                self.host.release()
        except SelfhealError as e:  # the store went away: the lease simply runs out
            log.warning("could not release the staging twin: %s", e)

    def _loop(self) -> None:
        assert self._clock is not None
        while not self._stop.wait(self.settings.tick_seconds):
            try:
                self.advance_to(self._clock.now())
            except SelfhealError as e:  # keep ticking; the page shows the last error
                self._last_error = str(e)
                log.warning("tick failed: %s", e)

    # -- operations -----------------------------------------------------------------------------
    def advance_to(self, until: datetime) -> TickResult:
        """Run one tick up to `until` (simulated time)."""
        self._hosting_or_refuse("tick")
        t0 = time.perf_counter()
        with self.store.transaction() as conn:
            self.host.pump(conn)  # approved actions reach the twin before it simulates on
            expire_due(conn)
        result = tick(self.store, self.source, until, self.scorer, self.healer)
        if self.worker is not None:
            self.last_worker_step = self.worker.step()
        self._ticks += 1
        self._last_seconds = time.perf_counter() - t0
        self._last_error = None
        return result

    def advance(self, minutes: int) -> TickResult:
        """Run one tick covering the next `minutes` simulated minutes (for tests and scripts)."""
        self._hosting_or_refuse("tick")
        return self.advance_to(self.twin.now + timedelta(minutes=minutes))

    def inject_fault(self, pipeline: str, stage: Stage | str, kind: FaultKind | str, *, severity: float = 0.8,
                     duration_minutes: int = 60, actor: Principal | str = "operator") -> Fault:
        """Start a fault in the staging twin with the next simulated minute; audited. A principal needs the
        inject permission (operators and admins)."""
        if isinstance(actor, Principal):
            require(actor, Permission.INJECT)
            actor = actor.label
        self._hosting_or_refuse("inject a fault into")
        with self.source.lock:
            fault = self.twin.inject_fault(pipeline, stage, kind, severity=severity,
                                           duration_minutes=duration_minutes)
        record(self.store, actor=actor, kind="fault_injected", subject=f"pipeline:{pipeline}",
               detail={"stage": fault.stage.value, "kind": fault.kind.value, "severity": severity,
                       "duration_minutes": duration_minutes, "sim_time": self.twin.time_of(fault.start).isoformat()})
        return fault

    def _hosting_or_refuse(self, what: str) -> None:
        if not self.hosting:
            raise SelfhealError(f"this console hosts no simulated fleet (SELFHEAL_TWIN=false): nothing to {what}; "
                                "it shows what the store holds")

    def pipelines(self) -> list[PipelineSpec]:
        """Every pipeline the store knows: the embedded fleet's, and any other source's (a simulated scenario's,
        `selfheal watch`'s)."""
        with self.store.read() as conn:
            return repo.list_pipelines(conn)

    def twin_pipelines(self) -> list[PipelineSpec]:
        """The pipelines of the embedded fleet (where faults can be injected); none when it hosts no twin."""
        return self.source.pipelines() if self.source is not None else []

    def status(self) -> RuntimeStatus:
        if self.twin is not None:
            now = self.twin.now
        else:
            with self.store.read() as conn:
                now = repo.latest_health_ts(conn) or floor_minute(datetime.now(UTC))
        return RuntimeStatus(running=self._thread is not None and self._thread.is_alive(), sim_now=now,
                             ticks=self._ticks, last_tick_seconds=self._last_seconds, last_error=self._last_error)
