"""The decision layer's benchmark: Q-learning against the runbook, manual handling and the oracle.

    python bench/rl.py [--out DIR] [--count 30] [--heldout-seed 1000] [--episodes 1000] [--seed 0] [--members 4]
                       [--average 3] [--json OUT]

Writes held-out scenario sets (single known faults, mixed = two at once, ambiguous = contention-like signatures
that are half the time warehouse overload, novel = credentials expired, sparse = two quiet days with faults
covering at most 5% of the time) under DIR with seeds the agent never trains on; trains Q-learning once on
generated scenarios (`selfheal train`'s code); then scores every policy on every set (`selfheal bench rl`'s
code) and prints the figures against the acceptance targets, plus the learning curve of the fault kind no
runbook rule covers. Prints numbers; not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.decision.qlearning import QLearningPolicy
from engine.feedback.bench import bench, run_policy
from engine.feedback.curriculum import episode_scenario, write_sets
from engine.feedback.summaries import attempt_lines, bench_lines, checkpoint_lines, curve, curve_lines, learners_phrase
from engine.feedback.training import (
    DEFAULT_AVERAGED,
    DEFAULT_MEMBERS,
    DEFAULT_RESTARTS,
    default_averaged,
    default_checkpoints,
    default_jobs,
    train,
)


def _targets(res: dict[str, dict]) -> list[str]:
    def m(fam: str, pol: str, key: str = "mttr_minutes_mean") -> float:
        return res[fam]["policies"][pol][key]

    lines = []
    q, r, man, orc = (m("single", p) for p in ("qlearning", "rules", "manual", "oracle"))
    lines.append(f"single: Q {q:g} ≤ manual/3 {man / 3:.2f}: {q <= man / 3};  Q ≤ rules {r:g}: {q <= r};  "
                 f"Q ≤ 1.3 × oracle {1.3 * orc:.2f}: {q <= 1.3 * orc}")
    for fam in ("mixed", "ambiguous"):
        q, r, orc = m(fam, "qlearning"), m(fam, "rules"), m(fam, "oracle")
        lines.append(f"{fam}: Q {q:g} ≤ 0.7 × rules {0.7 * r:.2f}: {q <= 0.7 * r};  "
                     f"Q ≤ 1.3 × oracle {1.3 * orc:.2f}: {q <= 1.3 * orc}")
    q, orc, r = m("novel", "qlearning"), m("novel", "oracle"), m("novel", "rules")
    lines.append(f"novel (credentials_expired): Q {q:g} vs rules {r:g}; Q ≤ 1.3 × oracle {1.3 * orc:.2f}: "
                 f"{q <= 1.3 * orc}")
    slo = m("sparse", "qlearning", "slo_attainment")
    lines.append(f"sparse (faults ≤ 5% of the time): Q SLO {slo:g} ≥ 0.99: {slo >= 0.99}")
    return lines


def greedy_curve(*, seed: int, chunk: int = 50, upto: int = 400, probes: int = 12) -> list[tuple[int, float, str]]:
    """Train in chunks and, after each, run the greedy policy on `probes` credentials_expired scenarios drawn
    from a training-side stream (not the held-out sets): (episodes so far, mean MTTR, most common first action).
    Plain training, no checkpoint selection: the curve shows what the learner knows after N episodes.
    """
    rng = np.random.default_rng([seed, 4242])
    probe = [episode_scenario(rng, "novel", f"probe-{k}", twin_seed=2 * int(rng.integers(0, 2**30)))
             for k in range(probes)]
    agent = QLearningPolicy()
    out = []
    for k in range(upto // chunk):
        train(agent, episodes=chunk, seed=seed * 1000 + k)
        reports = [run_policy(sc, "qlearning", qtable_policy=agent) for sc in probe]
        firsts = [r["decisions"]["by_action"] for r in reports]
        first = max(sorted({a for f in firsts for a in f}), key=lambda a: sum(a in f for f in firsts))  # ties: by name
        out.append(((k + 1) * chunk, round(float(np.mean([f["mttr_censored_minutes"] for r in reports
                                                         for f in r["faults"]])), 1), first))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="where to write the held-out sets (default: a temp dir)")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--heldout-seed", type=int, default=1000)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="learners trained (as selfheal train)")
    ap.add_argument("--average", type=int, default=None,
                    help=f"the best-scoring learners averaged (default {DEFAULT_AVERAGED}, as selfheal train)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="selfheal-rl-"))
    sets = write_sets(out, count=args.count, seed=args.heldout_seed)
    agent = QLearningPolicy()
    run = train(agent, episodes=args.episodes, seed=args.seed, checkpoints=default_checkpoints(args.episodes),
                jobs=default_jobs(), restarts=DEFAULT_RESTARTS, members=args.members,
                averaged=default_averaged(args.members, args.average))
    each = learners_phrase(args.members, run.fallback, run.averaged) + ("," if args.members > 1 else "")
    print(f"trained {len(run.records)} episodes{each} in {run.seconds:.1f} s (checkpoint scoring included); "
          f"{len(agent.table.values)} states, {len(agent.table)} Q-values (held-out sets in {out})")
    if len(run.attempts) > 1:
        print("\n".join(attempt_lines(run.attempts, run.averaged)))
    print("\n".join(checkpoint_lines(run.checkpoints, run.ensemble)))
    print("learning curve, credentials_expired (no runbook rule), MTTR per 50 training episodes:")
    print("\n".join(curve_lines(run.records, kind="credentials_expired")))
    greedy = greedy_curve(seed=args.seed)
    print("greedy policy on credentials_expired probes (training-side scenarios) after N training episodes:")
    for n, mttr, action in greedy:
        print(f"  {n:>4} episodes: MTTR {mttr:6.1f} min, most used action {action}")
    results = {}
    t0 = time.perf_counter()
    for family, d in sets.items():
        results[family] = bench(d, seed=args.seed, trained=agent)
        print(f"\n{family} ({results[family]['files']} scenarios)")
        print("\n".join(bench_lines(results[family])))
    print(f"\n(scored in {time.perf_counter() - t0:.0f} s)\nacceptance:")
    print("\n".join(_targets(results)))
    if args.json:
        training = {"episodes": len(run.records), "seconds": round(run.seconds, 2), "curve": curve(run.records),
                    "checkpoints": [c.to_dict() for c in run.checkpoints], "members": args.members,
                    "averaged": list(run.averaged),
                    "ensemble": None if run.ensemble is None else run.ensemble.to_dict(), "fallback": run.fallback,
                    "credentials_curve": curve(run.records, kind="credentials_expired"), "greedy_curve": greedy}
        args.json.write_text(json.dumps({"training": training, "results": results}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
