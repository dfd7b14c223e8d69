"""Time one tick (pull a simulated minute, anomaly scores, health, incidents, one SQLite transaction).

    python bench/tick.py [--sizes 100 1000] [--ticks 20] [--warmup 60] [--seed 1]

Prints median and p95 seconds per tick. The store is a fresh SQLite file in a temp dir (WAL mode),
warmed up with `--warmup` simulated minutes of history first. Not a test: numbers only.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from engine.detection.stage_scores import StageScorer
from engine.service.tick import register, tick
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.telemetry.simulator import SimulatorSource


def measure(size: int, ticks: int, warmup: int, seed: int, workdir: Path) -> list[float]:
    twin = Twin(fleet_pipelines(size, seed), seed=seed)
    source = SimulatorSource(twin)
    store = Store.open(f"sqlite:///{workdir / f'tick-{size}.db'}")
    scorer = StageScorer(seed=seed)
    register(store, source)
    tick(store, source, twin.time_of(warmup), scorer)
    # A few faults so incidents open and update during the measured ticks, as in a real fleet.
    for k, kind in enumerate(("schema_drift", "network_failure", "resource_contention")):
        twin.inject_fault(twin.pipelines[k].id, "transform", kind)
    times = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        tick(store, source, twin.time_of(twin.minute + 1), scorer)
        times.append(time.perf_counter() - t0)
    store.dispose()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"{'pipelines':>10} {'rows/tick':>10} {'median s':>9} {'p95 s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            times = sorted(measure(size, args.ticks, args.warmup, args.seed, Path(tmp)))
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            print(f"{size:>10} {size * 5:>10} {statistics.median(times):>9.3f} {p95:>7.3f}")


if __name__ == "__main__":
    main()
