"""Workers: take approved runs, lease their pipelines, execute through an executor, record the outcome.

Exactly once, under concurrency and crashes:
- A worker claims a queued run only together with its pipeline's lease (an upsert that succeeds only when the
  pipeline is free, its lease expired, or the worker holds it already), in one transaction. On PostgreSQL the
  candidate runs are read ``FOR UPDATE SKIP LOCKED``, so workers never queue behind each other; on SQLite a
  write transaction holds the database's write lock (BEGIN IMMEDIATE), which serialises claims.
- One run at a time per pipeline, and a pipeline's runs go to whoever holds its lease: no pipeline is handled
  by two workers at once while leases are renewed (each step renews them; `lease_seconds` must exceed a step).
- Every run carries an idempotency key. A worker killed mid-action leaves its run `running` with a lease that
  stops being renewed; once it expires another worker takes the run over and asks the executor about the key
  first (`lookup`): an action already sent is followed, never sent again; one never sent is sent now.
- Every update a worker makes to a run is conditional on still owning it, so a worker that lost its lease
  (paused past it) cannot overwrite its successor's result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.errors import SelfhealError
from engine.execution.executor import ActionRequest, ExecStatus, Execution, Executor, Reconcilable
from engine.model import ActionKind, Stage
from engine.service.audit import append
from engine.store.db import Store
from engine.store.tables import ActionRunRow, PipelineLeaseRow, PipelineRow, ProposalRow

log = logging.getLogger(__name__)
R = ActionRunRow.__table__
L = PipelineLeaseRow.__table__
P = ProposalRow.__table__
_FINAL = {ExecStatus.SUCCEEDED: "succeeded", ExecStatus.FAILED: "failed", ExecStatus.CANCELLED: "cancelled",
          ExecStatus.REJECTED: "cancelled", ExecStatus.TIMED_OUT: "timed_out"}


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class WorkerStep:
    claimed: list[int] = field(default_factory=list)  # run ids taken (new or taken over)
    taken_over: list[int] = field(default_factory=list)  # of those, runs a dead worker left behind
    submitted: list[int] = field(default_factory=list)  # runs sent to the executor by this step
    finished: list[tuple[int, str]] = field(default_factory=list)  # (run id, final status)


class Worker:
    """One executing worker. `step()` does one round; `run()` loops until told to stop."""

    def __init__(self, store: Store, executor: Executor, name: str | None = None, *, lease_seconds: float = 30.0,
                 run_timeout_seconds: float = 900.0, batch: int = 25, max_attempts: int = 5,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 pipelines: Collection[str] | None = None, source: str | None = None) -> None:
        if lease_seconds <= 0 or run_timeout_seconds <= 0 or batch < 1:
            raise SelfhealError("worker: lease_seconds and run_timeout_seconds must be positive, batch ≥ 1")
        self.store = store
        self.executor = executor
        self.name = name or default_worker_name()
        self.lease = timedelta(seconds=lease_seconds)
        self.timeout = timedelta(seconds=run_timeout_seconds)
        self.batch = batch
        self.max_attempts = max_attempts
        self.clock = clock
        self.actor = f"worker:{self.name}"
        # The pipelines this worker's executor can act on (None: all); runs of others are left to other workers.
        self.pipelines = None if pipelines is None else sorted(set(pipelines))
        self.source = source  # or: only pipelines registered by this telemetry source ("simulator" for the twin)

    # -- one round ------------------------------------------------------------------------------
    def step(self) -> WorkerStep:
        out = WorkerStep()
        claimed = self._claim(out)
        for run in claimed:
            try:
                self._start(run, out)
            except SelfhealError as e:
                # Not sent, or not recorded: the run keeps its claim without renewal, so once the lease expires
                # it is taken over (by any worker, this one included), which asks the executor about the key first.
                log.warning("worker %s: run %s could not start (retried after its lease): %s", self.name, run.id, e)
        self._follow(out)
        return out

    def run(self, stop: Callable[[], bool], interval: float = 0.5, wait: Callable[[float], Any] = time.sleep) -> None:
        """Step every `interval` seconds until `stop()`; `wait` sleeps (an Event's wait in threads)."""
        while not stop():
            try:
                self.step()
            except SelfhealError as e:
                log.warning("worker %s: step failed: %s", self.name, e)
            wait(interval)

    # -- claiming -------------------------------------------------------------------------------
    def _claim(self, out: WorkerStep) -> list[Any]:
        now = self.clock()
        with self.store.transaction() as conn:
            q = (select(R.c.id, R.c.pipeline_id, R.c.status).where(or_(
                R.c.status == "queued", and_(R.c.status == "running", R.c.lease_expires_at < now)))
                .order_by(R.c.id).limit(self.batch * 4).with_for_update(skip_locked=True))
            if self.pipelines is not None:
                q = q.where(R.c.pipeline_id.in_(self.pipelines))
            if self.source is not None:
                q = q.where(R.c.pipeline_id.in_(select(PipelineRow.__table__.c.id)
                                                .where(PipelineRow.__table__.c.source == self.source)))
            candidates = conn.execute(q).all()
            running = conn.execute(select(R.c.pipeline_id, R.c.lease_expires_at >= now).where(
                R.c.status == "running")).all()
            busy = {pid for pid, live in running if live}  # a live worker is on it
            # A dead worker's run is reconciled before anything else starts on its pipeline: until then the twin
            # may still be carrying that action out.
            stale = {pid for pid, live in running if not live}
            taken: list[int] = []
            # Lease in pipeline order: two workers upserting the same leases always lock them in the same order
            # (no deadlock between their transactions on PostgreSQL).
            for c in sorted(candidates, key=lambda c: (c.pipeline_id, c.id)):
                if len(taken) >= self.batch:
                    break
                if c.pipeline_id in busy or (c.status == "queued" and c.pipeline_id in stale):
                    continue  # one run at a time per pipeline
                epoch = self._lease(conn, c.pipeline_id, now)
                if epoch is None:
                    continue  # another worker holds the pipeline
                won = conn.execute(update(R).where(R.c.id == c.id, or_(
                    R.c.status == "queued", and_(R.c.status == "running", R.c.lease_expires_at < now))).values(
                    status="running", worker=self.name, lease_expires_at=now + self.lease, lease_epoch=epoch,
                    attempts=R.c.attempts + 1, started_at=func.coalesce(R.c.started_at, now),
                    deadline=func.coalesce(R.c.deadline, now + self.timeout)))
                if won.rowcount != 1:
                    continue
                busy.add(c.pipeline_id)
                taken.append(c.id)
                if c.status == "running":
                    out.taken_over.append(c.id)
                    append(conn, actor=self.actor, kind="run_taken_over", subject=f"run:{c.id}", at=now,
                           detail={"pipeline": c.pipeline_id, "reason": "the previous worker's lease expired"})
            rows = conn.execute(select(R).where(R.c.id.in_(taken))).all() if taken else []
        out.claimed.extend(taken)
        return rows

    def _lease(self, conn: Connection, pipeline_id: str, now: datetime) -> int | None:
        """Take or renew the pipeline's lease; its epoch when this worker holds it, else None."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(L).values(pipeline_id=pipeline_id, worker=self.name, acquired_at=now,
                                        expires_at=now + self.lease, epoch=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[L.c.pipeline_id],
            set_={"worker": self.name, "expires_at": now + self.lease,
                  "acquired_at": case((and_(L.c.worker == self.name, L.c.expires_at >= now), L.c.acquired_at),
                                      else_=now),
                  "epoch": case((L.c.worker == self.name, L.c.epoch), else_=L.c.epoch + 1)},
            where=or_(L.c.worker == self.name, L.c.expires_at < now))
        conn.execute(stmt)
        row = conn.execute(select(L.c.worker, L.c.epoch).where(L.c.pipeline_id == pipeline_id)).one()
        return int(row.epoch) if row.worker == self.name else None

    # -- executing ------------------------------------------------------------------------------
    def _start(self, run: Any, out: WorkerStep) -> None:
        request = ActionRequest(run.pipeline_id, ActionKind(run.action), Stage(run.stage), dict(run.params or {}),
                                run.incident_id)
        key, now = run.idempotency_key, self.clock()
        exe: Execution | None = None
        unknown = ""
        if run.attempts > 1 and isinstance(self.executor, Reconcilable):
            try:
                exe = self.executor.lookup(key)  # taken over: was it sent before the last worker died?
            except SelfhealError as e:
                if not ((run.deadline is not None and now > run.deadline) or run.attempts > self.max_attempts):
                    raise
                unknown = str(e)  # it cannot say, and the run is out of time or tries: give up, never loop on it
        if unknown:
            kind, exe = "action_abandoned", Execution(key, request, ExecStatus.FAILED, now, now, (
                f"gave up: its executor cannot say whether it was sent ({unknown})"))
        elif exe is not None:
            kind = "action_adopted"
        elif run.deadline is not None and now > run.deadline:
            kind, exe = "action_abandoned", Execution(key, request, ExecStatus.TIMED_OUT, now, now, (
                f"not sent: its deadline {run.deadline:%H:%M:%S} UTC passed before it reached the executor"))
        elif run.attempts > self.max_attempts:
            kind, exe = "action_abandoned", Execution(key, request, ExecStatus.FAILED, now, now, (
                f"gave up: taken over {run.attempts - 1} times without reaching the executor"))
        else:
            kind, exe = "action_started", self.executor.submit(request, key)
            out.submitted.append(run.id)
        with self.store.transaction() as conn:
            mine = conn.execute(update(R).where(R.c.id == run.id, R.c.worker == self.name, R.c.status == "running")
                                .values(executor=self.executor.name, result={"ref": exe.ref, "detail": exe.detail}))
            if mine.rowcount != 1:
                log.warning("worker %s: lost run %s to another worker while starting it", self.name, run.id)
                return  # the successor asks the executor about the key and records what happened
            append(conn, actor=self.actor, kind=kind, subject=f"run:{run.id}",
                   at=now, detail={"proposal_id": run.proposal_id, "pipeline": run.pipeline_id, "action": run.action,
                                   "stage": run.stage, "params": run.params or {}, "key": key,
                                   "attempt": run.attempts, "executor": self.executor.name})
        if exe.status.finished:
            self._finish(run.id, exe.status, exe.ref, exe.detail, out)

    def _follow(self, out: WorkerStep) -> None:
        """Poll this worker's running runs: record finished ones, time out late ones, renew the rest's leases."""
        now = self.clock()
        with self.store.read() as conn:
            mine = conn.execute(select(R.c.id, R.c.idempotency_key, R.c.deadline, R.c.pipeline_id).where(
                R.c.status == "running", R.c.worker == self.name, R.c.executor.is_not(None))).all()
        alive: list[tuple[int, str]] = []
        for run_id, key, deadline, pipeline_id in mine:
            if run_id in {r for r, _ in out.finished}:
                continue
            try:
                exe = self.executor.poll(key)
            except SelfhealError as e:
                if deadline is not None and now > deadline:  # unreachable past the deadline: give up on it
                    self._finish(run_id, ExecStatus.TIMED_OUT, key,
                                 f"no outcome by the deadline {deadline:%H:%M:%S} UTC: {e}", out)
                    continue
                log.warning("worker %s: cannot poll run %s: %s", self.name, run_id, e)
                alive.append((run_id, pipeline_id))
                continue
            if exe.status.finished:
                self._finish(run_id, exe.status, exe.ref, exe.detail, out)
            elif deadline is not None and now > deadline:
                cancelled = isinstance(self.executor, Reconcilable) and self.executor.cancel(key)
                self._finish(run_id, ExecStatus.TIMED_OUT, exe.ref, f"no outcome by the deadline {deadline:%H:%M:%S} "
                             "UTC" + ("; cancelled before it started" if cancelled else ""), out)
            else:
                alive.append((run_id, pipeline_id))
        with self.store.transaction() as conn:
            released = self.clock()
            # Lock the leases this transaction renews or releases in pipeline order, the order claims take them in:
            # a multi-row UPDATE locks in scan order and deadlocked against another worker's claim (PostgreSQL).
            conn.execute(select(L.c.pipeline_id).where(L.c.worker == self.name, or_(
                L.c.expires_at > released, L.c.pipeline_id.in_([p for _, p in alive])))
                .order_by(L.c.pipeline_id).with_for_update())
            if alive:
                conn.execute(update(R).where(R.c.id.in_([r for r, _ in alive]), R.c.worker == self.name)
                             .values(lease_expires_at=now + self.lease))
                conn.execute(update(L).where(L.c.pipeline_id.in_([p for _, p in alive]), L.c.worker == self.name)
                             .values(expires_at=now + self.lease))
            # Pipelines with nothing running for this worker go back to the pool. The lease is expired in place,
            # not deleted: a deleted row would restart the next holder at epoch 1 (no longer a fencing token), and
            # expiring it at a fresh `released` means the next holder's clock is past this worker's last finish.
            held = select(R.c.pipeline_id).where(R.c.status == "running", R.c.worker == self.name)
            conn.execute(update(L).where(L.c.worker == self.name, L.c.expires_at > released,
                                         L.c.pipeline_id.not_in(held)).values(expires_at=released))

    def _finish(self, run_id: int, outcome: ExecStatus, ref: str, detail: str, out: WorkerStep) -> None:
        now = self.clock()
        status = _FINAL[outcome]
        with self.store.transaction() as conn:
            won = conn.execute(update(R).where(R.c.id == run_id, R.c.worker == self.name, R.c.status == "running")
                               .values(status=status, finished_at=now,
                                       result={"ref": ref, "detail": detail, "status": status}))
            if won.rowcount != 1:
                return  # someone else owns it now: their outcome stands
            run = conn.execute(select(R.c.proposal_id, R.c.pipeline_id, R.c.action).where(R.c.id == run_id)).one()
            append(conn, actor=self.actor, kind="action_finished", subject=f"run:{run_id}", at=now,
                   detail={"proposal_id": run.proposal_id, "pipeline": run.pipeline_id, "action": run.action,
                           "status": status, "detail": detail})
        out.finished.append((run_id, status))

