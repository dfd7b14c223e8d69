"""A Gymnasium environment over the twin: one incident per episode, one step per decision.

`reset(seed=…, options={"family": "single"|"mixed"|"ambiguous"|"novel"})` draws a scenario (curriculum),
warms the analysis layer up and runs until the incident needs its first decision. `step(action)` runs the
catalog action (an index into `ACTIONS`) through the same healer the tick uses and returns when the next
decision is due or the incident closed. Observations are the decision layer's state as integers; rewards are
the feedback layer's. Actions the catalog does not allow at that moment run as `wait`; `info["action_mask"]`
says which were allowed. The typed details of each step are in `info["step"]` (a `StepInfo`). One step at a
time: the healer's side-by-side decisions for a second troubled stage are not part of this environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from engine.decision.policy import Choice, Transition, Update
from engine.decision.state import Observation
from engine.execution.catalog import ACTIONS
from engine.feedback.arena import Arena
from engine.feedback.curriculum import FAMILIES, episode_scenario
from engine.feedback.reward import RewardWeights
from engine.model import STAGES, ActionKind, FaultKind, Health
from engine.sim.twin import Twin

ERROR_TYPES: tuple[str, ...] = ("unknown", *(k.value for k in FaultKind))
STAGE_SLOTS = (None, *STAGES)
QUEUE_BUCKETS = ("q-normal", "q-raised", "q-high")
EPISODE_FAMILIES = tuple(f for f in FAMILIES if f != "sparse")


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What happened in one environment step."""

    action: ActionKind  # what ran (WAIT when the chosen action was not allowed)
    valid: bool
    minutes: int
    recovered: bool
    state: str | None  # the decision layer's state key after the step


class _External:
    """The policy seat the environment's agent sits in: it plays whatever `step` was given."""

    name = "gym"

    def __init__(self) -> None:
        self.action = ActionKind.WAIT
        self.allowed: tuple[ActionKind, ...] = ()
        self.last: Observation | None = None

    def choose(self, obs: Observation, allowed: Any, rng: np.random.Generator) -> Choice:
        self.last, self.allowed = obs, tuple(allowed)
        fallback = ActionKind.WAIT if ActionKind.WAIT in self.allowed else self.allowed[0]
        action = self.action if self.action in self.allowed else fallback
        return Choice(action, "chosen by the environment's agent")

    def learn(self, t: Transition) -> Update | None:
        return None

    def end_episode(self) -> None:
        return None


def encode_vector(obs: Observation | None) -> np.ndarray:
    """The observation as integers: error type, root stage, failing, warehouse queue, hot."""
    if obs is None:
        return np.zeros(5, dtype=np.int64)
    etype = ERROR_TYPES.index(obs.error_type) if obs.error_type in ERROR_TYPES else 0
    return np.array([etype, STAGE_SLOTS.index(obs.stage), int(obs.stage_status is Health.FAILED),
                     QUEUE_BUCKETS.index(obs.queue_bucket), int(obs.hot)], dtype=np.int64)


class SelfhealEnv(gym.Env[np.ndarray, np.int64]):
    """Recover one incident in the twin. See the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)
    PIPELINE = "orders"

    def __init__(self, *, families: tuple[str, ...] = EPISODE_FAMILIES, weights: RewardWeights | None = None) -> None:
        unknown = set(families) - set(EPISODE_FAMILIES)
        if unknown:
            raise ValueError(f"unknown families {sorted(unknown)}; expected some of {list(EPISODE_FAMILIES)}")
        self.families = families
        self.weights = weights or RewardWeights()
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.MultiDiscrete([len(ERROR_TYPES), len(STAGE_SLOTS), 2, len(QUEUE_BUCKETS), 2])
        self._arena: Arena | None = None
        self._seat = _External()
        self._duration = 0

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        family = options.get("family") or self.families[int(self.np_random.integers(len(self.families)))]
        scenario = episode_scenario(self.np_random, family, f"gym-{family}",
                                    twin_seed=int(self.np_random.integers(0, 2**31 - 1)))
        self._duration = scenario.duration_minutes
        self._seat = _External()
        self._arena = Arena(Twin.from_scenario(scenario), self._seat,
                            rng=np.random.default_rng(int(self.np_random.integers(0, 2**31 - 1))),
                            weights=self.weights, parallel=False)
        self._advance()
        return self._obs(), {"family": family, "action_mask": self.action_mask()}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arena = self._arena
        if arena is None:
            raise RuntimeError("call reset() before step()")
        wanted = ACTIONS[int(action)]
        self._seat.action = wanted
        taken = wanted
        if arena.healer is not None and arena.healer.pending_decision(self.PIPELINE):
            result = arena.decide()
            taken = result.decisions[0].choice.action if result.decisions else ActionKind.WAIT
        learned = self._advance()
        reward = float(sum(x.transition.reward for x in learned))
        done = any(x.transition.done for x in learned) or (self.PIPELINE not in arena.open and self._ended())
        truncated = not done and arena.twin.minute >= self._duration
        info = StepInfo(taken, taken is wanted, sum(x.transition.minutes for x in learned), done,
                        learned[-1].transition.next_state if learned else None)
        return self._obs(), reward, done, truncated, {"step": info, "action_mask": self.action_mask()}

    # -- helpers ----------------------------------------------------------------------------------
    def action_mask(self) -> np.ndarray:
        """1 for each action the catalog allows now (all ones before the first observation)."""
        if not self._seat.allowed and self._seat.last is None:
            return np.ones(len(ACTIONS), dtype=np.int8)
        return np.array([a in self._seat.allowed for a in ACTIONS], dtype=np.int8)

    def _ended(self) -> bool:
        assert self._arena is not None
        return bool(self._arena.log.ended)

    def _advance(self) -> list:
        """Run minutes until the incident needs a decision, it closed, or the scenario ends."""
        arena = self._arena
        assert arena is not None and arena.healer is not None
        start = len(arena.log.learned)
        while arena.twin.minute < self._duration:
            arena.minute(decide=False)
            if arena.log.ended or arena.healer.pending_decision(self.PIPELINE):
                break
        view, inc = arena.last_views.get(self.PIPELINE), arena.open.get(self.PIPELINE)
        if arena.healer.pending_decision(self.PIPELINE) and view is not None and inc is not None:
            self._seat.last, self._seat.allowed = arena.healer.candidates(view, inc)
        return arena.log.learned[start:]

    def _obs(self) -> np.ndarray:
        return encode_vector(self._seat.last)
