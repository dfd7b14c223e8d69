"""Read models for the Agent page: the Q-table, the learning curve, recent transitions, and what the policy
would do now for each open incident (with the Q-values of the alternatives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from engine.decision.policy import Choice
from engine.decision.qlearning import QLearningPolicy
from engine.decision.state import MinuteView, Observation, encode, observe
from engine.execution.catalog import ACTIONS, available
from engine.feedback import memory
from engine.feedback.summaries import WINDOW
from engine.feedback.training import POOR_SCORE
from engine.model import Health, Incident, PipelineHealth, Stage, StageHealth
from engine.store import decision_repo, repo
from engine.store.db import Store


@dataclass(frozen=True, slots=True)
class OpenChoice:
    incident: Incident
    observation: Observation
    state: str
    choice: Choice
    allowed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentView:
    q_table: pd.DataFrame  # states × actions (NaN: never tried)
    visits: pd.DataFrame
    curve: pd.DataFrame  # per window of episodes: reward and MTTR means
    training: dict[str, Any]
    transitions: pd.DataFrame
    transitions_total: int
    choices: list[OpenChoice] = field(default_factory=list)


def q_frames(policy: QLearningPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table as states × actions frames of values and visits (actions in catalog order)."""
    states = sorted(policy.table.values)
    cols = [a.value for a in ACTIONS]
    values = pd.DataFrame(np.nan, index=states, columns=cols)
    visits = pd.DataFrame(0, index=states, columns=cols)
    for s, a, v, n in policy.table.items():
        values.loc[s, a.value] = v
        visits.loc[s, a.value] = n
    return values, visits


def curve_frame(training: dict[str, Any], window: int = WINDOW, horizon: float = 240.0) -> pd.DataFrame:
    rows = training.get("curve") or []
    if not rows:
        return pd.DataFrame(columns=["episode", "reward", "mttr_minutes", "kind"])
    frame = pd.DataFrame(rows)
    frame["mttr"] = frame["mttr_minutes"].fillna(horizon)
    frame["window"] = frame["episode"] // window
    out = frame.groupby("window").agg(episode=("episode", "max"), reward=("reward", "mean"),
                                      mttr_minutes=("mttr", "mean"), episodes=("episode", "count"))
    out = out.reset_index(drop=True)
    return out.round(2)


def learners(training: dict[str, Any]) -> int:
    """How many learners the last training run averaged (1 for a run stored before there could be more)."""
    return 1 + max((a.get("member", 0) for a in training.get("attempts") or []), default=0)


def attempts_note(training: dict[str, Any]) -> str | None:
    """Sentences on the learners a training call averaged and the poor runs it trained again (None: one run)."""
    attempts = training.get("attempts") or []
    several = learners(training)
    notes = []
    if several > 1:
        ensemble, fallback = training.get("ensemble"), training.get("fallback")
        averaged = training.get("averaged") or list(range(several))
        whose = ("their kept tables" if len(averaged) == several else f"the kept tables of the {len(averaged)} "
                 "that scored best, learners " + ", ".join(map(str, averaged)))
        if fallback is None:
            notes.append(f"{several} learners trained side by side on their own scenario streams; the table in use "
                         f"is the mean of {whose}" + (f" (it scores {ensemble['score']:.3f})" if ensemble
                                                      else "") + ".")
        else:
            notes.append(f"{several} learners trained side by side on their own scenario streams; the mean of "
                         f"{whose} scored {ensemble['score']:.3f} (above {POOR_SCORE:g}, poor), so the table in "
                         f"use is learner {fallback}'s.")
    for member in range(several):
        mine = [a for a in attempts if a.get("member", 0) == member]
        if len(mine) < 2:
            continue
        kept = next(a for a in mine if a["kept"])
        poor = ", ".join(f"seed {a['seed']} scored {a['score']:.3f}" for a in mine if not a["kept"])
        notes.append(f"{f'Learner {member} trained' if several > 1 else 'Trained'} {len(mine)} times: {poor} "
                     f"(above {POOR_SCORE:g} × the oracle, a poor run), so training ran again with the next seed; "
                     f"kept seed {kept['seed']} ({kept['score']:.3f}).")
    return " ".join(notes) or None


def checkpoint_frame(training: dict[str, Any]) -> pd.DataFrame:
    """The checkpoints the last training run scored (one row each, per-family MTTR as columns)."""
    rows = training.get("checkpoints") or []
    if not rows:
        return pd.DataFrame(columns=["episodes", "score", "kept"])
    several = learners(training) > 1
    out = [{**({"learner": str(r.get("member", 0))} if several else {}), "episodes": r["episodes"],
            "score": r["score"], "kept": r["chosen"], **{f"{k} MTTR": v for k, v in r["mttr"].items()}}
           for r in rows]
    if several and (ensemble := training.get("ensemble")):
        out.append({"learner": "mean", "episodes": ensemble["episodes"], "score": ensemble["score"],
                    "kept": ensemble["chosen"],
                    **{f"{k} MTTR": v for k, v in ensemble["mttr"].items()}})
    return pd.DataFrame(out)


def _view_of(store: Store, incident: Incident) -> MinuteView | None:
    """The newest analysed minute of the incident's pipeline, rebuilt from the store."""
    with store.read() as conn:
        newest = repo.latest_health_ts(conn)
        if newest is None:
            return None
        frame = repo.stage_frame(conn, newest, newest + timedelta(minutes=1), pipeline_ids=[incident.pipeline_id])
        health = repo.pipeline_health_frame(conn, newest, newest + timedelta(minutes=1))
        targets = {p.id: p.freshness_target_minutes for p in repo.list_pipelines(conn)}
    health = health[health["pipeline_id"] == incident.pipeline_id]
    if frame.empty or health.empty:
        return None
    stages = tuple(StageHealth(r.pipeline_id, Stage(r.stage), r.ts, Health(r.status), r.reason or "")
                   for r in frame.itertuples(index=False))
    metrics = {Stage(r.stage): {m: float(getattr(r, m)) for m in ("cpu_pct", "memory_pct", "queue_wait_s")
                                if pd.notna(getattr(r, m))} for r in frame.itertuples(index=False)}
    h = health.iloc[-1]
    ph = PipelineHealth(incident.pipeline_id, h.ts, Health(h.status), float(h.freshness_minutes),
                        {s.stage: s.status for s in stages}, bool(h.slo_healthy))
    return MinuteView(incident.pipeline_id, newest, ph, stages, metrics, targets.get(incident.pipeline_id, 15.0))


def current_choices(store: Store, policy: QLearningPolicy) -> list[OpenChoice]:
    """What the (greedy) policy would choose now for every open incident, and the Q-value of each option."""
    with store.read() as conn:
        incidents = repo.open_incidents(conn)
    greedy = QLearningPolicy(policy.table, policy.params, explore=False, learning=False)
    out = []
    for k, inc in enumerate(incidents):
        view = _view_of(store, inc)
        if view is None:
            continue
        obs = observe(view, inc)
        allowed = available(obs.stage, [], 0, failing=obs.stage_status is Health.FAILED, troubled=obs.troubled)
        choice = greedy.choose(obs, allowed, np.random.default_rng(k))
        out.append(OpenChoice(inc, obs, encode(obs), choice, tuple(a.value for a in allowed)))
    return out


def agent_view(store: Store, *, transitions: int = 50) -> AgentView:
    policy = memory.load_policy(store, learning=False)
    values, visits = q_frames(policy)
    with store.read() as conn:
        training = decision_repo.load_training(conn, memory.POLICY) or {}
        recent = decision_repo.recent_transitions(conn, memory.POLICY, limit=transitions)
        total = decision_repo.count_transitions(conn, memory.POLICY)
    return AgentView(values, visits, curve_frame(training), training, recent, total,
                     current_choices(store, policy) if len(policy.table) else [])
