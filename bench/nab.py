"""NAB score of `selfheal detect` on a corpus laid out like NAB (default: the 17 AWS CloudWatch series).

    python bench/nab.py [--data DIR] [--seeds 0 1 2] [--method likelihood|iforest] [--json OUT] [--per-file]

For every seed, every labelled CSV under ``DIR/data`` is scored with the detect logic
(`engine.detection.detect`: the same reading, validation and scorer as the CLI), then the corpus is scored
with NAB's rules (`bench.nab_scoring`: threshold optimised per profile over the corpus, normalised so the
null detector is 0 and a perfect one 100 over the scored files). Prints the standard, reward_low_FP_rate
and reward_low_FN_rate scores, window precision and recall at the standard profile's threshold, and the
scoring throughput (points per second in one process with BLAS/OpenMP pinned to one thread), per seed and
as the mean over seeds. Labels are only read by the NAB scoring, never by the detector. Not a test.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

if __package__ in (None, ""):  # run as `python bench/nab.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.nab_scoring import PROFILES, ProfileResult, load_corpus, score_all, score_file  # noqa: E402
from engine.detection.detect import read_series_csv, score_frame  # noqa: E402
from engine.detection.scorer import METHODS  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/nab")


def run_seed(data: Path, seed: int, method: str) -> tuple[dict[str, ProfileResult], list[np.ndarray], float]:
    """Score every labelled file once; return the NAB results, the scores and the seconds spent scoring."""
    corpus = load_corpus(data)
    scores, seconds = [], 0.0
    for labelled in corpus:
        series = read_series_csv(data / "data" / labelled.name)
        t0 = time.perf_counter()
        scores.append(score_frame(series, method=method, seed=seed))
        seconds += time.perf_counter() - t0
    return score_all(corpus, scores), scores, seconds


def summary(results: dict[str, ProfileResult], points: int, seconds: float) -> dict[str, float]:
    std = results["standard"]
    return {
        "standard": std.score,
        "reward_low_FP_rate": results["reward_low_FP_rate"].score,
        "reward_low_FN_rate": results["reward_low_FN_rate"].score,
        "threshold_standard": std.threshold,
        "window_recall": std.window_recall,
        "window_precision": std.window_precision,
        "windows_detected": std.windows_detected,
        "windows": std.windows,
        "false_positive_rows": std.fp,
        "alerts": std.alerts,
        "points_per_second": points / seconds,
    }


def print_row(label: str, row: dict[str, float]) -> None:
    print(f"{label:>6}  {row['standard']:8.2f}  {row['reward_low_FP_rate']:8.2f}  {row['reward_low_FN_rate']:8.2f}"
          f"  {row['threshold_standard']:9.4f}  {row['window_precision']:9.3f}  {row['window_recall']:6.3f}"
          f"  {row['windows_detected']:>4.3g}/{row['windows']:<3g}  {row['false_positive_rows']:5.3g}"
          f"  {row['points_per_second']:12,.0f}")


def print_per_file(data: Path, scores: list[np.ndarray], threshold: float) -> None:
    for labelled, s in zip(load_corpus(data), scores, strict=True):
        f = score_file(labelled, s, threshold, PROFILES["standard"])
        print(f"    {labelled.name:60s} raw {f.raw:6.2f}  windows {f.windows_detected}/{f.windows}  fp rows {f.fp}")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB-layout dir (data/, labels/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", choices=METHODS, default="likelihood")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--per-file", action="store_true", help="raw standard score per file")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.data)
    points = sum(len(s) for s in corpus)
    print(f"NAB on {args.data}: {len(corpus)} files, {points:,} points, "
          f"{sum(len(s.windows) for s in corpus)} windows; method {args.method}; "
          f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print("  seed  standard  low_FP    low_FN    threshold  precision  recall  windows  fp_rows  points/s")
    per_seed: dict[int, dict[str, float]] = {}
    for seed in args.seeds:
        results, scores, seconds = run_seed(args.data, seed, args.method)
        per_seed[seed] = summary(results, points, seconds)
        print_row(str(seed), per_seed[seed])
        if args.per_file:
            print_per_file(args.data, scores, results["standard"].threshold)
    mean = {k: statistics.fmean(r[k] for r in per_seed.values()) for k in next(iter(per_seed.values()))}
    print_row("mean", mean)
    report = {"data": str(args.data), "method": args.method, "files": len(corpus), "points": points,
              "per_seed": per_seed, "mean": mean}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
