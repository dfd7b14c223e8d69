"""The assistant's only write: queue a proposal for a human to approve (origin "chat", status "pending").

Nothing is executed here or anywhere in the assistant. Arguments are validated (action catalog, stage,
parameter bounds), an identical pending proposal (whoever filed it) is reused instead of queued twice, it expires
after the execution policy's `proposal_ttl_minutes` like every proposal, and every proposal lands in the audit log.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from engine.assistant.actions import RULES, check_action
from engine.assistant.args import ProposeArgs
from engine.assistant.context import ToolContext, ToolFailure
from engine.assistant.format import iso
from engine.assistant.results import ToolResult, ToolStatus
from engine.errors import SelfhealError
from engine.execution import policy as policy_mod
from engine.security.roles import Permission
from engine.service.audit import append
from engine.settings import load_settings
from engine.store import assistant_repo

log = logging.getLogger(__name__)
ORIGIN = "chat"
EXPIRES_AFTER = timedelta(minutes=policy_mod.DEFAULT_POLICY.proposal_ttl_minutes)


def _ttl(ctx: ToolContext) -> timedelta:
    """How long a chat proposal waits: the execution policy's `proposal_ttl_minutes`, as for every proposal."""
    if ctx.proposal_ttl is not None:
        return ctx.proposal_ttl
    try:
        return timedelta(minutes=policy_mod.load(load_settings().policy_path).proposal_ttl_minutes)
    except SelfhealError as e:  # an invalid policy file: the loop keeps its last good one; here, the default
        log.warning("chat proposals expire after the default %s: %s", EXPIRES_AFTER, e)
        return EXPIRES_AFTER


def propose_action(ctx: ToolContext, args: ProposeArgs) -> ToolResult:
    who = ctx.principal
    if who is not None and not who.can(Permission.PROPOSE):
        raise ToolFailure(f"{who.label} ({who.role.value}) may not propose fixes; ask an operator. Nothing was "
                          "queued.")
    actor = who.label if who is not None else ctx.actor
    target = ctx.target(args.pipeline)
    try:
        stage = check_action(args.action, args.stage or target.stage, args.params)
    except ValueError as e:
        raise ToolFailure(str(e)) from e
    params = args.params.given()
    rule = RULES[args.action]
    component = ctx.catalog().component_of(target.pipeline, stage)
    where = f"{target.pipeline}/{stage.value} ({component})"
    with ctx.store.transaction() as conn:
        # Whoever filed it (the chat, the agent, an operator): the same pending fix is one proposal, not two runs.
        same = [p for p in assistant_repo.pending_proposals(conn, target.pipeline, args.action.value)
                if p["stage"] == stage.value and (p["params"] or {}) == params]
        if same:
            pid, created, expires, reused = same[0]["id"], same[0]["created_at"], same[0]["expires_at"], True
        else:
            created = ctx.clock()
            expires = created + _ttl(ctx)
            pid = assistant_repo.insert_proposal(conn, assistant_repo.NewProposal(
                pipeline_id=target.pipeline, action=args.action.value, stage=stage.value, params=params,
                origin=ORIGIN, risk=rule.risk, confidence=args.confidence,
                evidence={"reason": args.reason, "question": ctx.question[:500], "component": component,
                          "requested_by": actor},
                created_at=created, expires_at=expires, incident_id=args.incident_id))
            reused = False
            append(conn, actor=actor, kind="proposal_created", subject=f"proposal:{pid}",
                   detail={"origin": ORIGIN, "pipeline": target.pipeline, "action": args.action.value,
                           "stage": stage.value, "params": params, "risk": rule.risk, "reason": args.reason,
                           "incident_id": args.incident_id, "question": ctx.question[:500]}, at=created)
    if not reused:
        log.info("chat proposal %s queued: %s on %s", pid, args.action.value, where)
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    text = (f"{'Already queued' if reused else 'Queued'} proposal #{pid}: {args.action.value} on {where}"
            + (f" with {shown}" if shown else "") + f" (risk {rule.risk}). It waits for an operator's approval "
            "on the approval queue; nothing has been executed.")
    data = {"proposal_id": pid, "action": args.action.value, "pipeline": target.pipeline, "stage": stage.value,
            "component": component, "params": params, "status": "pending", "origin": ORIGIN, "risk": rule.risk,
            "incident_id": args.incident_id, "created_at": iso(created), "expires_at": iso(expires),
            "deduplicated": reused}
    return ToolResult(ToolStatus.APPROVAL_REQUIRED, text, data)
