"""Deliberate changes: when the loop changes a stage's capacity, that stage's telemetry has a new normal.

The anomaly scorer never learns from minutes it flags (so a long fault does not become normal), which also
means a deliberate, permanent change (twice the workers, half the cpu) would stay "anomalous" forever and
keep the incident open. After a capacity change lands, the stage's baseline restarts its warm-up, exactly as
for a new stream: for `StageScorer.warmup` minutes its scores are 0 and only static limits and error events
judge the stage, while the baseline learns the new level.

This reaches into the scorer's learned state (`streams_`, `seen_`, `streak_`) from outside; it belongs in
`StageScorer` itself as a public method, which the detection layer can take over unchanged.
"""

from __future__ import annotations

from engine.detection.stage_scores import StageScorer
from engine.model import Stage


def rebaseline(scorer: StageScorer, pipeline_id: str, stage: Stage) -> bool:
    """Restart the baseline of one stage stream; False when the scorer has not seen that stream yet."""
    i = scorer.streams_.get((pipeline_id, stage))
    if i is None:
        return False
    scorer.seen_[i] = 0
    scorer.streak_[i] = 0
    return True
