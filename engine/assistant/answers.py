"""The offline analyst's read-only answers: metrics, error counts, anomalies and incidents, status, log and
runbook search, help. Each handler calls tools through the session and writes the reply in plain words with
the numbers and the window it used.
"""

from __future__ import annotations

import re
from typing import Any

from engine.assistant.entities import Catalog, Mentions
from engine.assistant.format import AGG_LABELS, fmt_value, hhmm, metric_label
from engine.assistant.intent import Parsed
from engine.assistant.results import ToolCall, ToolStatus
from engine.assistant.safety import quote_log
from engine.assistant.search import runbooks
from engine.assistant.session import DEFAULT_EVENT_WINDOW, DEFAULT_METRIC_WINDOW, Reply, Session, Steps, window_note
from engine.model import Stage


def _phrase(p: Parsed, default: str) -> str:
    return p.window.phrase if p.window is not None else default


def _window_words(p: Parsed, default: str, prep: str = "in") -> str:
    """The window as the end of a question: "in the last 24 hours", "over the same window", "today"."""
    words = _phrase(p, default) if p.window is None or p.window.phrase[:1].isalpha() else "same window"
    return f"{prep} the {words}" if re.match(r"(?:last|past|previous|same|first|next)\b", words) else words


def _describe_metric(call: ToolCall, unit: str | None) -> str:
    r = call.result
    if r.status is not ToolStatus.SUCCESS:
        return r.text
    d = r.data
    agg, metric = d["aggregation"], d["metric"]
    head = f"{AGG_LABELS[agg].capitalize()} {metric_label(metric)}"
    if d.get("ranking"):
        top = "\n".join(f"{i}. `{x['component']}` ({x['pipeline']} / {x['stage']}): "
                        f"**{fmt_value(metric, x['value'], unit, agg)}**" for i, x in enumerate(d["results"][:5], 1))
        return f"{head} across the fleet, highest first:\n\n{top}"

    def when(x: dict[str, Any]) -> str:
        if not x["at"]:
            return ""
        return f" (newest minute, {hhmm(x['at'])[-5:]} UTC)" if agg == "last" else f" at {hhmm(x['at'])} UTC"

    results = d["results"]
    if len(results) == 1:
        x = results[0]
        return (f"{head} of `{x['component']}` ({x['pipeline']} / {x['stage']}): "
                f"**{fmt_value(metric, x['value'], unit, agg)}**{when(x)}, from {x['samples']} minutes of data.")
    rows = "\n".join(f"- {x['stage']} (`{x['component']}`): **{fmt_value(metric, x['value'], unit, agg)}**{when(x)}"
                     for x in results)
    return f"{head} of **{d['pipeline']}** by stage:\n\n{rows}"


def metric(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    chosen = m.aggregation if m.pipelines else m.ranking_aggregation
    agg = chosen or ("last" if p.window is None else "avg")
    window = _phrase(p, DEFAULT_METRIC_WINDOW)
    parts, last = [], None
    targets: list[str | None] = list(m.pipelines[:5]) or [None]
    for name in m.metrics[:3]:
        for pid in targets:
            last = yield from s.call("get_metric", pipeline=pid, stage=m.stage.value if m.stage else None,
                                     metric=name, aggregation=agg, window=window)
            parts.append(_describe_metric(last, m.unit))
    pid = m.pipeline or (last.result.data.get("pipeline_top") if last else None)
    where = m.component or pid or "the fleet"
    label = metric_label(m.metrics[0])
    over, during = _window_words(p, DEFAULT_METRIC_WINDOW, "over"), _window_words(p, DEFAULT_METRIC_WINDOW)
    follow = [f"What was the peak {label} of {where} {over}?" if agg != "max"
              else f"What was the average {label} of {where} {over}?",
              f"How many errors did {where} have {during}?",
              f"Any anomalies on {pid or 'the fleet'} {during}?"]
    return Reply("\n\n".join(parts) + window_note(last), follow_ups=follow)


def _component_line(c: dict[str, Any]) -> str:
    extra = f", {c['task_stopped']} task-stopped" if c["task_stopped"] else ""
    return (f"`{c['component']}` ({c['pipeline']} / {c['stage']}): **{c['error_events']} error events** "
            f"({c['failed_runs']} failed runs{extra}), {c['warnings']} warnings, error_count total "
            f"**{c['error_metric_total']:,.0f}**")


def errors(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    window = _phrase(p, DEFAULT_EVENT_WINDOW)
    parts, last = [], None
    for pid in list(m.pipelines[:5]) or [None]:
        last = yield from s.call("count_errors", pipeline=pid, stage=m.stage.value if m.stage else None,
                                 window=window)
        r = last.result
        if r.status is not ToolStatus.SUCCESS:
            parts.append(r.text)
            continue
        d, comps = r.data, r.data["components"]
        if d["stage"] and comps:
            parts.append(_component_line(comps[0]) + ".")
        elif d["pipeline"]:
            rows = "\n".join(f"- {_component_line(c)}" for c in comps)
            parts.append(f"**{d['pipeline']}** had **{d['error_events']} error events** in all (error_count total "
                         f"**{d['error_metric_total']:,.0f}**):\n\n{rows}")
        elif comps:
            rows = "\n".join(f"- {_component_line(c)}" for c in comps[:8])
            parts.append(f"Across the fleet: **{d['error_events']} error events** (error_count total "
                         f"**{d['error_metric_total']:,.0f}**). Components with errors, most first:\n\n{rows}")
        else:
            parts.append("No errors anywhere in the fleet: 0 error events.")
    top = (last.result.data.get("components") or [{}])[0] if last and last.result.ok else {}
    who = m.component or m.pipeline or top.get("pipeline") or "the fleet"
    words = _window_words(p, DEFAULT_EVENT_WINDOW, "over")
    follow = [f"Why did {m.pipeline or top.get('pipeline', 'it')} fail?",
              f"Search the logs of {m.pipeline or top.get('pipeline', 'the fleet')} for errors",
              f"What was the average latency of {who} {words}?"]
    return Reply("\n\n".join(parts) + window_note(last), follow_ups=follow)


_THRESHOLD = re.compile(r"(?:above|over|greater than|more than|higher than|>=?|at least|exceeding|exceeds|past|"
                        r"beyond|of)\s*(0?\.\d+|1(?:\.0+)?)\b")


def _components(episodes: list[dict[str, Any]]) -> list[str]:
    """Anomalous periods grouped per component, strongest first."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in episodes:
        by.setdefault((e["pipeline"], e["stage"]), []).append(e)
    rows = sorted(by.items(), key=lambda kv: -max(e["max_score"] for e in kv[1]))
    lines = [f"- {pid} / {stage}: {len(eps)} period(s), {sum(e['minutes'] for e in eps)} min in all, max score "
             f"{max(e['max_score'] for e in eps):.2f} (from {hhmm(min(e['start'] for e in eps))[-5:]} to "
             f"{hhmm(max(e['end'] for e in eps))[-5:]} UTC)" for (pid, stage), eps in rows[:25]]
    if len(rows) > 25:
        lines.append(f"- … and {len(rows) - 25} more component(s)")
    return lines


def anomalies(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    threshold = _THRESHOLD.search(s.ctx.question.lower())
    call = yield from s.call("list_anomalies", pipeline=m.pipeline, window=_phrase(p, DEFAULT_EVENT_WINDOW),
                             min_score=float(threshold[1]) if threshold else None, only_open=p.only_open or None)
    r = call.result
    if r.status is ToolStatus.ERROR or "incidents" not in r.data:
        return Reply(r.text + window_note(call))
    d = r.data
    scope = m.pipeline or "the fleet"
    lines = []
    for i in d["incidents"]:
        state = "still open" if i["status"] == "open" else f"closed {hhmm(i['closed_at'])[-5:]}"
        lines.append(f"- #{i['id']} **{i['pipeline']}** / {i['stage'] or 'unknown stage'}: {i['cause']} "
                     f"(confidence {i['confidence']:.2f}), onset {hhmm(i['onset_at'])} UTC, {state}")
    kind = "open incident(s)" if d["only_open"] else "incident(s)"
    text = (f"**{len(d['incidents'])} {kind}** for {scope}:\n\n" + "\n".join(lines)) if lines \
        else f"No {'open ' if d['only_open'] else ''}incidents for {scope}."
    if d["health"]:
        rows = [f"{h['pipeline']} missed its SLO in {h['unhealthy_minutes']} of {h['minutes']} minutes"
                + (f" ({h['failed_minutes']} with a failed stage)" if h["failed_minutes"] else "")
                for h in d["health"][:8]]
        text += "\n\nHealth over the window: " + "; ".join(rows) + "."
    if d["anomalies"]:
        text += f"\n\nAnomalous components (score ≥ {d['min_score']:g}):\n\n" + "\n".join(_components(d["anomalies"]))
    elif d["scored_minutes"] == 0:
        text += "\n\nNo anomaly scores for this window yet: the analysis layer has not scored these minutes."
    else:
        text += f"\n\nNo minute scored at or above {d['min_score']:g} ({d['scored_minutes']:,} scored minutes)."
    first = d["incidents"][-1]["pipeline"] if d["incidents"] else (m.pipeline or "the fleet")
    follow = [f"Why did {first} fail?", f"How many errors did {first} have "
              f"{_window_words(p, DEFAULT_EVENT_WINDOW)}?", "How is the fleet doing right now?"]
    return Reply(text + window_note(call), follow_ups=follow)


def status(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    call = yield from s.call("fleet_status", pipeline=m.pipeline)
    r = call.result
    if r.status is not ToolStatus.SUCCESS:
        return Reply(r.text)
    pipes = r.data["pipelines"]
    if m.pipeline:
        x = pipes[0]
        bad = "\n".join(f"- {st} is {v['status']}: {quote_log(v['reason'], 160)}"
                        for st, v in x["stages"].items() if v["status"] != "healthy")
        inc = x["open_incident"]
        text = (f"**{x['pipeline']}** is **{x['status']}** at the newest minute ({hhmm(r.data['as_of'])} UTC): "
                f"freshness {_minutes_or_unknown(x['freshness_minutes'])} against a {x['freshness_target_minutes']:g} "
                "min target."
                + (f"\n\n{bad}" if bad else " All four stages are healthy.")
                + (f"\n\nOpen incident #{inc['id']}: {inc['cause']} on {inc['stage']}." if inc else ""))
        follow = [f"Why is {x['pipeline']} failing?" if inc else f"What was the average latency of "
                  f"{x['pipeline']} over the last hour?", f"How many errors did {x['pipeline']} have today?"]
    else:
        counts = {k: sum(1 for x in pipes if x["status"] == k) for k in ("healthy", "degraded", "failed")}
        bad = "\n".join(f"- **{x['pipeline']}** {x['status']}" + (
            f" (incident #{x['open_incident']['id']}: {x['open_incident']['cause']})" if x["open_incident"] else "")
            for x in pipes if x["status"] != "healthy")
        text = (f"{len(pipes)} pipelines at the newest minute ({hhmm(r.data['as_of'])} UTC): **{counts['healthy']} "
                f"healthy**, {counts['degraded']} degraded, {counts['failed']} failed." + (f"\n\n{bad}" if bad else ""))
        follow = ["Which incidents were there in the last 24 hours?", "How many errors across the fleet today?"]
    return Reply(text + f"\n\n_Window: {r.window}._", follow_ups=follow)


def search(s: Session, p: Parsed) -> Steps:
    m = p.mentions
    call = yield from s.call("search_knowledge", query=(p.query or "")[:300] or "error", source=p.search_source,
                             pipeline=m.pipeline if p.search_source != "runbooks" else None,
                             window=_phrase(p, DEFAULT_EVENT_WINDOW))
    r = call.result
    if r.status is not ToolStatus.SUCCESS:
        return Reply(r.text + window_note(call))
    rows = []
    hits = r.data["hits"]
    books = [h for h in hits if h["source"] == "runbook"]
    if books and p.search_source == "runbooks":
        # "How do I handle X?": the best runbook's Fix section answers it; other sections follow.
        fix = next((sec for sec in runbooks() if sec.title == books[0]["title"] and sec.section == "Fix"), None)
        if fix is not None:
            rows.append(f"- Runbook *{fix.title}* › Fix: {fix.text}")
            hits = [h for h in hits if not (h["source"] == "runbook" and h["title"] == fix.title
                                            and h["section"] == "Fix")][:3]
    for h in hits:
        if h["source"] == "runbook":
            rows.append(f"- Runbook *{h['title']}* › {h['section']}: {h['text'][:260]}")
        else:
            rows.append(f"- `{h['component']}` ×{h['count']}, last {hhmm(h['last_seen'])} UTC: "
                        f"{quote_log(h['message'])}")
    text = f"{len(rows)} match(es) for “{r.data['query']}”:\n\n" + "\n".join(rows)
    follow = ["Which incidents were there in the last 24 hours?"]
    if any(h["source"] == "log" for h in r.data["hits"]):
        follow.insert(0, f"Why did {next(h['pipeline'] for h in r.data['hits'] if h['source'] == 'log')} fail?")
    return Reply(text + window_note(call), follow_ups=follow)


def secrets(s: Session, p: Parsed) -> Steps:
    yield from ()
    return Reply("I can't share API keys, passwords, tokens or other configuration, and none of my tools can read "
                 "them. I answer questions about the pipelines' telemetry, incidents, logs and runbooks, and I can "
                 "queue a fix for an operator to approve.",
                 follow_ups=["How is the fleet doing right now?", "Which incidents were there today?"])


_THANKS = re.compile(r"^\s*(?:thanks|thank you|thx|cheers|great|perfect|nice|cool|ok thanks)\b", re.I)


def _minutes_or_unknown(value: float | None) -> str:
    return "unknown (no reading)" if value is None else f"{value:.1f} min"


def unknown_name_reply(catalog: Catalog, name: str) -> Reply:
    """A question about a pipeline or component the fleet does not have: say so, never answer for the fleet."""
    known = ", ".join(f"`{p}`" for p in catalog.pipelines[:12]) or "none yet"
    more = f" and {len(catalog.pipelines) - 12} more" if len(catalog.pipelines) > 12 else ""
    first = catalog.pipelines[0] if catalog.pipelines else "orders"
    return Reply(f"I don't know a pipeline or component named `{name}`, so I have not answered for anything else. "
                 f"Pipelines in the store: {known}{more}. Components are named per stage, e.g. "
                 f"`{catalog.component_of(first, Stage.TRANSFORM)}`.",
                 follow_ups=[f"How is {first} doing?", "How is the fleet doing right now?"])


def help_reply(catalog: Catalog, mentions: Mentions, question: str = "") -> Reply:
    if _THANKS.search(question):
        return Reply("Glad to help. Ask about any pipeline's metrics, errors or incidents whenever you need.",
                     follow_ups=["How is the fleet doing right now?"])
    pid = catalog.pipelines[0] if catalog.pipelines else "orders"
    comp = catalog.component_of(pid, Stage.TRANSFORM)
    text = ("I answer from the pipelines' telemetry in the store and can queue fixes for approval (never run "
            "them). Try:\n\n"
            f"- *What was the average CPU of the {pid} Glue job over the last 24 h?*\n"
            f"- *How many errors has `{comp}` thrown in the last 2 hours?*\n"
            "- *Any anomalies or incidents yesterday?*\n"
            f"- *Why is {pid} failing?* (root cause, evidence, usual fix)\n"
            "- *Search the logs for OutOfMemory* or *how do I handle schema drift?*\n"
            f"- *Scale the {pid} Glue job to 16 workers* (queues a proposal for an operator)")
    return Reply(text, follow_ups=["How is the fleet doing right now?", "Which incidents were there today?"])
