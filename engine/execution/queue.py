"""The approval queue: proposals, human decisions, the policy's auto-approvals, and the runs they queue.

A proposal is `pending` until an operator approves or rejects it, the policy approves it, or it expires.
Approving queues exactly one action run (idempotency key ``proposal:<id>``) in the same transaction; the
decision is a conditional update (``WHERE status = 'pending'``), so of twenty simultaneous approvals one wins
and the others get a ConflictError naming who decided first. Every step lands in the audit log with the
change it records. Times here are wall-clock UTC (humans decide on this clock); simulated times of the twin
travel in the evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, select, update

from engine.errors import ConflictError, NotFoundError, SelfhealError, UnknownActionError, UnknownPipelineError
from engine.execution.catalog import CATALOG
from engine.execution.params import check_params
from engine.execution.policy import Policy, Verdict, evaluate
from engine.model import PROPOSAL_STATUSES, ActionKind, Stage
from engine.security.roles import Permission, Principal, require
from engine.service.audit import append
from engine.store.db import Store
from engine.store.tables import ActionRunRow, PipelineRow, ProposalRow

log = logging.getLogger(__name__)
P = ProposalRow.__table__
R = ActionRunRow.__table__
OPEN = ("pending", "approved")  # a proposal that may still run
STATUSES = PROPOSAL_STATUSES
DECIDED = ("approved", "rejected", "expired", "cancelled")
RUN_FINAL = ("succeeded", "failed", "timed_out", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """What a proposer (the agent, the chat, an operator) wants to run, with its evidence."""

    pipeline_id: str
    action: ActionKind | str
    stage: Stage | str | None = None
    params: Mapping[str, Any] | None = None
    origin: str = "agent"
    confidence: float = 0.0
    evidence: Mapping[str, Any] | None = None
    incident_id: int | None = None


@dataclass(frozen=True, slots=True)
class Proposed:
    proposal_id: int
    status: str  # pending | approved (the policy auto-approved it)
    verdict: Verdict
    deduplicated: bool = False
    run_id: int | None = None


@dataclass(frozen=True, slots=True)
class Decided:
    proposal_id: int
    status: str  # approved | rejected
    run_id: int | None


def _checked(conn: Connection, req: ProposalRequest) -> tuple[ActionKind, Stage, dict[str, Any]]:
    try:
        action = ActionKind(req.action)
    except ValueError:
        raise UnknownActionError(f"unknown action {req.action!r}; known: "
                                 f"{', '.join(a.value for a in ActionKind)}") from None
    if action is ActionKind.WAIT:
        raise SelfhealError("wait is not something to approve: the agent waits on its own")
    if conn.execute(select(PipelineRow.__table__.c.id).where(PipelineRow.__table__.c.id == req.pipeline_id)
                    ).first() is None:
        raise UnknownPipelineError(f"unknown pipeline {req.pipeline_id!r}")
    spec = CATALOG[action]
    try:
        stage = Stage(req.stage) if req.stage is not None else None
    except ValueError:
        raise SelfhealError(f"unknown stage {req.stage!r}; known: {', '.join(s.value for s in Stage)}") from None
    if stage is not None and not spec.applies_to(stage):
        raise SelfhealError(f"{action.value} applies to the {', '.join(sorted(s.value for s in spec.stages))} "
                            f"stage(s), not {stage.value}")
    if not 0.0 <= req.confidence <= 1.0:
        raise SelfhealError(f"confidence must be within 0..1, got {req.confidence}")
    return action, spec.target(stage), check_params(action, dict(req.params or {}))


def auto_usage(conn: Connection, policy: Policy, now: datetime) -> dict[str, int]:
    """How many proposals each of the policy's rules auto-approved within its rate-limit window."""
    used: dict[str, int] = {}
    for rule in policy.auto:
        since = now - timedelta(minutes=rule.rate_limit.per_minutes)
        used[rule.name] = int(conn.execute(
            select(func.count()).select_from(P).where(P.c.policy_rule == rule.name, P.c.decided_at >= since)
        ).scalar_one())
    return used


def propose(conn: Connection, actor: Principal, req: ProposalRequest, policy: Policy, *,
            now: datetime | None = None) -> Proposed:
    """Queue a proposal inside the caller's transaction; auto-approve it when the policy allows.

    An identical open proposal (same pipeline, action, stage, parameters) is returned instead of a second one.
    Raises a SelfhealError (unknown pipeline/action/stage, bad parameters) before writing anything.
    """
    require(actor, Permission.PROPOSE)
    now = now or utcnow()
    action, stage, params = _checked(conn, req)
    same = conn.execute(select(P.c.id, P.c.status, P.c.params).where(
        P.c.pipeline_id == req.pipeline_id, P.c.action == action.value, P.c.stage == stage.value,
        P.c.status.in_(OPEN)).order_by(P.c.id)).all()
    for row in same:
        if (row.params or {}) == params and not _ran(conn, row.id):
            return Proposed(row.id, row.status, Verdict(row.status == "approved", None, "already queued"),
                            deduplicated=True)
    spec = CATALOG[action]
    evidence = {**(req.evidence or {}), "cost": spec.cost, "expected_effect": spec.summary}
    pid = int(conn.execute(insert(P).values(
        incident_id=req.incident_id, pipeline_id=req.pipeline_id, action=action.value, stage=stage.value,
        params=params, origin=req.origin, status="pending", risk=spec.risk.value, confidence=req.confidence,
        evidence=evidence, created_at=now, updated_at=now,
        expires_at=now + timedelta(minutes=policy.proposal_ttl_minutes))).inserted_primary_key[0])
    append(conn, actor=actor.label, kind="proposal_created", subject=f"proposal:{pid}", at=now,
           detail={"pipeline": req.pipeline_id, "action": action.value, "stage": stage.value, "params": params,
                   "origin": req.origin, "risk": spec.risk.value, "confidence": round(req.confidence, 3),
                   "incident_id": req.incident_id, "reason": (req.evidence or {}).get("reason", "")})
    verdict = evaluate(policy, action=action, pipeline_id=req.pipeline_id, confidence=req.confidence,
                       used=auto_usage(conn, policy, now))
    if not verdict.auto:
        return Proposed(pid, "pending", verdict)
    run_id = _approve_row(conn, pid, decided_by=f"policy:{verdict.rule}", reason=verdict.why, now=now,
                          policy_rule=verdict.rule)
    return Proposed(pid, "approved", verdict, run_id=run_id)


def _ran(conn: Connection, proposal_id: int) -> bool:
    """Whether the proposal's run has finished (then a new identical proposal is a new attempt)."""
    status = conn.execute(select(R.c.status).where(R.c.proposal_id == proposal_id)).scalar()
    return status in RUN_FINAL


def _approve_row(conn: Connection, pid: int, *, decided_by: str, reason: str, now: datetime,
                 params: dict[str, Any] | None = None, policy_rule: str | None = None) -> int:
    """Flip pending → approved (only if still pending and not expired) and queue its one run."""
    values: dict[str, Any] = {"status": "approved", "decided_by": decided_by, "decided_at": now, "reason": reason,
                              "updated_at": now, "policy_rule": policy_rule}
    if params is not None:
        values["params"] = params
    won = conn.execute(update(P).where(P.c.id == pid, P.c.status == "pending", _not_expired(now)).values(**values))
    if won.rowcount != 1:
        _explain_conflict(conn, pid, now)
    row = conn.execute(select(P).where(P.c.id == pid)).one()
    run_id = int(conn.execute(insert(R).values(
        idempotency_key=f"proposal:{pid}", proposal_id=pid, pipeline_id=row.pipeline_id, action=row.action,
        stage=row.stage, params=row.params or {}, status="queued", queued_at=now, result={},
        incident_id=row.incident_id, attempts=0)).inserted_primary_key[0])
    append(conn, actor=decided_by, kind="proposal_approved", subject=f"proposal:{pid}", at=now,
           detail={"run_id": run_id, "reason": reason, "pipeline": row.pipeline_id, "action": row.action,
                   "stage": row.stage, "params": row.params or {}, "auto": policy_rule is not None})
    return run_id


def _not_expired(now: datetime) -> Any:
    return (P.c.expires_at.is_(None)) | (P.c.expires_at > now)


def _explain_conflict(conn: Connection, pid: int, now: datetime) -> None:
    row = conn.execute(select(P).where(P.c.id == pid)).first()
    if row is None:
        raise NotFoundError(f"no proposal #{pid}")
    if row.status == "pending":  # still pending, so it expired
        raise ConflictError(f"proposal #{pid} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    who = f" by {row.decided_by}" if row.decided_by else ""
    when = f" at {row.decided_at:%H:%M:%S} UTC" if row.decided_at else ""
    raise ConflictError(f"proposal #{pid} is already {row.status}{who}{when}")


def _locked(conn: Connection, proposal_id: int, expected_params: Mapping[str, Any] | None) -> Any:
    """The proposal's row, locked for this transaction (PostgreSQL; SQLite's write lock is already held); a
    ConflictError when someone changed its parameters since the caller saw `expected_params`."""
    row = conn.execute(select(P.c.action, P.c.params, P.c.updated_at).where(P.c.id == proposal_id)
                       .with_for_update()).first()
    if row is None:
        raise NotFoundError(f"no proposal #{proposal_id}")
    if expected_params is not None and dict(expected_params) != (row.params or {}):
        raise ConflictError(f"proposal #{proposal_id}'s parameters changed since you opened it (now "
                            f"{row.params or {}}); look again before deciding")
    return row


def approve(store: Store, actor: Principal, proposal_id: int, *, params: Mapping[str, Any] | None = None,
            reason: str = "", now: datetime | None = None,
            expected_params: Mapping[str, Any] | None = None) -> Decided:
    """An operator approves a pending proposal (optionally with edited parameters): its run is queued once.

    `expected_params` are the parameters the operator saw: if someone edited them since, nothing is approved
    (ConflictError), so what runs is what was approved.
    """
    require(actor, Permission.DECIDE)
    now = now or utcnow()
    with store.transaction() as conn:
        before = _locked(conn, proposal_id, expected_params)
        new_params = None
        if params is not None:
            new_params = check_params(ActionKind(before.action), dict(params))
        run_id = _approve_row(conn, proposal_id, decided_by=actor.label, reason=reason.strip(), now=now,
                              params=new_params)
        if new_params is not None and new_params != (before.params or {}):
            append(conn, actor=actor.label, kind="proposal_edited", subject=f"proposal:{proposal_id}", at=now,
                   detail={"before": before.params or {}, "after": new_params})
    log.info("proposal %s approved by %s (run %s)", proposal_id, actor.label, run_id)
    return Decided(proposal_id, "approved", run_id)


def _required(reason: str, what: str) -> str:
    if not reason or not reason.strip():
        raise SelfhealError(f"a {what} needs a reason")
    return reason.strip()


def _close_pending(conn: Connection, proposal_id: int, status: str, *, actor: Principal, reason: str,
                   now: datetime) -> bool:
    """pending → `status` with who, when and why; False when it was no longer pending or has expired (the expiry
    clock marks it expired on its next tick: deciding after the deadline is too late, whoever marks it first)."""
    won = conn.execute(update(P).where(P.c.id == proposal_id, P.c.status == "pending", _not_expired(now)).values(
        status=status, decided_by=actor.label, decided_at=now, reason=reason, updated_at=now))
    return won.rowcount == 1


def reject(store: Store, actor: Principal, proposal_id: int, reason: str, *, now: datetime | None = None) -> Decided:
    """An operator rejects a pending proposal; the reason is required (it teaches the agent and the auditors)."""
    require(actor, Permission.DECIDE)
    reason = _required(reason, "rejection")
    now = now or utcnow()
    with store.transaction() as conn:
        if not _close_pending(conn, proposal_id, "rejected", actor=actor, reason=reason, now=now):
            _explain_conflict(conn, proposal_id, now)
        append(conn, actor=actor.label, kind="proposal_rejected", subject=f"proposal:{proposal_id}", at=now,
               detail={"reason": reason})
    log.info("proposal %s rejected by %s", proposal_id, actor.label)
    return Decided(proposal_id, "rejected", None)


def edit_params(store: Store, actor: Principal, proposal_id: int, params: Mapping[str, Any], *,
                now: datetime | None = None, expected_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Change a pending proposal's parameters within their bounds; returns the new parameters. With
    `expected_params` (what the editor saw), a concurrent edit is a ConflictError instead of being overwritten."""
    require(actor, Permission.DECIDE)
    now = now or utcnow()
    with store.transaction() as conn:
        row = _locked(conn, proposal_id, expected_params)
        new = check_params(ActionKind(row.action), dict(params))
        won = conn.execute(update(P).where(P.c.id == proposal_id, P.c.status == "pending", _not_expired(now))
                           .values(params=new, updated_at=now))
        if won.rowcount != 1:
            _explain_conflict(conn, proposal_id, now)
        if new != (row.params or {}):  # saving what is already there changes nothing, so nothing is audited
            append(conn, actor=actor.label, kind="proposal_edited", subject=f"proposal:{proposal_id}", at=now,
                   detail={"before": row.params or {}, "after": new})
    return new


def cancel(store: Store, actor: Principal, proposal_id: int, reason: str, *, now: datetime | None = None) -> str:
    """Withdraw a proposal that has not started: a pending one is cancelled, an approved one's queued run is
    cancelled before any worker takes it. A run already running cannot be withdrawn (ConflictError)."""
    require(actor, Permission.DECIDE)
    reason = _required(reason, "cancellation")
    now = now or utcnow()
    with store.transaction() as conn:
        if _close_pending(conn, proposal_id, "cancelled", actor=actor, reason=reason, now=now):
            what = "proposal"
        else:
            run = conn.execute(update(R).where(R.c.proposal_id == proposal_id, R.c.status == "queued").values(
                status="cancelled", finished_at=now, result={"detail": f"cancelled by {actor.label}: {reason}"}))
            if run.rowcount != 1:
                row = conn.execute(select(R.c.status).where(R.c.proposal_id == proposal_id)).first()
                if row is None:
                    _explain_conflict(conn, proposal_id, now)
                raise ConflictError(f"proposal #{proposal_id}'s run is already {row.status}: it cannot be withdrawn")
            what = "run"
        append(conn, actor=actor.label, kind="proposal_cancelled", subject=f"proposal:{proposal_id}", at=now,
               detail={"reason": reason, "withdrawn": what})
    return what


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    proposal_id: int
    ok: bool
    message: str


def decide_many(store: Store, actor: Principal, proposal_ids: Iterable[int], *, approve_them: bool,
                reason: str = "", now: datetime | None = None,
                expected: Mapping[int, Mapping[str, Any]] | None = None) -> list[BulkOutcome]:
    """Approve or reject several proposals, each in its own transaction: one conflict does not stop the rest.

    `expected`: per proposal, the parameters the operator saw; one edited since is not approved (as `approve`)."""
    expected = expected or {}
    require(actor, Permission.DECIDE)
    if not approve_them and not reason.strip():
        raise SelfhealError("a rejection needs a reason")
    out = []
    for pid in proposal_ids:
        try:
            if approve_them:
                d = approve(store, actor, pid, reason=reason, now=now, expected_params=expected.get(pid))
                out.append(BulkOutcome(pid, True, f"approved, run #{d.run_id} queued"))
            else:
                reject(store, actor, pid, reason, now=now)
                out.append(BulkOutcome(pid, True, "rejected"))
        except (ConflictError, NotFoundError) as e:
            out.append(BulkOutcome(pid, False, str(e)))
    return out


def expire_due(conn: Connection, now: datetime | None = None) -> list[int]:
    """Mark pending proposals past their expiry as expired (audited); returns their ids."""
    now = now or utcnow()
    due = [r.id for r in conn.execute(select(P.c.id).where(P.c.status == "pending", P.c.expires_at <= now))]
    for pid in due:
        won = conn.execute(update(P).where(P.c.id == pid, P.c.status == "pending")
                           .values(status="expired", updated_at=now))
        if won.rowcount == 1:
            append(conn, actor="system", kind="proposal_expired", subject=f"proposal:{pid}", at=now, detail={})
    return due


# -- reads for pages and the CLI ----------------------------------------------------------------


def proposals(conn: Connection, *, statuses: Sequence[str] | None = None, pipelines: Sequence[str] | None = None,
              origins: Sequence[str] | None = None, risks: Sequence[str] | None = None,
              limit: int = 500) -> pd.DataFrame:
    """Proposals newest first, with their run's status (one row per proposal)."""
    q = (select(P.c.id, P.c.created_at, P.c.pipeline_id, P.c.action, P.c.stage, P.c.params, P.c.risk,
                P.c.confidence, P.c.origin, P.c.status, P.c.incident_id, P.c.decided_by, P.c.decided_at,
                P.c.reason, P.c.expires_at, P.c.policy_rule, R.c.id.label("run_id"),
                R.c.status.label("run_status"), R.c.worker, R.c.finished_at)
         .select_from(P.outerjoin(R, R.c.proposal_id == P.c.id)).order_by(P.c.id.desc()).limit(limit))
    for col, values in ((P.c.status, statuses), (P.c.pipeline_id, pipelines), (P.c.origin, origins),
                        (P.c.risk, risks)):
        if values:
            q = q.where(col.in_(list(values)))
    rows = conn.execute(q).all()
    return pd.DataFrame([r._asdict() for r in rows], columns=list(q.selected_columns.keys()))


def proposal(conn: Connection, proposal_id: int) -> dict[str, Any]:
    """One proposal with its run (or None), as plain values; NotFoundError if absent."""
    row = conn.execute(select(P).where(P.c.id == proposal_id)).first()
    if row is None:
        raise NotFoundError(f"no proposal #{proposal_id}")
    run = conn.execute(select(R).where(R.c.proposal_id == proposal_id)).first()
    return {**row._asdict(), "run": run._asdict() if run is not None else None}


def runs(conn: Connection, *, limit: int = 500, statuses: Sequence[str] | None = None) -> pd.DataFrame:
    """Action runs newest first: what ran, who approved it (via its proposal), where and how it ended."""
    q = (select(R.c.id, R.c.proposal_id, R.c.pipeline_id, R.c.action, R.c.stage, R.c.params, R.c.status,
                R.c.worker, R.c.attempts, R.c.queued_at, R.c.started_at, R.c.finished_at, R.c.result,
                P.c.decided_by.label("approved_by"), P.c.origin)
         .select_from(R.outerjoin(P, P.c.id == R.c.proposal_id)).order_by(R.c.id.desc()).limit(limit))
    if statuses:
        q = q.where(R.c.status.in_(list(statuses)))
    rows = conn.execute(q).all()
    return pd.DataFrame([r._asdict() for r in rows], columns=list(q.selected_columns.keys()))


Clock = Callable[[], datetime]
