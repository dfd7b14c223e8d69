"""View logic of the Approvals page, kept apart from the page so it can be tested without a running app.

Nothing here changes the store: the page calls the engine's queue and policy services with the signed-in principal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import annotated_types as at
import pandas as pd
import plotly.graph_objects as go

from console import charts
from engine.execution import queue
from engine.execution.params import ALLOWED, ActionParams
from engine.execution.policy import DEFAULT_POLICY, dump
from engine.execution.queue import BulkOutcome
from engine.model import ActionKind
from engine.security.roles import Permission, Principal
from engine.service.reports import AnomalyView

STATUSES = queue.STATUSES
ORIGINS = ("agent", "chat")
RISKS = ("low", "medium", "high")
CHART_METRICS = ("cpu_pct", "latency_s", "throughput_rows_s", "error_count", "cdc_lag_s", "queue_wait_s")
VIEWER_HINT = "Viewers can read the queue; approving, rejecting and editing need the operator role."
ADMIN_HINT = "Only admins change the policy; everyone may read it."


@dataclass(frozen=True, slots=True)
class Selection:
    """The proposals the user had selected when they acted, and how to show that selection in this run's table."""

    ids: list[int]  # what the user saw selected (acted on by bulk buttons), in table order
    rows: list[int]  # their positions in this run's table (those still shown)
    moved: bool  # the table changed under the selection: it must be drawn afresh at `rows`


def carry_selection(shown_before: Sequence[int] | None, rows: Sequence[int], ids: Sequence[int]) -> Selection:
    """Map the table's selected row positions to proposal ids.

    Row positions refer to the table the user saw, i.e. the previous run's; by now proposals may have arrived,
    been decided elsewhere or expired. The ids keep meaning what the user selected; `rows` re-places them.
    """
    before = list(shown_before) if shown_before is not None else list(ids)
    picked = [before[r] for r in rows if 0 <= r < len(before)]
    now = [ids.index(i) for i in picked if i in ids]
    return Selection(picked, now, now != list(rows))


def can_decide(principal: Principal) -> bool:
    return principal.can(Permission.DECIDE)


def can_change_policy(principal: Principal) -> bool:
    return principal.can(Permission.CHANGE_POLICY)


def queue_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The queue as shown: oldest first (they expire first), parameters as compact text."""
    cols = ["id", "created_at", "pipeline_id", "action", "stage", "params", "risk", "confidence", "origin",
            "status", "decided_by", "expires_at", "run_status"]
    out = frame.sort_values("id")[cols].reset_index(drop=True)
    out["params"] = [compact(p) for p in out["params"]]
    return out


def compact(value: Any) -> str:
    """Parameters as `k=v, …` text."""
    if not value:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(dict(value).items()))


@dataclass(frozen=True, slots=True)
class ParamField:
    """One editable parameter of an action, with the bounds the engine enforces."""

    name: str
    kind: type  # int | float | bool
    min_value: float | None  # inclusive
    max_value: float | None
    help: str


def param_fields(action: str) -> list[ParamField]:
    """The parameters `action` takes, as widget specs from `ActionParams` (bounds from its field constraints)."""
    allowed = ALLOWED.get(ActionKind(action), frozenset())
    out = []
    for name, info in ActionParams.model_fields.items():
        if name not in allowed:
            continue
        kind = next(t for t in (bool, int, float) if t in getattr(info.annotation, "__args__", (info.annotation,)))
        lo = hi = None
        bounds = []
        for m in info.metadata:
            if isinstance(m, at.Ge):
                lo = m.ge
                bounds.append(f"≥ {m.ge}")
            elif isinstance(m, at.Gt):
                bounds.append(f"> {m.gt}")
            elif isinstance(m, at.Le):
                hi = m.le
                bounds.append(f"≤ {m.le}")
        described = info.description or name
        out.append(ParamField(name, kind, lo, hi, described + (f" ({', '.join(bounds)})" if bounds else "")))
    return out


def q_values_frame(evidence: dict[str, Any], chosen: str) -> pd.DataFrame:
    """The alternatives the agent weighed: action, Q, whether it is the proposed one; best first."""
    q = evidence.get("q_values") or {}
    frame = pd.DataFrame({"action": list(q), "Q": [float(v) for v in q.values()]}, columns=["action", "Q"])
    frame["proposed"] = frame["action"] == chosen
    return frame.sort_values("Q", ascending=False).reset_index(drop=True)


def q_values_chart(frame: pd.DataFrame) -> go.Figure:
    colours = ["#2563eb" if p else "#94a3b8" for p in frame["proposed"]]
    fig = go.Figure(go.Bar(x=frame["Q"], y=frame["action"], orientation="h", marker_color=colours,
                           text=[f"{q:.2f}" for q in frame["Q"]], textposition="auto"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=60 + 28 * len(frame), margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="Q-value")
    return fig


def evidence_chart(view: AnomalyView, at_time: datetime | None) -> go.Figure:
    """The incident's stage metrics around the proposal, with the simulated minute it was proposed marked."""
    present = [m for m in CHART_METRICS if m in view.series][:3]
    fig = charts.anomaly_chart(view, present)
    if at_time is not None:
        fig.add_vline(x=at_time, line={"color": "#2563eb", "dash": "dot", "width": 1.5})
        fig.add_annotation(x=at_time, y=1, yref="paper", text="proposed", showarrow=False, xanchor="left",
                           font={"color": "#2563eb"})
    return fig


def evidence_facts(proposal: dict[str, Any]) -> dict[str, str]:
    """The headline facts of a proposal's evidence, as label → text."""
    ev = proposal.get("evidence") or {}
    diag = ev.get("diagnosis") or {}
    facts = {"Risk": str(proposal.get("risk", "")), "Confidence": f"{float(proposal.get('confidence') or 0):.2f}",
             "Cost": f"{ev['cost']:g}" if isinstance(ev.get("cost"), int | float) else "n/a"}
    if diag:
        facts["Diagnosis"] = (f"{str(diag.get('error_type', '?')).replace('_', ' ')} at {diag.get('stage') or '?'}"
                              f" ({diag.get('status', '?')}, confidence {float(diag.get('confidence') or 0):.2f})")
    for key, label in (("expected_effect", "Expected effect"), ("reason", "Reason"), ("question", "Question"),
                       ("requested_by", "Requested by"), ("policy", "Chosen by (decision policy)"), ("state", "State"),
                       ("attempts", "Attempts so far"), ("minutes_open", "Incident open (min)"),
                       ("sim_time", "Simulated time")):
        if ev.get(key) not in (None, ""):
            facts[label] = str(ev[key])
    if ev.get("explored"):
        facts["Exploring"] = "yes: the agent tried a non-greedy action (confidence capped)"
    return facts


def outcome_lines(outcomes: Sequence[BulkOutcome]) -> tuple[list[str], list[str]]:
    """Bulk outcomes as (successes, failures) lines naming each proposal."""
    ok = [f"#{o.proposal_id}: {o.message}" for o in outcomes if o.ok]
    bad = [f"#{o.proposal_id}: {o.message}" for o in outcomes if not o.ok]
    return ok, bad


def policy_file_text(path: Path) -> tuple[str, bool]:
    """The policy file's text, or the built-in default's when there is no file; and whether the file exists."""
    if path.exists():
        return path.read_text(encoding="utf-8"), True
    return dump(DEFAULT_POLICY), False


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Action runs as shown in the History section: parameters and results as compact text."""
    out = frame.copy()
    out["params"] = [compact(p) for p in out["params"]]
    out["result"] = [json.dumps(r, sort_keys=True, default=str) if r else "" for r in out["result"]]
    return out


def linked_proposal(value: str | None) -> int | None:
    """The proposal id of a ?proposal=N link; None when absent or not a positive number."""
    try:
        pid = int(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        return None
    return pid if pid > 0 else None


def proposal_labels(table: pd.DataFrame) -> dict[int, str]:
    """Picker labels for the queue's proposals: "#12 remap_schema on orders / transform (pending)"."""
    return {int(r["id"]): f"#{int(r['id'])} {r['action']} on {r['pipeline_id']} / {r['stage']} ({r['status']})"
            for _, r in table.iterrows()}
