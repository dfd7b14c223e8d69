"""Plain-text summaries of training runs and bench results, for the CLI and bench scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.feedback.training import POOR_SCORE, Attempt, Checkpoint, EpisodeRecord

WINDOW = 50


def curve(records: Sequence[EpisodeRecord], *, kind: str | None = None, window: int = WINDOW,
          horizon: float = 240.0) -> list[dict[str, Any]]:
    """Mean reward and MTTR per window of episodes (MTTR of an unrecovered episode counts as `horizon`);
    with `kind`, MTTR only over that fault kind's episodes in each window."""
    out = []
    for lo in range(0, len(records), window):
        chunk = records[lo:lo + window]
        mine = [r for r in chunk if kind is None or r.kind == kind]
        mttr = [r.mttr_minutes if r.mttr_minutes is not None else horizon for r in mine]
        out.append({"episodes": f"{lo + 1}-{lo + len(chunk)}", "n": len(mine),
                    "reward_mean": round(float(np.mean([r.reward for r in mine])), 1) if mine else None,
                    "mttr_mean": round(float(np.mean(mttr)), 1) if mttr else None,
                    "first_action": max(sorted({r.first_action for r in mine}, key=str),  # ties: by name
                                        key=[r.first_action for r in mine].count)
                    if mine else None})
    return out


def curve_lines(records: Sequence[EpisodeRecord], *, kind: str | None = None, window: int = WINDOW) -> list[str]:
    lines = [f"{'episodes':>11} {'n':>4} {'reward':>8} {'MTTR min':>9}  most common first action"]
    for row in curve(records, kind=kind, window=window):
        fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        lines.append(f"{row['episodes']:>11} {row['n']:>4} {fmt(row['reward_mean']):>8} {fmt(row['mttr_mean']):>9}  "
                     f"{row['first_action'] or '-'}")
    return lines


def bench_lines(result: dict[str, Any]) -> list[str]:
    cols = ("mttr_minutes_mean", "mttr_minutes_p95", "close_minutes_mean", "mttd_minutes_mean", "slo_attainment",
            "auto_resolved_share", "actions_per_incident", "cost_per_incident", "recovered_share")
    heads = ("MTTR", "MTTR p95", "to close", "MTTD", "SLO", "auto", "act/inc", "cost/inc", "recovered")
    lines = [f"{'policy':<10}" + "".join(f"{h:>10}" for h in heads)]
    for name, row in result["policies"].items():
        lines.append(f"{name:<10}" + "".join(f"{'-' if row.get(c) is None else format(row[c], 'g'):>10}" for c in cols))
    return lines


def checkpoint_lines(checkpoints: Sequence[Checkpoint], ensemble: Checkpoint | None = None) -> list[str]:
    """The checkpoints training scored on its validation episodes, each learner's kept one marked (with
    several learners, a member column and the averaged table's score last)."""
    if not checkpoints:
        return ["no checkpoints scored (the final table is kept)"]
    families = list(checkpoints[0].mttr)
    several = any(c.member for c in checkpoints)
    member = (lambda c: f"{c.member:>7} ") if several else (lambda c: "")
    lines = ["score: MTTR / the oracle's on the same episodes, mean over families (lower is better); MTTR in min",
             ("learner " if several else "") + f"{'checkpoint':>10} {'score':>7} "
             + " ".join(f"{f:>10}" for f in families)]
    for c in checkpoints:
        lines.append(member(c) + f"{c.episodes:>10} {c.score:>7.3f} "
                     + " ".join(f"{c.mttr[f]:>10.1f}" for f in families) + ("   ← kept" if c.chosen else ""))
    if ensemble is not None:
        used = "   ← the table used" if ensemble.chosen else (f"   (above {POOR_SCORE:g}: the best learner's "
                                                               "table is used)")
        lines.append(("   mean " if several else "") + f"{'averaged':>10} {ensemble.score:>7.3f} "
                     + " ".join(f"{ensemble.mttr[f]:>10.1f}" for f in families) + used)
    return lines


def learners_phrase(members: int, fallback: int | None, averaged: Sequence[int] = ()) -> str:
    """How a training run's table came about, after its episode count: "" for one learner, else
    " × 4 learners, the best 3 averaged" (" × 2 learners, averaged": all of them) or, where the mean scored
    poorly, " × 4 learners (learner 0's table kept)"."""
    if members == 1:
        return ""
    if fallback is not None:
        return f" × {members} learners (learner {fallback}'s table kept)"
    return f" × {members} learners, " + ("averaged" if len(averaged) in (0, members) else
                                         f"the best {len(averaged)} averaged")


def restart_line(attempt: Attempt) -> str:
    """What `selfheal train` says when a poor run is trained again."""
    who = f"learner {attempt.member}'s " if attempt.member else ""
    return (f"{who}training run with seed {attempt.seed} kept a table scoring {attempt.score:.3f} × the oracle "
            f"(above {POOR_SCORE:g}: such tables rarely meet the MTTR targets); training again with seed "
            f"{attempt.seed + 1}")


def attempt_lines(attempts: Sequence[Attempt], averaged: Sequence[int] = ()) -> list[str]:
    """The training runs of one `train` call (with restarts or several learners), each learner's kept one marked
    and, where only some learners were averaged (`averaged`), those left out."""
    several = any(a.member for a in attempts)
    learners = 1 + max(a.member for a in attempts)
    restarted = len(attempts) > learners
    out_of_mean = set(range(learners)) - set(averaged) if averaged else set()
    lines = [f"{len(attempts)} training runs" + (f" by {learners} learners" if several else "")
             + (f" (a run whose kept checkpoint scores above {POOR_SCORE:g} is trained again with the next seed; "
                "the best is kept)" if restarted else "")
             + (f"; the {len(averaged)} best-scoring learners' tables averaged" if out_of_mean else "") + ":"]
    for a in attempts:
        score = "-" if a.score is None else f"{a.score:.3f}"
        mark = ("   ← kept" + (", left out of the mean" if a.member in out_of_mean else "")) if a.kept else ""
        lines.append(("  learner " + f"{a.member}" if several else "") + f"  seed {a.seed:>6}  score {score:>7}  "
                     f"{a.seconds:>6.1f} s" + mark)
    return lines
