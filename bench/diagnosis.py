"""Detection and diagnosis in the twin: MTTD, right error type and stage, false incidents.

    python bench/diagnosis.py [--runs 200] [--seed 0] [--calm-days 5] [--calm-pipelines 20] [--json OUT]

Single-fault runs: each draws a fault kind, a stage where that kind happens, a severity in [0.5, 1],
an onset and a duration from its own seed, runs the real tick over the twin (`selfheal simulate`'s
code) and checks the incident matched to the fault: detected within 5 simulated minutes, and its
diagnosis (error type, root-cause stage). Calm runs count incidents per pipeline per simulated day
with no fault at all. Prints the figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario

# Where each kind of fault happens in a CDC → DAG → Glue → Redshift pipeline.
STAGES_OF = {
    "schema_drift": ["source", "transform", "warehouse"],
    "resource_contention": ["orchestrator", "transform", "warehouse"],
    "network_failure": ["source", "orchestrator", "transform", "warehouse"],
    "timeout": ["orchestrator", "transform"],
    "warehouse_overload": ["warehouse"],
    "cdc_stopped": ["source"],
}
MTTD_LIMIT = 5


def single_fault(run: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, run])
    kind = str(rng.choice(list(STAGES_OF)))
    stage = str(rng.choice(STAGES_OF[kind]))
    at = int(rng.integers(60, 24 * 60))
    scenario = parse_scenario({
        "name": f"diag-{run}", "seed": int(rng.integers(0, 2**31)), "duration_minutes": at + 180,
        "pipelines": [{"id": "orders", "freshness_target_minutes": float(rng.choice([15, 30, 60]))},
                      {"id": "payments"}],
        "faults": [{"pipeline": "orders", "stage": stage, "kind": kind, "at_minute": at,
                    "duration_minutes": int(rng.integers(30, 121)),
                    "severity": round(float(rng.uniform(0.5, 1.0)), 2)}]})
    report = run_scenario(scenario)
    (fault,) = report["faults"]
    incidents = {i["id"]: i for p in report["pipelines"] for i in p["incidents"]}
    inc = incidents.get(fault["incident_id"])
    return {"kind": kind, "stage": stage, "severity": fault["severity"], "detected": fault["detected"],
            "mttd": fault["mttd_minutes"],
            "type_ok": bool(inc and inc["error_type"] == kind), "stage_ok": bool(inc and inc["stage"] == stage),
            "diagnosis": (inc["error_type"], inc["stage"]) if inc else None,
            "false_incidents": report["summary"]["false_incidents"]}


def calm(days: int, pipelines: int, seed: int) -> dict:
    scenario = parse_scenario({"name": "calm", "seed": seed, "duration_minutes": days * 1440,
                               "pipelines": [{"id": f"p{i}"} for i in range(pipelines)]})
    report = run_scenario(scenario)
    return {"incidents": report["summary"]["incidents"], "pipeline_days": days * pipelines,
            "per_pipeline_day": report["summary"]["incidents"] / (days * pipelines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calm-days", type=int, default=5)
    ap.add_argument("--calm-pipelines", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = [single_fault(r, args.seed) for r in range(args.runs)]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_kind[r["kind"]].append(r)
    print(f"{'fault kind':<20} {'runs':>4} {'detected':>8} {'MTTD≤5':>7} {'mean MTTD':>9} {'type ok':>7} "
          f"{'stage ok':>8} {'both ok':>7}")
    rows = {}
    for kind in STAGES_OF:
        rs = by_kind.get(kind, [])
        if not rs:
            continue
        mttd = [r["mttd"] for r in rs if r["mttd"] is not None]
        row = {"runs": len(rs), "detected": sum(r["detected"] for r in rs) / len(rs),
               "mttd_ok": sum(r["mttd"] is not None and r["mttd"] <= MTTD_LIMIT for r in rs) / len(rs),
               "mttd_mean": float(np.mean(mttd)) if mttd else None,
               "type_ok": sum(r["type_ok"] for r in rs) / len(rs), "stage_ok": sum(r["stage_ok"] for r in rs) / len(rs),
               "both_ok": sum(r["type_ok"] and r["stage_ok"] for r in rs) / len(rs),
               "wrong": Counter(str(r["diagnosis"]) for r in rs if not (r["type_ok"] and r["stage_ok"])).most_common(3)}
        rows[kind] = row
        print(f"{kind:<20} {row['runs']:>4} {row['detected']:>8.2f} {row['mttd_ok']:>7.2f} "
              f"{row['mttd_mean'] if row['mttd_mean'] is not None else float('nan'):>9.2f} {row['type_ok']:>7.2f} "
              f"{row['stage_ok']:>8.2f} {row['both_ok']:>7.2f}  {row['wrong'] if row['wrong'] else ''}")
    n = len(runs)
    overall = {"runs": n, "mttd_ok": sum(r["mttd"] is not None and r["mttd"] <= MTTD_LIMIT for r in runs) / n,
               "both_ok": sum(r["type_ok"] and r["stage_ok"] for r in runs) / n,
               "detected_within_5_and_diagnosed": sum(r["type_ok"] and r["stage_ok"] and r["mttd"] is not None
                                                      and r["mttd"] <= MTTD_LIMIT for r in runs) / n}
    print(f"{'all':<20} {n:>4}  MTTD≤5 {overall['mttd_ok']:.3f}  diagnosed right {overall['both_ok']:.3f}  "
          f"both {overall['detected_within_5_and_diagnosed']:.3f}")
    quiet = calm(args.calm_days, args.calm_pipelines, args.seed)
    print(f"no faults: {quiet['incidents']} incident(s) over {quiet['pipeline_days']} pipeline-days "
          f"= {quiet['per_pipeline_day']:.3f} per pipeline per day")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"by_kind": rows, "overall": overall, "calm": quiet}, indent=2))


if __name__ == "__main__":
    main()
