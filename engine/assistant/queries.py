"""Read-only tools over telemetry: a metric over a window, error counts, anomalies and incidents, status now."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from engine.assistant.args import AnomalyArgs, ErrorArgs, MetricArgs, StatusArgs
from engine.assistant.context import ToolContext, ToolFailure
from engine.assistant.entities import FAULT_LABELS, metric_stages
from engine.assistant.format import AGG_LABELS, fmt_value, hhmm, iso, metric_label, series_chart
from engine.assistant.results import ChartSpec, ToolResult, ToolStatus, no_data
from engine.model import STAGES, Incident, Stage
from engine.store import assistant_repo, repo

EPISODE_GAP = timedelta(minutes=5)


def aggregate(values: pd.Series, ts: pd.Series, how: str) -> tuple[float, Any]:
    """(value, timestamp or None) of per-minute `values` aggregated `how`; percentiles interpolate linearly."""
    if how == "avg":
        return float(values.mean()), None
    if how == "sum":
        return float(values.sum()), None
    if how in ("max", "min"):
        i = values.idxmax() if how == "max" else values.idxmin()
        return float(values[i]), ts[i]
    if how == "last":
        i = ts.idxmax()
        return float(values[i]), ts[i]
    return float(values.quantile(int(how[1:]) / 100)), None


def get_metric(ctx: ToolContext, args: MetricArgs) -> ToolResult:
    if args.pipeline is None:
        return rank_metric(ctx, args)
    target = ctx.target(args.pipeline)
    stage = args.stage or target.stage
    stages = list(metric_stages(args.metric, stage))
    window = ctx.window(args.window)
    with ctx.store.read() as conn:
        frame = repo.stage_frame(conn, window.start, window.end, pipeline_ids=[target.pipeline], stages=stages,
                                 metrics=(args.metric,))
    frame = frame.dropna(subset=[args.metric]).reset_index(drop=True)
    catalog = ctx.catalog()
    label, agg = metric_label(args.metric), args.aggregation
    if frame.empty:
        where = catalog.component_of(target.pipeline, stage) if stage else target.pipeline
        hint = ""
        if stage is not None and stage not in metric_stages(args.metric, None):
            hint = f" That stage does not report {args.metric}; it comes from the " \
                   f"{'/'.join(s.value for s in metric_stages(args.metric, None))} stage."
        return no_data(f"No {label} samples for {where} in {window.describe()}.{hint}", window.describe(),
                       pipeline=target.pipeline, metric=args.metric)
    results = []
    for st in stages:
        g = frame[frame["stage"] == st.value]
        if g.empty:
            continue
        value, at = aggregate(g[args.metric], g["ts"], agg)
        results.append({"pipeline": target.pipeline, "stage": st.value,
                        "component": catalog.component_of(target.pipeline, st), "value": round(value, 4),
                        "at": iso(at), "samples": len(g)})
    head = results[0]
    if len(results) == 1:
        when = f" at {hhmm(head['at'])} UTC" if head["at"] and agg != "last" else ""
        text = (f"{AGG_LABELS[agg].capitalize()} {label} of {head['component']} ({target.pipeline} / "
                f"{head['stage']}) over {window.describe()}: {fmt_value(args.metric, head['value'], None, agg)}"
                f"{when} ({head['samples']} minutes of data).")
    else:
        parts = "; ".join(f"{r['stage']} ({r['component']}) {fmt_value(args.metric, r['value'], None, agg)}"
                          for r in results)
        text = f"{AGG_LABELS[agg].capitalize()} {label} of {target.pipeline} per stage over {window.describe()}: " \
               f"{parts}."
    frame["series"] = frame["stage"].map(lambda s: catalog.component_of(target.pipeline, Stage(s)))
    chart = series_chart(frame, args.metric, series="series", title=f"{label} — {target.pipeline}",
                         y_label=args.metric)
    data = {"pipeline": target.pipeline, "metric": args.metric, "aggregation": agg, "window_start": iso(window.start),
            "window_end": iso(window.end), "results": results, "stage": head["stage"],
            "component": head["component"], "value": head["value"]}
    return ToolResult(ToolStatus.SUCCESS, text, data, window.describe(), chart)


def rank_metric(ctx: ToolContext, args: MetricArgs) -> ToolResult:
    """Every pipeline's aggregated metric on the given stage (or the stages that emit it), highest first.

    Averages, extremes and sums are computed in the database (cheap on a large fleet); percentiles and latest
    values need the per-minute rows.
    """
    stages = list(metric_stages(args.metric, args.stage))
    window = ctx.window(args.window)
    label, agg = metric_label(args.metric), args.aggregation
    catalog = ctx.catalog()
    results = []
    with ctx.store.read() as conn:
        if agg in ("avg", "max", "min", "sum"):
            table = assistant_repo.metric_by_component(conn, window.start, window.end, args.metric, agg,
                                                       stages=stages)
            results = [{"pipeline": r.pipeline_id, "stage": r.stage, "value": round(float(r.value), 4), "at": None,
                        "samples": int(r.samples)} for r in table.itertuples(index=False) if r.samples]
        else:
            frame = repo.stage_frame(conn, window.start, window.end, stages=stages, metrics=(args.metric,))
            frame = frame.dropna(subset=[args.metric]).reset_index(drop=True)
            for (pid, st), g in frame.groupby(["pipeline_id", "stage"], sort=True):
                value, at = aggregate(g[args.metric], g["ts"], agg)
                results.append({"pipeline": pid, "stage": st, "value": round(value, 4), "at": iso(at),
                                "samples": len(g)})
    if not results:
        return no_data(f"No {label} samples in {window.describe()}.", window.describe(), metric=args.metric)
    for r in results:
        r["component"] = catalog.component_of(r["pipeline"], Stage(r["stage"]))
    results.sort(key=lambda r: (-r["value"], r["pipeline"]))
    top = "; ".join(f"{r['component']} {fmt_value(args.metric, r['value'], None, agg)}" for r in results[:10])
    text = (f"{AGG_LABELS[agg].capitalize()} {label} per component over {window.describe()}, highest first: "
            f"{top}.")
    chart = ChartSpec("bar", f"{AGG_LABELS[agg]} {label} by component — {window.label}", "component", "value",
                      [{"component": r["component"], "value": r["value"]} for r in results[:20]], y_label=args.metric)
    data = {"pipeline": None, "metric": args.metric, "aggregation": agg, "ranking": True, "results": results[:100],
            "pipeline_top": results[0]["pipeline"], "stage": results[0]["stage"], "value": results[0]["value"],
            "window_start": iso(window.start), "window_end": iso(window.end)}
    return ToolResult(ToolStatus.SUCCESS, text, data, window.describe(), chart)


def count_errors(ctx: ToolContext, args: ErrorArgs) -> ToolResult:
    target = ctx.target(args.pipeline) if args.pipeline else None
    stage = args.stage or (target.stage if target else None)
    window = ctx.window(args.window)
    pids = [target.pipeline] if target else None
    stages = [stage] if stage else None
    with ctx.store.read() as conn:
        totals = assistant_repo.error_totals(conn, window.start, window.end, pipeline_ids=pids, stages=stages)
        events = assistant_repo.event_counts(conn, window.start, window.end, pipeline_ids=pids, stages=stages)
    if totals.empty or int(totals["minutes"].sum()) == 0:
        return no_data(f"No telemetry for {target.pipeline if target else 'the fleet'} in {window.describe()}.",
                       window.describe())
    rows = _error_rows(ctx, totals, events)
    if target is None:
        rows = [r for r in rows if r["error_events"] or r["error_metric_total"] or r["warnings"]]
    rows.sort(key=lambda r: (-r["error_events"], -r["error_metric_total"], r["pipeline"], STAGES.index(
        Stage(r["stage"]))))
    total_events = sum(r["error_events"] for r in rows)
    total_metric = sum(r["error_metric_total"] for r in rows)
    scope = (ctx.catalog().component_of(target.pipeline, stage) + f" ({target.pipeline} / {stage.value})"
             if target and stage else target.pipeline if target else "the fleet")
    if not rows or (total_events == 0 and total_metric == 0):
        text = f"No errors for {scope} in {window.describe()}: 0 error events, error_count total 0."
    else:
        parts = "; ".join(f"{r['component']} {r['error_events']} error events ({r['failed_runs']} failed runs), "
                          f"error_count total {r['error_metric_total']:,.0f}" for r in rows[:8])
        text = (f"Errors for {scope} in {window.describe()}: {total_events} error events, error_count total "
                f"{total_metric:,.0f}. By component: {parts}.")
    chart = ChartSpec("bar", f"Error events by component — {window.label}", "component", "error_events",
                      [{"component": r["component"], "error_events": r["error_events"]} for r in rows[:15]],
                      y_label="error events") if total_events else None
    data = {"scope": scope, "pipeline": target.pipeline if target else None, "stage": stage.value if stage else None,
            "error_events": total_events, "error_metric_total": round(total_metric, 4), "components": rows[:50],
            "window_start": iso(window.start), "window_end": iso(window.end)}
    return ToolResult(ToolStatus.SUCCESS, text, data, window.describe(), chart)


def _error_rows(ctx: ToolContext, totals: pd.DataFrame, events: pd.DataFrame) -> list[dict[str, Any]]:
    catalog = ctx.catalog()
    rows = []
    for t in totals.itertuples(index=False):
        ev = events[(events["pipeline_id"] == t.pipeline_id) & (events["stage"] == t.stage)]
        err = ev[ev["level"] == "error"]
        rows.append({"pipeline": t.pipeline_id, "stage": t.stage,
                     "component": catalog.component_of(t.pipeline_id, Stage(t.stage)),
                     "error_events": int(err["count"].sum()),
                     "failed_runs": int(err[err["kind"] == "run_failed"]["count"].sum()),
                     "task_stopped": int(err[err["kind"] == "task_stopped"]["count"].sum()),
                     "warnings": int(ev[ev["level"] == "warning"]["count"].sum()),
                     "error_metric_total": round(float(t.error_metric_total), 4)})
    return rows


def incident_summary(i: Incident) -> dict[str, Any]:
    return {"id": i.id, "pipeline": i.pipeline_id, "stage": i.stage.value if i.stage else None,
            "error_type": i.error_type, "cause": FAULT_LABELS.get(i.error_type, i.error_type),
            "confidence": round(i.confidence, 2), "status": i.status.value, "onset_at": iso(i.onset_at),
            "opened_at": iso(i.opened_at), "closed_at": iso(i.closed_at)}


def _episodes(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Runs of anomalous minutes per (pipeline, stage), split where the gap exceeds EPISODE_GAP."""
    out = []
    for (pid, stage), g in scores.groupby(["pipeline_id", "stage"], sort=True):
        ts = pd.to_datetime(g["ts"], utc=True).reset_index(drop=True)
        vals = g["anomaly_score"].reset_index(drop=True)
        start = 0
        for k in range(1, len(ts) + 1):
            if k == len(ts) or ts[k] - ts[k - 1] > EPISODE_GAP:
                out.append({"pipeline": pid, "stage": stage, "start": iso(ts[start]), "end": iso(ts[k - 1]),
                            "minutes": k - start, "max_score": round(float(vals[start:k].max()), 3)})
                start = k
    return sorted(out, key=lambda e: -e["max_score"])


def _unhealthy(health: pd.DataFrame, pid: str | None) -> list[dict[str, Any]]:
    """Per pipeline: minutes in the window and how many missed the SLO (stale or a failed stage)."""
    out = [{"pipeline": r.pipeline_id, "minutes": int(r.minutes), "unhealthy_minutes": int(r.unhealthy_minutes or 0),
            "failed_minutes": int(r.failed_minutes or 0)} for r in health.itertuples(index=False)]
    out = [r for r in out if r["unhealthy_minutes"] or pid is not None]
    return sorted(out, key=lambda r: -r["unhealthy_minutes"])


def list_anomalies(ctx: ToolContext, args: AnomalyArgs) -> ToolResult:
    target = ctx.target(args.pipeline) if args.pipeline else None
    window = ctx.window(args.window)
    pid = target.pipeline if target else None
    with ctx.store.read() as conn:
        if args.only_open:
            incidents = [i for i in repo.open_incidents(conn) if pid is None or i.pipeline_id == pid]
        else:
            incidents = repo.incidents_between(conn, window.start, window.end, pipeline_id=pid)
        scores, scored = assistant_repo.anomaly_scores(conn, window.start, window.end,
                                                       pipeline_ids=[pid] if pid else None, min_score=args.min_score)
        health = assistant_repo.health_summary(conn, window.start, window.end, pipeline_id=pid)
    episodes = _episodes(scores) if not scores.empty else []
    summaries = [incident_summary(i) for i in incidents]
    scope = ("open incidents" if args.only_open else "") + (f" of {pid}" if pid and args.only_open else "") \
        if args.only_open else (pid or "the fleet")
    unhealthy = _unhealthy(health, pid)
    if scored == 0:
        score_note = "Anomaly scores: none computed for this window yet (the analysis layer has not scored it)."
    elif episodes:
        top = "; ".join(f"{e['pipeline']}/{e['stage']} {hhmm(e['start'])}–{hhmm(e['end'])[-5:]} "
                        f"(max {e['max_score']:.2f}, {e['minutes']} min)" for e in episodes[:6])
        score_note = f"Anomalous periods (score ≥ {args.min_score:g}): {top}."
    else:
        score_note = f"Anomaly scores: no minute at or above {args.min_score:g} ({scored} scored minutes)."
    data = {"scope": scope, "incidents": summaries, "anomalies": episodes[:200], "scored_minutes": scored,
            "min_score": args.min_score, "only_open": args.only_open, "health": unhealthy,
            "window_start": iso(window.start), "window_end": iso(window.end)}
    if not summaries and not episodes:
        return ToolResult(ToolStatus.NO_DATA, f"No incidents for {scope} in {window.describe()}. {score_note}", data,
                          window.describe())
    listed = "; ".join(f"#{s['id']} {s['pipeline']} / {s['stage'] or '?'}: {s['cause']} (confidence "
                       f"{s['confidence']:.2f}), onset {hhmm(s['onset_at'])}, {s['status']}" for s in summaries[:10])
    text = (f"{len(summaries)} incident(s) for {scope} in {window.describe()}" + (f": {listed}." if listed else ".")
            + f" {score_note}")
    chart = None
    if episodes:
        top = episodes[0]
        sub = scores[(scores["pipeline_id"] == top["pipeline"]) & (scores["stage"] == top["stage"])]
        chart = series_chart(sub, "anomaly_score", title=f"Anomaly score — {top['pipeline']} / {top['stage']}",
                             y_label="anomaly score")
    return ToolResult(ToolStatus.SUCCESS, text, data, window.describe(), chart)


def fleet_status(ctx: ToolContext, args: StatusArgs) -> ToolResult:
    target = ctx.target(args.pipeline) if args.pipeline else None
    span = ctx.span()
    if span is None:
        raise ToolFailure("The store holds no telemetry yet.", no_data=True)
    newest = span[1]
    end = newest + timedelta(minutes=1)
    pids = [target.pipeline] if target else None
    with ctx.store.read() as conn:
        health = repo.pipeline_health_frame(conn, newest, end)
        stages = repo.stage_frame(conn, newest, end, pipeline_ids=pids, metrics=())
        open_inc = {i.pipeline_id: i for i in repo.open_incidents(conn)}
        specs = {p.id: p for p in repo.list_pipelines(conn)}
    if target:
        health = health[health["pipeline_id"] == target.pipeline]
    as_of = f"as of {hhmm(newest)} UTC (newest telemetry)"
    pipelines = []
    for h in health.itertuples(index=False):
        st = stages[stages["pipeline_id"] == h.pipeline_id]
        inc = open_inc.get(h.pipeline_id)
        pipelines.append({
            "pipeline": h.pipeline_id, "status": h.status, "slo_healthy": bool(h.slo_healthy),
            "freshness_minutes": round(float(h.freshness_minutes), 2) if pd.notna(h.freshness_minutes) else None,
            "freshness_target_minutes": specs[h.pipeline_id].freshness_target_minutes
            if h.pipeline_id in specs else None,
            "stages": {r.stage: {"status": r.status, "reason": r.reason} for r in st.itertuples(index=False)},
            "open_incident": incident_summary(inc) if inc else None})
    if not pipelines:
        return no_data(f"No health for {target.pipeline if target else 'the fleet'} {as_of}.", as_of)
    if target:
        p = pipelines[0]
        bad = [f"{s} {v['status']} ({v['reason'][:120]})" for s, v in p["stages"].items() if v["status"] != "healthy"]
        inc = p["open_incident"]
        fresh = "unknown" if p["freshness_minutes"] is None else f"{p['freshness_minutes']:.1f} min"
        text = (f"{p['pipeline']} is {p['status']} {as_of}: freshness {fresh} against a "
                f"{p['freshness_target_minutes']:g} min target"
                + (f"; {'; '.join(bad)}" if bad else "; all stages healthy")
                + (f". Open incident #{inc['id']}: {inc['cause']} on {inc['stage']}." if inc else "."))
    else:
        counts = pd.Series([p["status"] for p in pipelines]).value_counts().to_dict()
        worst = [p for p in pipelines if p["status"] != "healthy"]
        listed = "; ".join(f"{p['pipeline']} {p['status']}" + (f" (#{p['open_incident']['id']} "
                           f"{p['open_incident']['cause']})" if p["open_incident"] else "") for p in worst[:10])
        text = (f"{len(pipelines)} pipelines {as_of}: {counts.get('healthy', 0)} healthy, {counts.get('degraded', 0)} "
                f"degraded, {counts.get('failed', 0)} failed; {len(open_inc)} open incident(s)"
                + (f". Not healthy: {listed}." if listed else "."))
    return ToolResult(ToolStatus.SUCCESS, text, {"as_of": iso(newest), "pipelines": pipelines}, as_of)
