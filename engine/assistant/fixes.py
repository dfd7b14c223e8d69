"""The offline analyst's diagnosis and fix answers: explain an incident, advise a fix, queue a proposal.

Queueing needs the user's own request; the proposal waits for an operator and nothing runs from here.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from engine.assistant.actions import RULES
from engine.assistant.entities import FAULT_LABELS
from engine.assistant.format import fmt_value, hhmm, metric_label
from engine.assistant.intent import Parsed
from engine.assistant.results import ProposalDraft, ReplyEvent, ToolCall, ToolStatus
from engine.assistant.safety import quote_log
from engine.assistant.session import DEFAULT_EVENT_WINDOW, Reply, Session, Steps, window_note
from engine.model import ActionKind, Stage

MAX_PIPELINES_PER_REQUEST = 3


def _incident(s: Session, p: Parsed, pipeline: str | None) -> Generator[ReplyEvent, None, ToolCall]:
    """explain_incident for the question; without a stated window, falls back from 24 h to all data."""
    m = p.mentions
    window = p.window.phrase if p.window else DEFAULT_EVENT_WINDOW
    call = yield from s.call("explain_incident", incident_id=m.incident_id, pipeline=pipeline, window=window)
    if call.result.status is ToolStatus.NO_DATA and p.window is None and m.incident_id is None:
        call = yield from s.call("explain_incident", pipeline=pipeline, window="all")
    return call


def _draft(fix: dict[str, Any], reason: str) -> ProposalDraft:
    return ProposalDraft(fix["action"], fix["pipeline"], fix["stage"], dict(fix["params"]), reason,
                         fix.get("incident_id"), float(fix.get("confidence", 0.5)))


def _explain_text(d: dict[str, Any]) -> str:
    state = "still open" if d["status"] == "open" else f"closed at {hhmm(d['closed_at'])} UTC"
    where = f"**{d['stage']}** (`{d['component']}`)" if d["stage"] else "an unknown stage (freshness only)"
    lines = [f"**Incident #{d['id']} on {d['pipeline']}** (onset {hhmm(d['onset_at'])} UTC, {state}): root cause "
             f"{where}, **{d['cause']}** (confidence {d['confidence']:.2f})."]
    ev = []
    by_stage = d["error_events_by_stage"]
    if by_stage:
        ev.append(f"- {sum(by_stage.values())} error events since onset ("
                  + ", ".join(f"{k} {v}" for k, v in by_stage.items()) + ")")
    seen: set[str] = set()
    for log in d["log_lines"]:
        if log["message"] not in seen and len(seen) < 2:
            seen.add(log["message"])
            ev.append(f"- log on {log['stage']} at {hhmm(log['ts'])[-5:]}: {quote_log(log['message'])}")
    for e in [e for e in d["metrics"] if e["change"] is not None and abs(e["change"]) >= 0.25][:3]:
        ev.append(f"- {metric_label(e['metric'])} on {e['stage']}: {fmt_value(e['metric'], e['before_avg'])} in the "
                  f"hour before → {fmt_value(e['metric'], e['during_avg'])} on average during (peak "
                  f"{fmt_value(e['metric'], e['during_max'])})")
    steps = " · ".join(f"{hhmm(t['ts'])[-5:]} {t['what'][:80]}" for t in d["timeline"][:8])
    ev.append(f"- timeline: {steps}")
    lines.append("Evidence:\n\n" + "\n".join(ev))
    fix = d["suggested_fix"]
    params = ", ".join(f"{k}={v}" for k, v in fix["params"].items())
    book = d.get("runbook")
    lines.append(f"Usual fix: **{fix['action']}** on {fix['pipeline']} / {fix['stage']}"
                 + (f" ({params})" if params else "") + f", risk {fix['risk']}"
                 + (f" — runbook *{book['title']}*: {book['fix'].split('. ')[0]}." if book else ".")
                 + " Say “propose it” or use *Propose this fix* to queue it for an operator's approval.")
    return "\n\n".join(lines)


def explain(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    call = yield from _incident(s, p, m.pipeline)
    r = call.result
    if r.status is ToolStatus.ERROR:
        return Reply(r.text)
    if r.status is ToolStatus.NO_DATA:
        text = r.text
        if m.pipeline:
            now = yield from s.call("fleet_status", pipeline=m.pipeline)
            if now.result.ok:
                text += f" Right now: {now.result.text}"
        return Reply(text + window_note(call), follow_ups=["How is the fleet doing right now?"])
    d = r.data
    draft = _draft(d["suggested_fix"], f"Diagnosed in chat: {d['cause']} on {d['stage']} (incident #{d['id']}).")
    follow = ["Propose the fix", f"Search the runbooks for {FAULT_LABELS.get(d['error_type'], d['error_type'])}",
              f"How many errors did {d['pipeline']} have in the last 2 hours?"]
    return Reply(_explain_text(d) + window_note(call), suggestion=draft, follow_ups=follow,
                 context={"incident_id": d["id"], "pipelines": [d["pipeline"]]})


def _proposal_text(call: ToolCall) -> str:
    r = call.result
    if r.status is not ToolStatus.APPROVAL_REQUIRED:
        return f"I could not queue that: {r.text}. Nothing was proposed or executed."
    d = r.data
    params = ", ".join(f"{k}={v}" for k, v in d["params"].items())
    lead = "That fix is already queued as" if d["deduplicated"] else "Queued"
    return (f"{lead} proposal **#{d['proposal_id']}**: **{d['action']}** on {d['pipeline']} / {d['stage']} "
            f"(`{d['component']}`)" + (f" with {params}" if params else "") + f", risk {d['risk']}. It waits on the "
            "approval queue for an operator; nothing has been executed.")


def _target_pipelines(s: Session, p: Parsed) -> Generator[ReplyEvent, None, list[str]]:
    """The pipelines a fix request names; else the one pipeline with an open incident, if exactly one."""
    if p.mentions.pipelines:
        return list(p.mentions.pipelines[:MAX_PIPELINES_PER_REQUEST])
    call = yield from s.call("fleet_status")
    if not call.result.ok:
        return []
    open_ = [x["pipeline"] for x in call.result.data["pipelines"] if x["open_incident"]]
    return open_ if len(open_) == 1 else []


def _named_fix(s: Session, p: Parsed, pipeline: str, incident: ToolCall | None
               ) -> Generator[ReplyEvent, None, dict[str, Any]]:
    """Arguments for the action the user named: stage from the words or the incident, workers sized from telemetry."""
    action = p.action
    assert action is not None
    rule = RULES[action]
    stage = p.mentions.stage
    inc = incident.result.data if incident is not None and incident.result.status is ToolStatus.SUCCESS else None
    if stage is None and inc and inc.get("stage") and (rule.stages is None or Stage(inc["stage"]) in rule.stages):
        stage = Stage(inc["stage"])
    stage = stage or rule.default_stage
    params = dict(p.params)
    if action in (ActionKind.SCALE_WORKERS, ActionKind.SCALE_WAREHOUSE) and not params:
        cur = yield from s.call("get_metric", pipeline=pipeline, stage=stage.value, metric="workers",
                                aggregation="last", window="last 1 hour")
        current = float(cur.result.data.get("value", 0) or 0) if cur.result.ok else 0.0
        if p.add_workers:
            params["workers"] = int(current) + p.add_workers
        else:
            params["workers"] = int(min(64, max(current + 1, math.ceil(max(current, 1) * 2))))
    linked = inc is not None and inc["status"] == "open"
    return {"action": action.value, "pipeline": pipeline, "stage": stage.value, "params": params,
            "incident_id": inc["id"] if linked else None, "confidence": inc["confidence"] if linked else 0.5}


def propose(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    if m.whole_fleet and not m.pipelines:
        return Reply("I queue fixes one pipeline at a time, for pipelines you name, and an operator approves each "
                     "one. Nothing was proposed or executed. Name the pipeline (and stage), e.g. “scale the orders "
                     "Glue job to 16 workers”.")
    pipelines = yield from _target_pipelines(s, p)
    if not pipelines:
        return Reply("Which pipeline should the fix go to? Name it (and the stage), e.g. “restart the payments "
                     "DAG”. Nothing was proposed.")
    parts = []
    for pid in pipelines:
        incident = yield from _incident(s, p, pid)
        reason = f"Requested in chat: {s.ctx.question[:200]}"
        if p.action is None:
            if incident.result.status is not ToolStatus.SUCCESS:
                parts.append(f"No incident on {pid} to fix ({incident.result.text}) Name an action if you want "
                             f"one anyway, e.g. “restart the {pid} Glue job”. Nothing was proposed.")
                continue
            args = dict(incident.result.data["suggested_fix"])
            args.pop("risk", None)
        else:
            args = yield from _named_fix(s, p, pid, incident)
        call = yield from s.call("propose_action", **args, reason=reason)
        parts.append(_proposal_text(call))
    return Reply("\n\n".join(parts), follow_ups=[f"Why did {pipelines[0]} fail?", f"How is {pipelines[0]} doing "
                                                 "right now?"], context={"suggestion": None})


def advise(s: Session, p: Parsed) -> Steps:
    pipelines = yield from _target_pipelines(s, p)
    if not pipelines:
        return Reply("Which pipeline do you mean? Name it, e.g. “what should I do about payments?”")
    pid = pipelines[0]
    if p.action is None:
        return (yield from explain(s, replace(p, mentions=replace(p.mentions, pipelines=(pid,)))))
    incident = yield from _incident(s, p, pid)
    args = yield from _named_fix(s, p, pid, incident)
    draft = ProposalDraft(args["action"], pid, args["stage"], args["params"],
                          f"Suggested in chat: {s.ctx.question[:200]}", args["incident_id"], args["confidence"])
    rule = RULES[ActionKind(args["action"])]
    text = f"I can queue **{draft.describe()}** for an operator's approval (risk {rule.risk}; {rule.summary})."
    inc = incident.result.data if incident.result.status is ToolStatus.SUCCESS else None
    if inc:
        usual = inc["suggested_fix"]["action"]
        text += (f"\n\nThe latest incident on {pid} (#{inc['id']}, {'open' if inc['status'] == 'open' else 'closed'}) "
                 f"is diagnosed as **{inc['cause']}** on {inc['stage']}; the usual fix for that is **{usual}**"
                 + (" — the same action." if usual == args["action"] else f", not {args['action']}."))
    text += "\n\nSay “propose it” or use *Propose this fix* to queue it; nothing runs until an operator approves it."
    return Reply(text + window_note(incident), suggestion=draft, follow_ups=["Propose it", f"Why did {pid} fail?"])


def confirm(s: Session, p: Parsed, suggestion: dict[str, Any] | None) -> Steps:
    if not suggestion:
        return Reply("There is no suggested fix in this conversation yet. Ask e.g. “why is orders failing?” first, "
                     "or name the fix (“restart the payments DAG”). Nothing was proposed.")
    call = yield from s.call("propose_action", **suggestion)
    return Reply(_proposal_text(call), context={"suggestion": None})
