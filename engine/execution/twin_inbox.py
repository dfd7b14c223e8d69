"""The staging twin as a remote system: workers send it commands through the store, its host applies them.

`InboxExecutor` is what a worker (in any process) uses: `submit` inserts a command under the run's idempotency
key (a second insert of the same key changes nothing), `poll`/`lookup` read its state, `cancel` withdraws a
command the twin has not taken yet. `TwinHost` runs beside the twin (the console's runtime, `selfheal agent`):
each tick it applies new commands to the twin exactly once and reports finished ones. This is the boundary an
AWS executor replaces later: there the cloud API and its client tokens play the inbox's part.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.errors import SelfhealError
from engine.execution.executor import ActionRequest, ExecStatus, Execution
from engine.model import ActionKind, Stage
from engine.sim.twin import Twin
from engine.store import repo
from engine.store.db import Store
from engine.store.tables import KeyValueRow, SimCommandRow

log = logging.getLogger(__name__)
C = SimCommandRow.__table__
_STATUS = {"pending": ExecStatus.RUNNING, "running": ExecStatus.RUNNING, "succeeded": ExecStatus.SUCCEEDED,
           "failed": ExecStatus.FAILED, "cancelled": ExecStatus.CANCELLED}


def _insert_ignore(conn: Connection):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(C).on_conflict_do_nothing(index_elements=[C.c.key])


class InboxExecutor:
    """Sends actions to the staging twin through the store's `sim_commands` inbox."""

    name = "twin"

    def __init__(self, store: Store, sender: str = "worker") -> None:
        self.store = store
        self.sender = sender

    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        if key is None:
            raise SelfhealError("the twin inbox needs an idempotency key per action")
        now = datetime.now(UTC)
        with self.store.transaction() as conn:
            conn.execute(_insert_ignore(conn).values(
                key=key, pipeline_id=request.pipeline_id, action=request.action.value, stage=request.stage.value,
                params=dict(request.params), status="pending", submitted_at=now, submitted_by=self.sender,
                detail=""))
            row = conn.execute(select(C).where(C.c.key == key)).one()
        return _execution(row, request)

    def poll(self, ref: str) -> Execution:
        found = self.lookup(ref)
        if found is None:
            raise SelfhealError(f"the twin never received command {ref!r}")
        return found

    def lookup(self, key: str) -> Execution | None:
        with self.store.read() as conn:
            row = conn.execute(select(C).where(C.c.key == key)).first()
        return None if row is None else _execution(row)

    def cancel(self, key: str) -> bool:
        with self.store.transaction() as conn:
            won = conn.execute(update(C).where(C.c.key == key, C.c.status == "pending")
                               .values(status="cancelled", finished_at=datetime.now(UTC), detail="cancelled"))
        return won.rowcount == 1


def _execution(row, request: ActionRequest | None = None) -> Execution:
    request = request or ActionRequest(row.pipeline_id, ActionKind(row.action), Stage(row.stage), dict(row.params))
    return Execution(row.key, request, _STATUS[row.status], row.submitted_at, row.finished_at, row.detail)


HOST_KEY = "twin_host"
HOST_LEASE = timedelta(seconds=60)


def _alive(holder: dict) -> bool:
    """Whether the process holding the twin may still be running (a dead one on this machine is known dead)."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine: only its lease's expiry tells
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError):
        return True
    return True


class TwinHost:
    """Applies the inbox's commands to one live twin. One host per store: a second process that tries to host a
    twin on the same store is refused while the first one's lease runs (two twins would write the same
    pipelines' telemetry). Call `pump` every tick (it renews the lease) and `release` on the way out."""

    def __init__(self, store: Store, twin: Twin, lock: threading.RLock) -> None:
        self.store = store
        self.twin = twin
        self.lock = lock
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}
        self._mine: set[str] = set()  # commands this twin took (a restarted twin does not know older ones)
        with store.transaction() as conn:
            self._hold(conn, claim=True)
            orphans = conn.execute(update(C).where(C.c.status == "running").values(
                status="failed", finished_at=datetime.now(UTC),
                detail="the staging twin restarted while the action ran"))
        if orphans.rowcount:
            log.warning("%d twin command(s) were running when the twin restarted: marked failed", orphans.rowcount)

    def _hold(self, conn: Connection, *, claim: bool = False) -> None:
        now = datetime.now(UTC)
        t = KeyValueRow.__table__
        row = conn.execute(select(t.c.value).where(t.c.key == HOST_KEY).with_for_update()).first()
        holder = row[0] if row is not None else None
        if holder and holder.get("id") != self.owner["id"]:
            until = datetime.fromisoformat(holder["expires"])
            if until > now and _alive(holder):
                raise SelfhealError(
                    f"another process hosts the staging twin on this store (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, lease until {until:%H:%M:%S} UTC): run one console or `selfheal agent` "
                    "per store, and add `selfheal worker` processes for more execution capacity")
            if not claim:
                raise SelfhealError("this process lost the staging twin to another host; stop it")
        repo.set_value(conn, HOST_KEY, {**self.owner, "expires": (now + HOST_LEASE).isoformat()})

    def release(self) -> None:
        """Give the twin up (a clean stop): another process may host one at once."""
        t = KeyValueRow.__table__
        with self.store.transaction() as conn:
            row = conn.execute(select(t.c.value).where(t.c.key == HOST_KEY)).first()
            if row is not None and row[0].get("id") == self.owner["id"]:
                repo.set_value(conn, HOST_KEY, {**row[0], "expires": datetime.now(UTC).isoformat()})

    def pump(self, conn: Connection) -> tuple[int, int]:
        """Apply new commands and report finished ones, inside the caller's transaction: (applied, finished)."""
        self._hold(conn)
        now = datetime.now(UTC)
        applied = finished = 0
        with self.lock:
            pending = conn.execute(select(C).where(C.c.status == "pending").order_by(C.c.submitted_at, C.c.key)
                                   .with_for_update(skip_locked=True)).all()
            for row in pending:
                try:
                    run = self.twin.apply_action(row.pipeline_id, row.action, stage=row.stage,
                                                 params=dict(row.params or {}))
                except SelfhealError as e:
                    conn.execute(update(C).where(C.c.key == row.key).values(
                        status="failed", applied_at=now, finished_at=now, detail=str(e)))
                    finished += 1
                    continue
                self._mine.add(row.key)
                conn.execute(update(C).where(C.c.key == row.key).values(
                    status="running", applied_at=now, twin_action=run.id,
                    detail=f"twin action #{run.id} started at simulated {self.twin.now:%Y-%m-%d %H:%M}"))
                applied += 1
            running = conn.execute(select(C.c.key, C.c.twin_action).where(C.c.status == "running")).all()
            for key, action_id in running:
                if key not in self._mine or action_id is None:
                    continue
                run = self.twin.actions[action_id - 1]
                if not run.done:
                    continue
                at = self.twin.time_of(run.completes)
                conn.execute(update(C).where(C.c.key == key, C.c.status == "running").values(
                    status=run.outcome, finished_at=now,
                    detail=f"twin action #{run.id} {run.outcome} at simulated {at:%H:%M}"))
                self._mine.discard(key)
                finished += 1
        return applied, finished
