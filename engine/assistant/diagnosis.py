"""Explain an incident: its root cause with the evidence (metrics before and during, log lines, timeline) and
the fix that usually works, as a draft the operator can file with one click.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from engine.assistant.actions import RULES, remedy
from engine.assistant.args import ExplainArgs
from engine.assistant.context import ToolContext, ToolFailure
from engine.assistant.entities import FAULT_LABELS
from engine.assistant.format import fmt_value, hhmm, iso, metric_label, series_chart
from engine.assistant.queries import incident_summary
from engine.assistant.results import ToolResult, ToolStatus, no_data
from engine.assistant.search import runbook_for
from engine.assistant.window import span_text
from engine.model import METRICS, Incident, IncidentStatus, Stage
from engine.store import assistant_repo, repo

BASELINE = timedelta(minutes=60)
MAX_SPAN = timedelta(hours=12)


def _pick(incidents: list[Incident]) -> Incident | None:
    """The incident to explain: an open one first, then the most recent onset."""
    if not incidents:
        return None
    return max(incidents, key=lambda i: (i.status is IncidentStatus.OPEN, i.onset_at, i.id or 0))


def _metric_evidence(frame: pd.DataFrame, stage: str, onset: pd.Timestamp) -> list[dict[str, Any]]:
    """Per metric of `stage`: mean in the hour before onset against mean and peak during; biggest moves first."""
    g = frame[frame["stage"] == stage]
    before, during = g[g["ts"] < onset], g[g["ts"] >= onset]
    out = []
    for m in METRICS:
        if m not in g or during[m].dropna().empty:
            continue
        b = before[m].dropna()
        base = float(b.mean()) if not b.empty else None
        mean, peak, low = float(during[m].mean()), float(during[m].max()), float(during[m].min())
        change = None if base is None else (mean - base) / max(abs(base), 1e-6)
        out.append({"stage": stage, "metric": m, "before_avg": None if base is None else round(base, 3),
                    "during_avg": round(mean, 3), "during_max": round(peak, 3), "during_min": round(low, 3),
                    "change": None if change is None else round(change, 3)})
    out.sort(key=lambda e: -abs(e["change"] or 0.0))
    return out


def _timeline(inc: Incident, frame: pd.DataFrame, events: list, end: pd.Timestamp) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [{"ts": iso(inc.onset_at), "what": "pipeline unhealthy (onset)"}]
    if inc.opened_at != inc.onset_at:
        steps.append({"ts": iso(inc.opened_at), "what": "incident opened"})
    during = frame[(frame["ts"] >= inc.onset_at) & (frame["status"] != "healthy")]
    for (stage, status), g in during.groupby(["stage", "status"], sort=False):
        steps.append({"ts": iso(g["ts"].min()), "what": f"{stage} first {status}"})
    errors = [e for e in events if e.level == "error" and e.ts >= inc.onset_at]
    if errors:
        steps.append({"ts": iso(errors[0].ts), "what": f"first error log on {errors[0].stage.value}"})
    steps.extend({"ts": iso(e.ts), "what": e.message} for e in events if e.kind.value == "action")
    if inc.closed_at is not None:
        steps.append({"ts": iso(inc.closed_at), "what": "healthy again (incident closed)"})
    else:
        steps.append({"ts": iso(end), "what": "still open at the newest telemetry"})
    return sorted(steps, key=lambda s: s["ts"])


def _choose(ctx: ToolContext, args: ExplainArgs) -> tuple[Incident | None, str, str]:
    """(incident, scope, window description) for the arguments."""
    if args.incident_id is not None:
        with ctx.store.read() as conn:
            inc = assistant_repo.get_incident(conn, args.incident_id)
        if inc is None:
            raise ToolFailure(f"there is no incident #{args.incident_id}")
        span = ctx.span()
        last = inc.closed_at or (span[1] + timedelta(minutes=1) if span else inc.updated_at or inc.opened_at)
        return inc, f"incident #{args.incident_id}", f"incident #{inc.id}'s lifetime ({span_text(inc.onset_at, last)})"
    target = ctx.target(args.pipeline) if args.pipeline else None
    window = ctx.window(args.window)
    with ctx.store.read() as conn:
        found = repo.incidents_between(conn, window.start, window.end,
                                       pipeline_id=target.pipeline if target else None)
    return _pick(found), target.pipeline if target else "the fleet", window.describe()


def explain_incident(ctx: ToolContext, args: ExplainArgs) -> ToolResult:
    inc, scope, window_text = _choose(ctx, args)
    if inc is None:
        return no_data(f"No incident for {scope} in {window_text}: nothing to explain.", window_text, scope=scope)
    span = ctx.span()
    newest_end = (span[1] if span else inc.updated_at or inc.opened_at) + timedelta(minutes=1)
    end = min(inc.closed_at + timedelta(minutes=5) if inc.closed_at else newest_end, inc.onset_at + MAX_SPAN)
    with ctx.store.read() as conn:
        frame = repo.stage_frame(conn, inc.onset_at - BASELINE, end, pipeline_ids=[inc.pipeline_id])
        events = repo.events_between(conn, inc.onset_at - timedelta(minutes=5), end, pipeline_id=inc.pipeline_id,
                                     min_level=None)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    catalog = ctx.catalog()
    stage = inc.stage
    component = catalog.component_of(inc.pipeline_id, stage) if stage else None
    onset = pd.Timestamp(inc.onset_at)
    evidence = _metric_evidence(frame, stage.value, onset) if stage else []
    if stage is not Stage.WAREHOUSE:
        evidence += [e for e in _metric_evidence(frame, Stage.WAREHOUSE.value, onset) if e["metric"] == "freshness_s"]
    errors = [e for e in events if e.level == "error" and e.ts >= inc.onset_at]
    by_stage = pd.Series([e.stage.value for e in errors]).value_counts().to_dict() if errors else {}
    logs = list(inc.evidence.get("log_lines") or [])[:8]
    workers = frame[(frame["stage"] == (stage.value if stage else ""))]["workers"].dropna()
    action, act_stage, params = remedy(inc.error_type, stage, float(workers.iloc[-1]) if len(workers) else None)
    book = runbook_for(inc.error_type)
    summary = incident_summary(inc)
    cause = FAULT_LABELS.get(inc.error_type, inc.error_type)
    data = {**summary, "incident_id": inc.id, "component": component, "cause": cause,
            "metrics": evidence[:8], "error_events_by_stage": by_stage, "log_lines": logs,
            "timeline": _timeline(inc, frame, events, pd.Timestamp(newest_end)),
            "worst_freshness_minutes": inc.evidence.get("worst_freshness_minutes"),
            "suggested_fix": {"action": action.value, "pipeline": inc.pipeline_id, "stage": act_stage.value,
                              "params": params, "risk": RULES[action].risk, "incident_id": inc.id,
                              "confidence": round(inc.confidence, 2)},
            "runbook": {"title": book.title, "path": book.path, "fix": book.text} if book else None}
    state = (f"closed at {hhmm(inc.closed_at)}" if inc.closed_at else "still open")
    where = f"{stage.value} ({component})" if stage else "an unknown stage (freshness only)"
    moves = [e for e in evidence if e["change"] is not None and abs(e["change"]) >= 0.25][:3]
    moved = "; ".join(f"{metric_label(e['metric'])} on {e['stage']} {fmt_value(e['metric'], e['before_avg'])} → "
                      f"{fmt_value(e['metric'], e['during_avg'])} on average (peak "
                      f"{fmt_value(e['metric'], e['during_max'])})" for e in moves)
    log = f" First log line: \"{logs[0]['message'][:200]}\"." if logs else ""
    text = (f"Incident #{inc.id} on {inc.pipeline_id} (onset {hhmm(inc.onset_at)} UTC, {state}): root cause "
            f"{where}, {cause} (confidence {inc.confidence:.2f}). "
            f"{sum(by_stage.values())} error events since onset"
            + (f" ({', '.join(f'{k} {v}' for k, v in by_stage.items())})" if by_stage else "") + "."
            + (f" Metrics: {moved}." if moved else "") + log
            + f" Usual fix: {action.value} on {inc.pipeline_id}/{act_stage.value}"
            + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
            + (f" — runbook \"{book.title}\"." if book else "."))
    chart = None
    if moves:
        m = moves[0]
        sub = frame[frame["stage"] == m["stage"]]
        marks = [{"x": iso(inc.onset_at), "label": "onset"}]
        if inc.closed_at:
            marks.append({"x": iso(inc.closed_at), "label": "healthy again"})
        chart = series_chart(sub, m["metric"], title=f"{metric_label(m['metric'])} — {inc.pipeline_id} / "
                             f"{m['stage']} around incident #{inc.id}", y_label=m["metric"], markers=marks)
    return ToolResult(ToolStatus.SUCCESS, text, data, window_text, chart)
