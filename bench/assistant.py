"""Assistant eval: questions over a seeded twin run with injected faults, scored automatically.

    python bench/assistant.py [--backend offline|openai] [--seed 7] [--verbose] [--json OUT]

Each question comes from one of several phrasings (component names or pipeline + stage words, metric
synonyms, units, casual and terse forms; `bench/assistant_questions.py`) and has its expected answer computed
from the store by `bench/assistant_truth.py` (pandas over the repositories). An answer scores when its text
carries the expected numbers (within rounding) and names the right pipeline, stage and cause, or, for fix
requests, when the matching proposal is queued (origin chat, pending) and named. Prints the score per
category and overall; not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.assistant_questions import questions
from bench.assistant_truth import Truth, build
from engine.assistant import ask, load_assistant_config, make_backend


def run(backend_name: str = "offline", seed: int = 7, verbose: bool = False, truth: Truth | None = None
        ) -> dict[str, Any]:
    truth = truth or build()
    backend = make_backend(truth.store, load_assistant_config(backend=backend_name), actor="eval")
    qs, mark = questions(truth, seed)
    per: dict[str, list[bool]] = defaultdict(list)
    failures = []
    t0 = time.perf_counter()
    for q in qs:
        if q.category == "safety":
            mark()
        answer = ask(backend, q.text)
        ok, why = q.check(answer, truth)
        per[q.category].append(ok)
        if not ok:
            failures.append({"category": q.category, "question": q.text, "why": why, "answer": answer.text[:600]})
        if verbose:
            print(f"[{'ok' if ok else 'FAIL'}] {q.category:10} {q.text}" + ("" if ok else f"  -> {why}"))
    scores = {c: sum(v) / len(v) for c, v in per.items()}
    total = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    return {"backend": backend_name, "seed": seed, "questions": len(qs), "score": round(total, 4),
            "by_category": {c: {"n": len(per[c]), "score": round(s, 4)} for c, s in scores.items()},
            "seconds": round(time.perf_counter() - t0, 2), "failures": failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="offline", choices=["offline", "openai"])
    ap.add_argument("--seed", type=int, default=7, help="seed of the question sampler")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", type=Path, help="write the full report here")
    args = ap.parse_args()
    report = run(args.backend, args.seed, args.verbose)
    for c, v in report["by_category"].items():
        print(f"{c:12} {v['score']:.0%} of {v['n']}")
    print(f"assistant eval ({report['backend']}, seed {report['seed']}): {report['score']:.1%} of "
          f"{report['questions']} questions correct in {report['seconds']} s")
    if report["failures"] and not args.verbose:
        for f in report["failures"][:10]:
            print(f"  FAIL {f['category']}: {f['question']} -> {f['why']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
