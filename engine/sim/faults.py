"""Fault kinds as the twin plays them: what each does to one stage in one minute.

The twin owns the world state; this module holds the per-kind physics so each fault reads on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.model import STAGES, EventKind, FaultKind, Stage
from engine.sim.actions import MAX_RETRY_ATTEMPTS, RetryPolicy

# Kinds whose damage stays until the right action is taken (DESIGN: "a drifted schema stays drifted").
PERSISTENT = frozenset({FaultKind.SCHEMA_DRIFT, FaultKind.CDC_STOPPED, FaultKind.TIMEOUT,
                        FaultKind.CREDENTIALS_EXPIRED})


@dataclass(slots=True)
class Fault:
    """A fault's run-time state in the twin (ground truth; never shown to the agent)."""

    pipeline: str
    index: int
    stage: Stage
    kind: FaultKind
    start: int
    duration: int
    severity: float
    cause_end: int = 0
    fixed_at: int | None = None

    def __post_init__(self) -> None:
        self.cause_end = self.start + self.duration

    def active(self, minute: int) -> bool:
        """Whether the fault hurts in `minute`: persistent kinds until fixed, others while the cause lasts."""
        if self.fixed_at is not None and minute >= self.fixed_at:
            return False
        if minute < self.start:
            return False
        return self.kind in PERSISTENT or minute < self.cause_end


@dataclass(slots=True)
class Effects:
    """Modifiers for one minute, shaped like the twin's arrays ([N] or [N, S])."""

    load_mult: np.ndarray
    extra_load: np.ndarray  # additional arrivals, in units of the pipeline's mean load
    cap_mult: np.ndarray
    up: np.ndarray
    cpu_add: np.ndarray
    mem_add: np.ndarray
    errors: np.ndarray
    queue_add: np.ndarray
    hung_minutes: np.ndarray
    oom_guard: np.ndarray  # back pressure on: no out-of-memory failures
    scale: np.ndarray  # current capacity multiple per stage (scaling actions)
    retry: dict[tuple[int, int], RetryPolicy]  # (pipeline, stage) → the retry policy in force there
    wait_s: np.ndarray  # seconds runs spent waiting between connection attempts (slows the stage)
    events: list[tuple[int, Stage, EventKind, str, str]] = field(default_factory=list)


_DRIFT_MESSAGES = {
    Stage.SOURCE: "DMS table error: source column 'customer_id' not found in table public.{p}; table suspended",
    Stage.ORCHESTRATOR: "Task validate_schema failed: expected column 'customer_id' missing from upstream {p}",
    Stage.TRANSFORM: "AnalysisException: [UNRESOLVED_COLUMN] A column with name `customer_id` cannot be "
    "resolved. Did you mean `customer_ref`? ({p} transform)",
    Stage.WAREHOUSE: "ERROR: column \"amount\" is of type numeric but expression is of type character varying "
    "(COPY into {p} rejected {n} rows)",
}
_NETWORK_MESSAGES = {
    Stage.SOURCE: "DMS endpoint test failed: could not connect to source database: Connection timed out",
    Stage.ORCHESTRATOR: "Task failed: ConnectionError: HTTPSConnectionPool: Max retries exceeded (timed out)",
    Stage.TRANSFORM: "Glue job failed: java.net.SocketTimeoutException: connect timed out to target endpoint",
    Stage.WAREHOUSE: "psycopg2.OperationalError: could not connect to server: Connection timed out",
}
_OOM_MESSAGES = {
    Stage.SOURCE: "DMS replication instance out of memory; task swapping to disk",
    Stage.ORCHESTRATOR: "Scheduler: task killed, worker exceeded memory limit (exit code -9)",
    Stage.TRANSFORM: "java.lang.OutOfMemoryError: GC overhead limit exceeded (executor lost)",
    Stage.WAREHOUSE: "ERROR: Disk Full / out of memory while processing query on {p}",
}


def apply(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    """Add `fault`'s effect in `minute` to `fx`. `load` is last minute's arrivals / capacity per stage."""
    PHYSICS[fault.kind](fault, minute, fx, load, rng)


def _schema_drift(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, sev, p, ev = fault.index, STAGES.index(fault.stage), fault.severity, fault.pipeline, fx.events
    fx.up[i, s] = 0.0
    rejected = int(200 + 2000 * sev)
    fx.errors[i, s] += rejected
    ev.append((i, fault.stage, EventKind.RUN_FAILED, "error",
               _DRIFT_MESSAGES[fault.stage].format(p=p, n=rejected)))


def _resource_contention(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, sev, p, ev = fault.index, STAGES.index(fault.stage), fault.severity, fault.pipeline, fx.events
    # A data surge is a burst of extra rows (in units of the pipeline's mean load), whatever the hour;
    # the stage it lands on also loses capacity to the contention.
    fx.extra_load[i] += 1.5 * sev
    fx.cap_mult[i, s] /= 1.0 + 1.5 * sev
    fx.cpu_add[i, s] += 30.0 * sev
    fx.mem_add[i, s] += 30.0 * sev
    fx.queue_add[i, s] += 20.0 * sev
    saturated = load[i, s] >= 0.95
    if saturated and sev >= 0.5 and not fx.oom_guard[i] and rng.random() < 0.35 * sev:
        fx.up[i, s] = 0.0
        fx.errors[i, s] += 1
        ev.append((i, fault.stage, EventKind.RUN_FAILED, "error", _OOM_MESSAGES[fault.stage].format(p=p)))


# A flapping link: a run's first connection finds the link down with probability 0.3 + 0.4·severity (a run
# opens many connections, so it meets an outage more often than one attempt does), and an outage lasts an
# exponential number of seconds whose mean grows with severity. An attempt that comes back while the outage
# that failed the previous attempt still lasts fails again with IN_OUTAGE_FAIL; one that comes back after it
# meets the link at a random moment and finds it down with its down-time share, 0.1 + 0.2·severity.
OUTAGE_MEAN_S = (3.0, 12.0)  # mean outage length at severity 0, and the extra at severity 1
IN_OUTAGE_FAIL = 0.95
RUN_PERIOD_S = 60.0  # runs start every minute: a run that waits W seconds takes (60 + W) / 60 as long


def outage_mean_s(severity: float) -> float:
    return OUTAGE_MEAN_S[0] + OUTAGE_MEAN_S[1] * severity


def play_attempts(policy: RetryPolicy | None, p_first: float, p_fresh: float, mean_outage_s: float,
                  u: np.ndarray) -> tuple[bool, int, float]:
    """One run's connection attempts against a flapping link: (succeeded, failed attempts, seconds waited).

    `u` is a [3, MAX_RETRY_ATTEMPTS] array of uniform draws (fail, outage length, jitter per attempt), drawn
    whatever the policy so that changing a policy never shifts the twin's random streams. Without a policy
    the run makes one attempt. Waits use full jitter: uniform(0, min(cap, base · factor^k)).
    """
    attempts = policy.max_attempts if policy is not None else 1
    t, outage_end, waited = 0.0, -1.0, 0.0
    for k in range(attempts):
        if k:
            wait = float(u[2, k]) * policy.ceiling(k - 1)  # type: ignore[union-attr]
            t += wait
            waited += wait
        p_fail = p_first if k == 0 else (IN_OUTAGE_FAIL if t < outage_end else p_fresh)
        if u[0, k] >= p_fail:
            return True, k, waited
        if t >= outage_end:  # a new outage starts now
            outage_end = t - mean_outage_s * np.log1p(-float(u[1, k]))
    return False, attempts, waited


def _network_failure(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, sev, ev = fault.index, STAGES.index(fault.stage), fault.severity, fx.events
    u = rng.random((3, MAX_RETRY_ATTEMPTS))
    policy = fx.retry.get((i, s))
    ok, failed, waited = play_attempts(policy, 0.3 + 0.4 * sev, 0.1 + 0.2 * sev, outage_mean_s(sev), u)
    if policy is None:
        # The task's own connection retries (a few, back to back) give no real protection.
        retries = 1 + int(3 * sev)
        fx.errors[i, s] += retries
        if ok:
            ev.append((i, fault.stage, EventKind.LOG, "warning",
                       f"transient connection errors: {retries} retries before success (connection reset by peer)"))
        else:
            fx.up[i, s] = 0.0
            ev.append((i, fault.stage, EventKind.RUN_FAILED, "error", _NETWORK_MESSAGES[fault.stage]))
        return
    # The waiting between attempts slows the stage: a run that waited W seconds took (60 + W) / 60 as long.
    fx.wait_s[i, s] += waited
    fx.cap_mult[i, s] *= RUN_PERIOD_S / (RUN_PERIOD_S + waited)
    if not ok:
        fx.up[i, s] = 0.0
        fx.errors[i, s] += failed
        ev.append((i, fault.stage, EventKind.RUN_FAILED, "error",
                   f"{_NETWORK_MESSAGES[fault.stage]} (all {failed} retry attempts exhausted after {waited:.0f} s)"))
    elif failed:
        ev.append((i, fault.stage, EventKind.LOG, "info",
                   f"run succeeded after {failed} failed connection attempts; waited {waited:.1f} s "
                   "(exponential backoff with jitter)"))


def _timeout(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, ev = fault.index, STAGES.index(fault.stage), fx.events
    hung = minute - fault.start + 1
    fx.up[i, s] = 0.0
    fx.hung_minutes[i, s] = hung
    if hung >= 3:
        ev.append((i, fault.stage, EventKind.LOG, "error",
                   f"Run has made no progress for {hung} min; still RUNNING past its expected duration "
                   "(execution timeout approaching)"))


def _warehouse_overload(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, sev, p, ev = fault.index, STAGES.index(fault.stage), fault.severity, fault.pipeline, fx.events
    # Competing queries eat capacity; queueing and timeouts follow the pressure that is left.
    # The competing workload takes a fixed slice of the nominal cluster, so resizing relieves it.
    competing = 0.5 + 0.4 * sev
    fx.cap_mult[i, s] *= max(0.05, 1.0 - competing / fx.scale[i, s])
    pressure = float(np.clip((load[i, s] - 0.6) / 0.35, 0.0, 1.0))
    fx.queue_add[i, s] += (120.0 + 480.0 * sev) * pressure
    fx.cpu_add[i, s] += 25.0 * sev * pressure
    if rng.random() < 0.6 * sev * pressure:
        fx.up[i, s] = 0.0
        fx.errors[i, s] += 1 + int(4 * sev)
        ev.append((i, fault.stage, EventKind.RUN_FAILED, "error",
                   "ERROR: Query cancelled: statement timeout; WLM queue wait exceeded on "
                   f"{p} (concurrency scaling unavailable)"))


def _cdc_stopped(fault: Fault, minute: int, fx: Effects, load: np.ndarray, rng: np.random.Generator) -> None:
    i, s, ev = fault.index, STAGES.index(fault.stage), fx.events
    fx.up[i, s] = 0.0
    if minute == fault.start:
        ev.append((i, fault.stage, EventKind.TASK_STOPPED, "error",
                   "Replication task stopped. Last Error: Error reading the WAL; requested WAL segment "
                   "has already been removed. Stop Reason: FATAL_ERROR"))
    else:
        ev.append((i, fault.stage, EventKind.TASK_STOPPED, "error",
                   f"Replication task status: stopped for {minute - fault.start} min"))


# Authentication failures name no column, connection or queue: diagnosis cannot tell what they are.
_AUTH_MESSAGES = {
    Stage.SOURCE: "DMS endpoint error: FATAL: password authentication failed for user \"dms_reader\"",
    Stage.ORCHESTRATOR: "Task failed: botocore.exceptions.ClientError: ExpiredTokenException when calling "
    "the AssumeRole operation",
    Stage.TRANSFORM: "Glue job failed: AccessDeniedException: The security token included in the request "
    "is expired",
    Stage.WAREHOUSE: "FATAL: password authentication failed for user \"etl_loader\" (IAM credentials expired)",
}


def _credentials_expired(fault: Fault, minute: int, fx: Effects, load: np.ndarray,
                         rng: np.random.Generator) -> None:
    # Every run is refused until someone with access rotates the secret: no automated action fixes it.
    i, s, ev = fault.index, STAGES.index(fault.stage), fx.events
    fx.up[i, s] = 0.0
    fx.errors[i, s] += 1
    ev.append((i, fault.stage, EventKind.RUN_FAILED, "error", _AUTH_MESSAGES[fault.stage]))


def _warehouse_saturation(fault: Fault, minute: int, fx: Effects, load: np.ndarray,
                          rng: np.random.Generator) -> None:
    """A warehouse overload that looks like contention upstream.

    A competing workload holds the warehouse's write slots, so the transform's executors buffer rows they
    cannot load: cpu and memory climb at the transform and its executors die of out-of-memory, while the
    warehouse shows only a raised (sub-limit) queue wait. Scaling the transform does not help; relieving the
    warehouse (scale_warehouse, reschedule) does.
    """
    i, sev, p, ev = fault.index, fault.severity, fault.pipeline, fx.events
    w, t = STAGES.index(Stage.WAREHOUSE), STAGES.index(Stage.TRANSFORM)
    fx.queue_add[i, w] += 20.0 + 25.0 * sev
    fx.cpu_add[i, w] += 8.0 * sev
    fx.cap_mult[i, t] /= 1.0 + 1.5 * sev
    fx.cpu_add[i, t] += 30.0 * sev
    fx.mem_add[i, t] += 35.0 * sev
    if rng.random() < 0.3 + 0.4 * sev:
        fx.up[i, t] = 0.0
        fx.errors[i, t] += 1
        ev.append((i, Stage.TRANSFORM, EventKind.RUN_FAILED, "error", _OOM_MESSAGES[Stage.TRANSFORM].format(p=p)))


PHYSICS: dict[FaultKind, Callable[[Fault, int, Effects, np.ndarray, np.random.Generator], None]] = {
    FaultKind.SCHEMA_DRIFT: _schema_drift,
    FaultKind.RESOURCE_CONTENTION: _resource_contention,
    FaultKind.NETWORK_FAILURE: _network_failure,
    FaultKind.TIMEOUT: _timeout,
    FaultKind.WAREHOUSE_OVERLOAD: _warehouse_overload,
    FaultKind.CDC_STOPPED: _cdc_stopped,
    FaultKind.CREDENTIALS_EXPIRED: _credentials_expired,
    FaultKind.WAREHOUSE_SATURATION: _warehouse_saturation,
}
