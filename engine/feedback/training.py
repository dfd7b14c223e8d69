"""Training the Q-learning policy in the twin, on scenarios the curriculum generates (never benchmark files).

Episodes run in batches: one twin with `batch_size` pipelines, each carrying one episode's faults, so the
twin and the analysis layer work on arrays instead of one pipeline at a time. Each pipeline's episode ends
when its incident closes (or after `HORIZON` minutes). Deterministic for a seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from engine.decision.qlearning import QLearningPolicy
from engine.feedback.arena import Arena
from engine.feedback.curriculum import TRAINING_MIX, training_batch
from engine.feedback.loop import Learned
from engine.feedback.reward import RewardWeights
from engine.sim.twin import Twin


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One training episode: what hit the pipeline and how the policy did."""

    episode: int
    family: str
    kind: str  # the first fault's kind (ground truth, for the learning curve only)
    stage: str
    reward: float
    mttr_minutes: float | None  # None: not recovered within the horizon
    actions: int
    cost: float
    first_action: str | None
    epsilon: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TrainingRun:
    records: list[EpisodeRecord]
    seconds: float
    batches: int
    learned: list[Learned]  # the newest learning steps (at most KEEP_LEARNED), for the console

    def summary(self, *, seed: int, episodes_total: int) -> dict:
        """What the store keeps of a run: the learning curve and how long it took."""
        return {"seed": seed, "episodes": len(self.records), "episodes_total": episodes_total,
                "seconds": round(self.seconds, 2), "batches": self.batches,
                "curve": [r.to_dict() for r in self.records]}


KEEP_LEARNED = 2000


def train(policy: QLearningPolicy, *, episodes: int, seed: int = 0, batch_size: int = 10,
          mix: dict[str, float] | None = None, weights: RewardWeights | None = None,
          progress: Callable[[int, int], None] | None = None) -> TrainingRun:
    """Train `policy` for `episodes` episodes (its table is updated in place)."""
    if episodes < 1 or batch_size < 1:
        raise ValueError("episodes and batch_size must be at least 1")
    rng = np.random.default_rng([seed, 0x7EA1])
    records: list[EpisodeRecord] = []
    learned: list[Learned] = []
    t0 = time.perf_counter()
    batches = 0
    while len(records) < episodes:
        size = min(batch_size, episodes - len(records))
        scenario, families = training_batch(rng, size, batches, mix or TRAINING_MIX)
        arena = Arena(Twin.from_scenario(scenario), policy, rng=np.random.default_rng([seed, 1, batches]),
                      weights=weights or RewardWeights())
        records.extend(_run_batch(arena, scenario.duration_minutes, families, policy, len(records)))
        learned = (learned + arena.log.learned)[-KEEP_LEARNED:]
        batches += 1
        if progress:
            progress(len(records), episodes)
    return TrainingRun(records[:episodes], time.perf_counter() - t0, batches, learned)


def _run_batch(arena: Arena, duration: int, families: list[str], policy: QLearningPolicy,
               first_episode: int) -> list[EpisodeRecord]:
    twin = arena.twin
    onset = {}
    for f in twin.faults:
        onset.setdefault(f.pipeline, f)
    done: dict[str, EpisodeRecord] = {}
    first_action: dict[str, str] = {}
    seen_decisions = 0
    while twin.minute < duration and len(done) < len(onset):
        arena.minute()
        for d in arena.log.decisions[seen_decisions:]:
            first_action.setdefault(d.pipeline_id, d.choice.action.value)
        seen_decisions = len(arena.log.decisions)
        for end in arena.log.ended:
            f = onset.get(end.pipeline_id)
            if f is None or end.pipeline_id in done or end.closed_at is None:
                continue
            closed = round((end.closed_at - twin.start).total_seconds() / 60)
            if closed <= f.start:
                continue  # a false incident before the fault
            done[end.pipeline_id] = EpisodeRecord(
                first_episode + len(done), families[twin.index_of(end.pipeline_id)], f.kind.value, f.stage.value,
                round(end.reward, 3), closed - f.start, end.actions, round(end.cost, 3),
                first_action.get(end.pipeline_id), round(policy.epsilon, 4))
        arena.log.ended.clear()
    # Episodes cut off by the horizon: no recovery reward, and they count for the exploration schedule.
    for pid, f in onset.items():
        if pid not in done:
            ep = arena.healer.episodes.get(pid) if arena.healer else None
            policy.end_episode()
            done[pid] = EpisodeRecord(
                first_episode + len(done), families[twin.index_of(pid)], f.kind.value, f.stage.value,
                round(ep.reward if ep else 0.0, 3), None, ep.attempts if ep else 0, round(ep.cost if ep else 0.0, 3),
                first_action.get(pid), round(policy.epsilon, 4))
    return sorted(done.values(), key=lambda r: r.episode)


