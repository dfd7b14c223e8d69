"""Reward shaping: recovery is rewarded; every minute an incident stays open, every minute the pipeline is
SLO-unhealthy, every action's cost and a verification that finds the pipeline still unhealthy are penalised.
An operator rejecting a proposal is a penalty of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RewardWeights:
    recovery: float = 50.0  # the incident closed (the pipeline is healthy again)
    minute: float = 1.0  # per minute the incident is open (time to recover)
    unhealthy: float = 1.0  # extra per minute the pipeline misses its SLO (freshness or a failed stage)
    still_unhealthy: float = 0.5  # the action was verified and the incident is still open
    cost: float = 1.0  # per catalog cost unit of the action taken
    rejection: float = 10.0  # an operator rejected the proposal


def step_reward(*, minutes: int, unhealthy_minutes: int, action_cost: float, recovered: bool,
                weights: RewardWeights = RewardWeights(), credited: bool = True) -> float:
    """Reward of one decision step: from taking an action to judging it (or to recovery). `credited`: whether
    the recovery came through this step; a page whose incident closed on its own before the human's work landed
    earns no recovery reward (a false page)."""
    if minutes < 0 or not 0 <= unhealthy_minutes <= max(minutes, 0):
        raise ValueError("need minutes ≥ 0 and 0 ≤ unhealthy_minutes ≤ minutes")
    r = -weights.minute * minutes - weights.unhealthy * unhealthy_minutes - weights.cost * action_cost
    if not recovered:
        return r - weights.still_unhealthy
    return r + weights.recovery if credited else r


def rejection_reward(weights: RewardWeights = RewardWeights()) -> float:
    """Reward for a proposal an operator rejected: the action never ran, the agent should not ask again."""
    return -weights.rejection
