"""The policy port: every policy (learned or baseline) chooses an action for an observation the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from engine.decision.state import Observation
from engine.model import ActionKind, Stage


@dataclass(frozen=True, slots=True)
class Choice:
    """A policy's decision for one observation, with its reasons (Q-values of the alternatives, if any)."""

    action: ActionKind
    reason: str
    q_values: Mapping[ActionKind, float] = field(default_factory=dict)
    explored: bool = False
    stage: Stage | None = None  # overrides the catalog's target stage (only the oracle knows better)


@dataclass(frozen=True, slots=True)
class Transition:
    """One (state, action, reward, next state) step of an incident, as the feedback loop measured it."""

    pipeline_id: str
    incident_id: int | None
    ts: datetime
    state: str
    action: ActionKind
    reward: float
    next_state: str | None  # None when the incident ended (recovered)
    done: bool
    minutes: int
    allowed_next: tuple[ActionKind, ...] = ()


@dataclass(frozen=True, slots=True)
class Update:
    """What one learning step changed."""

    q_before: float
    q_after: float


@runtime_checkable
class Policy(Protocol):
    """Chooses among the actions the catalog allows; learns from transitions if it is a learner."""

    name: str

    def choose(self, obs: Observation, allowed: Sequence[ActionKind], rng: np.random.Generator) -> Choice:
        ...

    def learn(self, t: Transition) -> Update | None:
        """Update from one transition (baselines: None)."""
        ...

    def end_episode(self) -> None:
        """An incident ended (exploration schedules count these)."""
        ...
