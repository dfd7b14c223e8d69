"""`selfheal bench rl`: train Q-learning on generated scenarios, then run every policy on held-out files.

The agent trains only on what `curriculum` generates from `seed` (never the files it is scored on); then each
policy (`qlearning` greedy and frozen, `rules`, `manual`, `oracle`, and `none` for reference) runs every
scenario file in the directory through the same in-memory loop, and the per-policy figures are aggregated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.decision.baselines import ManualPolicy, OraclePolicy, RulesPolicy
from engine.decision.policy import Policy
from engine.decision.qlearning import QLearningPolicy, QParams
from engine.errors import SelfhealError
from engine.execution.catalog import CATALOG
from engine.feedback.arena import Arena
from engine.feedback.curriculum import load_dir
from engine.feedback.evaluate import arena_report
from engine.feedback.training import (
    DEFAULT_MEMBERS,
    DEFAULT_RESTARTS,
    TrainingRun,
    default_averaged,
    default_checkpoints,
    train,
)
from engine.sim.scenario import Scenario
from engine.sim.twin import Twin

POLICIES = ("qlearning", "rules", "manual", "oracle", "none")
COOLDOWNS = {kind: spec.cooldown_minutes for kind, spec in CATALOG.items()}  # what the oracle waits out per fix


def make_policy(name: str, arena: Callable[[], Any], trained: QLearningPolicy | None) -> Policy | None:
    """The named policy; `arena` gives the run's arena, or anything with its `truth(pipeline, ts)` (only the
    oracle reads it, lazily, once the run exists)."""
    if name == "qlearning":
        if trained is None:
            raise SelfhealError("the qlearning policy needs a trained table: run `selfheal train` first")
        return QLearningPolicy(trained.table, trained.params, explore=False, learning=False)
    if name == "oracle":
        return OraclePolicy(lambda pid, ts: arena().truth(pid, ts), COOLDOWNS)
    if name not in POLICIES:
        raise SelfhealError(f"unknown policy {name!r}; available: {list(POLICIES)}")
    return {"rules": RulesPolicy(), "manual": ManualPolicy(), "none": None}[name]


def run_policy(scenario: Scenario, policy: str, *, qtable_policy: QLearningPolicy | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Run one scenario under one policy in memory; the `simulate` report plus a decision section."""
    holder: list[Arena] = []
    chosen = make_policy(policy, lambda: holder[0], qtable_policy)
    arena = Arena(Twin.from_scenario(scenario), chosen, rng=np.random.default_rng([seed, scenario.seed]))
    holder.append(arena)
    arena.run_until(scenario.duration_minutes)
    return arena_report(arena, scenario, policy)


def aggregate(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-policy figures over many runs. MTTR (DESIGN's: onset → pipeline healthy again) and the time to
    close the incident count an unrecovered fault until its run ended (censored)."""
    faults = [f for r in reports for f in r["faults"]]
    mttr = [f["mttr_censored_minutes"] for f in faults]
    mttd = [f["mttd_minutes"] for f in faults if f["mttd_minutes"] is not None]
    healthy = sum(p["healthy_minutes"] for r in reports for p in r["pipelines"])
    minutes = sum(p["minutes"] for r in reports for p in r["pipelines"])
    incidents = sum(r["summary"]["incidents"] for r in reports)
    actions = sum(r["decisions"]["actions"] for r in reports)
    auto = [r["decisions"]["auto_resolved_share"] * r["summary"]["incidents"] for r in reports
            if r["decisions"]["auto_resolved_share"] is not None]
    rnd = lambda x: None if x is None else round(float(x), 3)  # noqa: E731
    return {"runs": len(reports), "faults": len(faults),
            "recovered_share": rnd(np.mean([f["recovered"] for f in faults])) if faults else None,
            "mttr_minutes_mean": rnd(np.mean(mttr)) if mttr else None,
            "mttr_minutes_p95": rnd(np.percentile(mttr, 95)) if mttr else None,
            "close_minutes_mean": rnd(np.mean([f["close_censored_minutes"] for f in faults])) if faults else None,
            "mttd_minutes_mean": rnd(np.mean(mttd)) if mttd else None,
            "slo_attainment": rnd(healthy / minutes) if minutes else None,
            "auto_resolved_share": rnd(sum(auto) / incidents) if incidents else None,
            "actions_per_incident": rnd(actions / incidents) if incidents else None,
            "cost": rnd(sum(r["decisions"]["cost"] for r in reports)),
            "cost_per_incident": rnd(sum(r["decisions"]["cost"] for r in reports) / incidents) if incidents else None}


def bench(scenarios: Path, *, episodes: int = 1000, seed: int = 0, policies: Sequence[str] = POLICIES,
          params: QParams | None = None, trained: QLearningPolicy | None = None,
          progress: Callable[[str, int, int], None] | None = None, jobs: int = 1,
          restarts: int = DEFAULT_RESTARTS, members: int = DEFAULT_MEMBERS,
          averaged: int | None = None) -> dict[str, Any]:
    """Train (unless `trained` is given; `members` learners, each keeping the best of the default checkpoints and
    trained again after a poor run up to `restarts` times, side by side with `jobs` > 1, the `averaged` best of
    them averaged, by default `default_averaged(members)`), then score every policy on every scenario file in
    `scenarios`."""
    files = load_dir(scenarios)
    if not files:
        raise SelfhealError(f"no scenario files (*.json) in {scenarios}")
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise SelfhealError(f"unknown policies {sorted(unknown)}; available: {list(POLICIES)}")
    run: TrainingRun | None = None
    agent = trained
    if agent is None and "qlearning" in policies:
        agent = QLearningPolicy(params=params)
        run = train(agent, episodes=episodes, seed=seed, checkpoints=default_checkpoints(episodes), jobs=jobs,
                    progress=(lambda d, t: progress("training", d, t)) if progress else None, restarts=restarts,
                    members=members, averaged=default_averaged(members, averaged))
    out: dict[str, Any] = {"scenarios": str(scenarios), "files": len(files), "seed": seed, "policies": {}}
    if run is not None:
        out["training"] = {"episodes": len(run.records), "seconds": round(run.seconds, 2),
                           "states": len(agent.table.values) if agent else 0, "pairs": len(agent.table) if agent else 0,
                           "checkpoints": [c.to_dict() for c in run.checkpoints],
                           "attempts": [a.to_dict() for a in run.attempts], "members": members,
                           "ensemble": None if run.ensemble is None else run.ensemble.to_dict(),
                           "fallback": run.fallback, "averaged": list(run.averaged)}
    for name in policies:
        reports = []
        for k, sc in enumerate(files):
            reports.append(run_policy(sc, name, qtable_policy=agent, seed=seed))
            if progress:
                progress(name, k + 1, len(files))
        out["policies"][name] = aggregate(reports)
        out["policies"][name]["per_kind_mttr"] = _per_kind(reports)
    return out


def _per_kind(reports: Sequence[dict[str, Any]]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in reports:
        for f in r["faults"]:
            by.setdefault(f["kind"], []).append(f["mttr_censored_minutes"])
    return {k: round(float(np.mean(v)), 2) for k, v in sorted(by.items())}
