"""How much the learner's result depends on its training seed: train one table per seed, score each on held-out sets.

    python bench/rl_seeds.py [--seeds 0-9] [--heldout-seeds 1000,2000,3000] [--count 30] [--restarts 0]
                             [--members 4] [--average 3] [--jobs 2] [--json OUT]

`bench/rl.py` scores one training seed on every family; this scores many seeds on the families whose checks compare
against the runbook and the oracle (single, mixed, ambiguous), using the same `train` (1,000 episodes, default
checkpoints, four learners of which the three best-scoring are averaged, as `selfheal train` does; `--members 1`:
one run per seed) and `run_policy`. Per training seed × held-out seed ("cell") it prints Q-learning's MTTR per
family with ✗ where a check fails (single: ≤ rules and ≤ 1.3 × oracle; mixed and ambiguous: ≤ 0.7 × rules and ≤ 1.3
× oracle; each held-out set's baseline line gives these limits), then how many cells meet every check and Q-learning's
MTTR over the oracle's per family (mean over cells). Compare code versions on seeds and held-out sets that were not used
to choose between them: cells a variant was tuned on flatter it. Prints numbers; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from engine.feedback.training import (
    DEFAULT_AVERAGED,
    DEFAULT_MEMBERS,
    DEFAULT_RESTARTS,
    default_averaged,
    exit_with_parent,
)

FAMILIES = ("single", "mixed", "ambiguous")
EPISODES = 1000


def _mean_mttr(reports: list[dict]) -> float:
    return float(np.mean([f["mttr_censored_minutes"] for r in reports for f in r["faults"]]))


def _baseline(job: tuple[str, str, int, int]) -> tuple[tuple[str, str, int], float]:
    from engine.feedback.bench import run_policy
    from engine.feedback.curriculum import held_out

    policy, family, heldout, count = job
    return (policy, family, heldout), _mean_mttr([run_policy(sc, policy) for sc in held_out(family, count, heldout)])


def _seed(job: tuple[int, tuple[int, ...], int, int, int, int]
          ) -> tuple[int, dict[tuple[str, int], float], float, list[float], list[dict], dict]:
    from engine.decision.qlearning import QLearningPolicy
    from engine.feedback.bench import run_policy
    from engine.feedback.curriculum import held_out
    from engine.feedback.training import default_checkpoints, train

    seed, heldouts, count, restarts, members, averaged = job
    agent = QLearningPolicy()
    run = train(agent, episodes=EPISODES, seed=seed, checkpoints=default_checkpoints(EPISODES), restarts=restarts,
                members=members, averaged=averaged)  # one process per seed: the pool runs seeds side by side
    mttr = {(family, h): _mean_mttr([run_policy(sc, "qlearning", qtable_policy=agent, seed=seed)
                                     for sc in held_out(family, count, h)])
            for h in heldouts for family in FAMILIES}
    table = {"averaged": list(run.averaged), "fallback": run.fallback,
             "mean_score": None if run.ensemble is None else run.ensemble.score}
    return seed, mttr, run.seconds, [c.score for c in run.checkpoints], [a.to_dict() for a in run.attempts], table


def _limit(family: str, rules: float, oracle: float) -> float:
    return min(rules if family == "single" else 0.7 * rules, 1.3 * oracle)


def _oracle_ratios(cells: list[dict], base: dict[tuple[str, str, int], float]) -> dict[str, float]:
    """Q-learning's MTTR over the oracle's on the same set, averaged over the cells, per family."""
    return {f: float(np.mean([c["mttr"][f] / base[("oracle", f, c["heldout"])] for c in cells])) for f in FAMILIES}


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9", help="training seeds, e.g. 0-9 or 0,3,7")
    ap.add_argument("--heldout-seeds", default="1000,2000,3000", help="held-out set seeds")
    ap.add_argument("--count", type=int, default=30, help="scenarios per family and held-out set")
    ap.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS,
                    help=f"train again with the next seed while the kept checkpoint scores poorly (default "
                         f"{DEFAULT_RESTARTS}, as `selfheal train`)")
    ap.add_argument("--members", type=int, default=DEFAULT_MEMBERS,
                    help=f"learners trained per table (default {DEFAULT_MEMBERS}, as `selfheal train`)")
    ap.add_argument("--average", type=int, default=None,
                    help=f"the best-scoring learners averaged (default {DEFAULT_AVERAGED}, as `selfheal train`)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seeds, heldouts = _seeds(args.seeds), tuple(_seeds(args.heldout_seeds))
    t0 = time.perf_counter()
    base: dict[tuple[str, str, int], float] = {}
    cells: list[dict] = []
    with get_context("fork").Pool(max(1, args.jobs), initializer=exit_with_parent) as pool:
        jobs = [(p, f, h, args.count) for p in ("rules", "oracle") for f in FAMILIES for h in heldouts]
        for key, value in pool.imap_unordered(_baseline, jobs):
            base[key] = value
        print(f"baselines scored in {time.perf_counter() - t0:.0f} s")
        for h in heldouts:
            print(f"  held-out {h}: " + "; ".join(
                f"{f} rules {base[('rules', f, h)]:.2f} oracle {base[('oracle', f, h)]:.2f} limit "
                f"{_limit(f, base[('rules', f, h)], base[('oracle', f, h)]):.2f}" for f in FAMILIES))
        averaged = default_averaged(args.members, args.average)
        jobs = [(s, heldouts, args.count, args.restarts, args.members, averaged) for s in seeds]
        for seed, mttr, seconds, scores, attempts, table in pool.imap_unordered(_seed, jobs):
            for h in heldouts:
                met = {f: mttr[(f, h)] <= _limit(f, base[("rules", f, h)], base[("oracle", f, h)]) for f in FAMILIES}
                cells.append({"seed": seed, "heldout": h, "mttr": {f: round(mttr[(f, h)], 3) for f in FAMILIES},
                              "met": met, "training_seconds": round(seconds, 1), "checkpoint_scores": scores,
                              "attempts": attempts, "table": table})
                print(f"seed {seed:>3} held-out {h}: " + "  ".join(
                    f"{f} {mttr[(f, h)]:6.2f}{' ' if met[f] else '✗'}" for f in FAMILIES)
                    + ("  all met" if all(met.values()) else "") + f"  (trained in {seconds:.0f} s"
                    + (f", {len(attempts)} runs by {args.members} learners" if len(attempts) > args.members
                       else "")
                    + (f", learner {table['fallback']}'s table: the mean scored poorly" if table["fallback"] is not None
                       else "") + ")", flush=True)
    n = len(cells)
    print(f"\n{sum(all(c['met'].values()) for c in cells)} of {n} cells meet every check; by family: "
          + ", ".join(f"{f} {sum(c['met'][f] for c in cells)} of {n}" for f in FAMILIES)
          + f" ({time.perf_counter() - t0:.0f} s)")
    if cells:
        print("MTTR / oracle's on the same set, mean over cells: "
              + ", ".join(f"{f} {r:.3f}" for f, r in _oracle_ratios(cells, base).items()))
    if args.json:
        baselines = {f"{p}|{f}|{h}": round(v, 3) for (p, f, h), v in sorted(base.items())}
        args.json.write_text(json.dumps({"cells": sorted(cells, key=lambda c: (c["seed"], c["heldout"])),
                                         "baselines": baselines}, indent=1) + "\n")


if __name__ == "__main__":
    main()
