"""The live decision loop's executor: every action the agent wants becomes a proposal.

The healer calls `submit`/`poll` as it would on any executor. Here `submit` queues a proposal with its evidence
(inside the tick's transaction, bound with `bound(conn)`); the policy may auto-approve it, otherwise it waits
for an operator; a worker runs it once approved. `poll` reports the proposal's fate as an execution status:
waiting or running → RUNNING, rejected → REJECTED (the healer learns a penalty), expired → CANCELLED, and the
run's outcome once it finished. Waiting is never proposed: it needs no one's consent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import count

from sqlalchemy import Connection, select

from engine.errors import SelfhealError
from engine.execution.executor import ActionRequest, ExecStatus, Execution
from engine.execution.policy import Policy
from engine.execution.queue import ProposalRequest, propose, utcnow
from engine.model import ActionKind, Stage
from engine.security.roles import Principal
from engine.store.tables import ActionRunRow, ProposalRow

P = ProposalRow.__table__
R = ActionRunRow.__table__
_RUN = {"succeeded": ExecStatus.SUCCEEDED, "failed": ExecStatus.FAILED, "timed_out": ExecStatus.TIMED_OUT,
        "cancelled": ExecStatus.CANCELLED}
_PROPOSAL = {"rejected": ExecStatus.REJECTED, "expired": ExecStatus.CANCELLED, "cancelled": ExecStatus.CANCELLED}
LOCAL_KEPT = 1024  # how many finished-at-once executions (waits, refusals) `poll` still knows


class ProposalGateway:
    """Turns the healer's actions into proposals; see the module docstring."""

    name = "proposals"

    def __init__(self, policy: Callable[[], Policy], actor: Principal,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.policy = policy
        self.actor = actor
        self.clock = clock
        self._conn: Connection | None = None
        # Waits and refusals: finished at once, never in the store. The newest LOCAL_KEPT are kept for `poll`
        # (a live loop makes one per wait, for as long as it runs); refs are never reused.
        self._local: OrderedDict[str, Execution] = OrderedDict()
        self._serial = count(1)

    @contextmanager
    def bound(self, conn: Connection) -> Iterator[ProposalGateway]:
        """Use `conn` (the tick's transaction) for the calls inside the block."""
        self._conn = conn
        try:
            yield self
        finally:
            self._conn = None

    def _db(self) -> Connection:
        if self._conn is None:
            raise SelfhealError("the proposal gateway is used outside a tick (bind it to a connection)")
        return self._conn

    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        now = self.clock()
        if request.action is ActionKind.WAIT:
            return self._finish_locally(request, ExecStatus.SUCCEEDED, now, "waited")
        try:
            done = propose(self._db(), self.actor, ProposalRequest(
                request.pipeline_id, request.action, request.stage, request.params, origin="agent",
                confidence=request.confidence, evidence={**request.evidence, "reason": request.reason},
                incident_id=request.incident_id), self.policy(), now=now)
        except SelfhealError as e:
            return self._finish_locally(request, ExecStatus.FAILED, now, f"refused: {e}")
        return Execution(f"proposal:{done.proposal_id}", request, ExecStatus.RUNNING, now, None, done.verdict.why)

    def _finish_locally(self, request: ActionRequest, status: ExecStatus, now: datetime, detail: str) -> Execution:
        ref = f"local-{next(self._serial)}"
        exe = Execution(ref, request, status, now, now, detail)
        self._local[ref] = exe
        while len(self._local) > LOCAL_KEPT:
            self._local.popitem(last=False)
        return exe

    def poll(self, ref: str) -> Execution:
        if ref in self._local:
            return self._local[ref]
        number = ref.removeprefix("proposal:")
        if number == ref or not number.isdigit():
            raise SelfhealError(f"unknown execution {ref!r}: not a proposal, and no longer kept if it was a wait "
                                "or a refusal")
        pid = int(number)
        row = self._db().execute(
            select(P.c.pipeline_id, P.c.action, P.c.stage, P.c.params, P.c.incident_id, P.c.status, P.c.created_at,
                   P.c.reason, R.c.status.label("run"), R.c.finished_at, R.c.result)
            .select_from(P.outerjoin(R, R.c.proposal_id == P.c.id)).where(P.c.id == pid)).first()
        if row is None:
            raise SelfhealError(f"proposal #{pid} vanished from the store")
        request = ActionRequest(row.pipeline_id, ActionKind(row.action), Stage(row.stage), dict(row.params or {}),
                                row.incident_id)
        if row.status in _PROPOSAL:
            return Execution(ref, request, _PROPOSAL[row.status], row.created_at, self.clock(), row.reason or "")
        if row.run == "cancelled":
            return Execution(ref, request, ExecStatus.CANCELLED, row.created_at, row.finished_at,
                             (row.result or {}).get("detail", ""))
        if row.run in _RUN:
            return Execution(ref, request, _RUN[row.run], row.created_at, row.finished_at,
                             (row.result or {}).get("detail", ""))
        return Execution(ref, request, ExecStatus.RUNNING, row.created_at, None, row.status)
