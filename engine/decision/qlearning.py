"""Tabular Q-learning over the encoded incident state.

ε-greedy with a per-episode decay; learning rate and discount are parameters. Q-values start at 0. Most
rewards are negative, so an untried action usually looks better than a tried bad one; but recovery is worth
+50, so a mediocre fix that works can sit above 0 and hide a better action nobody tried. While exploring
(training), every allowed action therefore gets `min_tries` tries in a state before ε-greedy takes over.
Exploration only ever picks among the actions the caller allows (the catalog's preconditions, the policy).

Every transition also updates the state's coarse version (`state.coarse`: the queue level left out), kept in
the same table under keys ending in ``*``. While the exact state has been tried fewer than `backoff_visits`
times, the agent acts on the coarse state's values instead (a back-off estimate, as in n-gram models): a rare
combination of signals borrows what the signature taught.

Discount: an episode is judged by its undiscounted minutes to recovery within a 240-minute horizon, and γ = 0.998
per minute (an effective horizon of ~500 minutes) stays close to that. With γ = 0.99 (~100 minutes) putting off a
fix made it look cheaper: a page to a human closes its incident ~100 minutes later (the human's 30–60 minutes, then
the backlog draining), worth about −145, and a useless 5-minute step before it (−10) was worth −10 + 0.99⁵ × −145 ≈
−148, so only ~3 below paging at once, well within the noise of the page's estimate. With γ = 0.998 the gap is ~8.6.
Measured in `README.md` (session 17): the fault only a human fixes (expired credentials) is learned sooner. Over 96
training seeds the greedy policy handles it in the human's own time (MTTR ≤ 80 min) after 150 episodes for 70 seeds
instead of 38, after 200 for 88 instead of 71; the known faults' checks are met at least as often.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.decision.policy import Choice, Transition, Update
from engine.decision.state import Observation, coarse, encode
from engine.model import ActionKind


@dataclass(frozen=True, slots=True)
class QParams:
    alpha: float = 0.1  # learning rate once a pair has 1/alpha visits (before: 1/visits, a running mean)
    gamma: float = 0.998  # discount per simulated minute (steps last different times: γ^minutes per step); see above
    epsilon: float = 0.3  # exploration at the first episode
    epsilon_min: float = 0.1  # keeps revisiting actions whose first estimates were unlucky (training only)
    epsilon_decay: float = 0.997  # multiplied in once per finished episode
    backoff_visits: int = 10  # below this many tries in the exact state, act on the coarse state's values
    min_tries: int = 1  # while exploring, an allowed action tried fewer times than this in the state goes first

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 <= self.gamma <= 1 and 0 <= self.epsilon_min <= self.epsilon <= 1
                and 0 < self.epsilon_decay <= 1 and self.backoff_visits >= 0 and self.min_tries >= 0):
            raise ValueError("Q-learning parameters out of range: need 0<alpha≤1, 0≤gamma≤1, "
                             "0≤epsilon_min≤epsilon≤1, 0<epsilon_decay≤1, backoff_visits≥0")


class QTable:
    """Q(s, a) and visit counts; unseen pairs are 0."""

    def __init__(self) -> None:
        self.values: dict[str, dict[ActionKind, float]] = {}
        self.visits: dict[str, dict[ActionKind, int]] = {}

    def q(self, state: str, action: ActionKind) -> float:
        return self.values.get(state, {}).get(action, 0.0)

    def row(self, state: str, actions: Iterable[ActionKind]) -> dict[ActionKind, float]:
        return {a: self.q(state, a) for a in actions}

    def set(self, state: str, action: ActionKind, value: float, visits: int | None = None) -> None:
        self.values.setdefault(state, {})[action] = float(value)
        counts = self.visits.setdefault(state, {})
        counts[action] = counts.get(action, 0) + 1 if visits is None else visits

    def n(self, state: str, action: ActionKind) -> int:
        return self.visits.get(state, {}).get(action, 0)

    def max_q(self, state: str, actions: Sequence[ActionKind]) -> float:
        known = self.values.get(state, {})
        if actions:
            return max(known.get(a, 0.0) for a in actions)
        return max(known.values(), default=0.0)

    def items(self) -> Iterable[tuple[str, ActionKind, float, int]]:
        for state, row in self.values.items():
            for action, value in row.items():
                yield state, action, value, self.visits.get(state, {}).get(action, 0)

    def __len__(self) -> int:
        return sum(len(r) for r in self.values.values())

    def copy(self) -> QTable:
        out = QTable()
        out.values = {s: dict(r) for s, r in self.values.items()}
        out.visits = {s: dict(r) for s, r in self.visits.items()}
        return out


def mean_table(tables: Sequence[QTable]) -> QTable:
    """The mean of independently trained tables: each pair's value averaged over the tables that tried it (an
    untried pair's 0 is no estimate), its visits averaged over all the tables (rounded). Averaging K learners'
    estimates divides the variance of their noise by K, where one learner's near-equal values are reordered by a
    few unlucky updates.

    Visits are a learner's, not the sum: they decide where the policy backs off to the coarse state
    (`QParams.backoff_visits`), and a rare state that every learner backs off from must stay rare in the mean.
    Summed, a state each of three learners had tried 9 times counted 27 and the mean acted on its few noisy exact
    values; seed 0's mean scored 1.212 on the validation episodes with summed visits, 0.923 with averaged ones
    (`README.md`, session 17)."""
    if not tables:
        raise ValueError("no tables to average")
    out = QTable()
    pairs = sorted({(s, a.value) for t in tables for s, row in t.values.items() for a in row})
    for state, name in pairs:
        action = ActionKind(name)
        have = [t for t in tables if action in t.values.get(state, {})]
        tried = [t for t in have if t.n(state, action) > 0] or have
        out.set(state, action, float(np.mean([t.q(state, action) for t in tried])),
                visits=round(sum(t.n(state, action) for t in tables) / len(tables)))
    return out


def q_update(q: float, reward: float, next_max: float, *, alpha: float, gamma: float, done: bool,
             minutes: int = 1) -> float:
    """One (semi-Markov) Q-learning step: Q ← Q + α (r + γ^k max Q(s′) − Q) for a step that lasted k minutes,
    with no bootstrap at the end of an episode. Discounting by the step's duration keeps a string of short
    waits from looking cheaper than one long action that works."""
    target = reward if done else reward + gamma ** max(minutes, 1) * next_max
    return q + alpha * (target - q)


class QLearningPolicy:
    """The learned policy. `explore=False` makes it greedy (evaluation); `learning=False` freezes the table."""

    name = "qlearning"

    def __init__(self, table: QTable | None = None, params: QParams | None = None, *, explore: bool = True,
                 learning: bool = True, episodes: int = 0) -> None:
        self.table = table if table is not None else QTable()
        self.params = params or QParams()
        self.explore = explore
        self.learning = learning
        self.episodes = episodes

    @property
    def epsilon(self) -> float:
        p = self.params
        return max(p.epsilon_min, p.epsilon * p.epsilon_decay ** self.episodes) if self.explore else 0.0

    def values(self, state: str, allowed: Sequence[ActionKind]) -> dict[ActionKind, float]:
        """Q-values the policy acts on: the exact state's, or the whole coarse state's row while the exact state
        has been tried fewer than `backoff_visits` times over the allowed actions (values from one level are
        compared with each other only: a rare state's few estimates are not weighed against pooled ones)."""
        return self.table.row(self._acting_key(state, allowed), allowed)

    def _acting_key(self, state: str, allowed: Sequence[ActionKind]) -> str:
        general = coarse(state)
        if general is not None and self.params.backoff_visits:
            here = sum(self.table.n(state, a) for a in allowed)
            there = sum(self.table.n(general, a) for a in allowed)
            if here < self.params.backoff_visits and there > here:
                return general
        return state

    def choose(self, obs: Observation, allowed: Sequence[ActionKind], rng: np.random.Generator) -> Choice:
        if not allowed:
            raise ValueError("no action allowed")
        state = encode(obs)
        key = self._acting_key(state, allowed)
        row = self.table.row(key, allowed)
        tries = {a: self.table.n(key, a) for a in allowed}
        fewest = min(tries.values())
        if self.explore and fewest < self.params.min_tries and max(tries.values()) > 0:
            # Rewards can be positive (recovery), so an untried action's 0 may sit below a mediocre tried one and
            # never be tried greedily: while exploring, every allowed action gets `min_tries` tries in a state
            # (the least-tried first) before ε-greedy takes over.
            least = [a for a in allowed if tries[a] == fewest]
            action = least[int(rng.integers(len(least)))]
            return Choice(action, f"trying {action.value} (tried {fewest} times) in state {key}", row, explored=True)
        if self.explore and rng.random() < self.epsilon:
            action = allowed[int(rng.integers(len(allowed)))]
            return Choice(action, f"exploring (ε={self.epsilon:.3f})", row, explored=True)
        best = max(row.values())
        ties = [a for a in allowed if row[a] == best]
        action = ties[int(rng.integers(len(ties)))] if len(ties) > 1 else ties[0]
        return Choice(action, f"highest Q-value ({best:.2f}) in state {state}", row)

    def learn(self, t: Transition) -> Update | None:
        if not self.learning:
            return None
        general = coarse(t.state)
        if general is not None:
            next_general = None if t.next_state is None else (coarse(t.next_state) or t.next_state)
            self._update(general, t, next_general)
        before, after = self._update(t.state, t, t.next_state)
        return Update(before, after)

    def _update(self, state: str, t: Transition, next_state: str | None) -> tuple[float, float]:
        before = self.table.q(state, t.action)
        next_max = 0.0
        if not t.done and next_state is not None:
            # The value the policy will act on next (backed off where the exact state is barely known).
            next_max = max(self.values(next_state, t.allowed_next).values()) if t.allowed_next \
                else self.table.max_q(next_state, ())
        alpha = max(self.params.alpha, 1.0 / (self.table.n(state, t.action) + 1))
        after = q_update(before, t.reward, next_max, alpha=alpha, gamma=self.params.gamma, done=t.done,
                         minutes=t.minutes)
        self.table.set(state, t.action, after)
        return before, after

    def end_episode(self) -> None:
        self.episodes += 1
