"""Isolation Forest as a streaming surprise channel, retrained on a schedule without learning from alerts.

The forest sees the engineered features of each point (`Features.matrix`: level, rate of change and
seasonal residual z-scores). It is refitted every ``refit_every`` points of the stream (at absolute
indices, so chunked and batch scoring refit at the same places) on the trailing ``train_window`` points,
leaving out every point whose score reached ``flag_level`` (before the refractory silenced it): an anomaly
the detector raised must not become the new normal. Each refit draws its ``random_state`` from
``(seed, refit number)``, so a stream is reproducible from its seed alone.

The forest's score ``s`` (scikit-learn's ``-score_samples``, 0.5 for an average point) becomes the raw
score ``clip(2 s - 1, 0, 1)`` that the likelihood stage then calibrates.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from sklearn.ensemble import IsolationForest

MIN_TRAIN_ROWS = 32


@dataclass(frozen=True, slots=True)
class ForestParams:
    """Isolation Forest settings and its retraining schedule."""

    n_estimators: int = 50
    max_samples: int = 256
    refit_every: int = 576
    train_window: int = 2016
    min_train: int = 256
    flag_level: float = 0.5


@dataclass(frozen=True, slots=True)
class ForestState:
    """The current model, how many refits so far, and the trailing feature rows with their alert flags."""

    model: IsolationForest | None
    refits: int
    rows: np.ndarray
    flagged: np.ndarray

    @classmethod
    def empty(cls, n_features: int = 3) -> ForestState:
        return cls(None, 0, np.empty((0, n_features)), np.empty(0, dtype=bool))


def block_bounds(seen: int, n: int, every: int) -> list[tuple[int, int]]:
    """Split ``n`` new points (the first at absolute index ``seen``) at absolute multiples of ``every``."""
    cuts = [c - seen for c in range(((seen // every) + 1) * every, seen + n, every)]
    edges = [0, *cuts, n]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def maybe_refit(params: ForestParams, state: ForestState, at: int, seed: int) -> ForestState:
    """Refit when ``at`` (absolute index of the next point) is on the schedule and enough clean rows exist."""
    if at % params.refit_every or at < params.min_train:
        return state
    clean = state.rows[~state.flagged]
    if len(clean) < MIN_TRAIN_ROWS:
        return state
    random_state = int(np.random.default_rng([seed, state.refits]).integers(2**31 - 1))
    model = IsolationForest(n_estimators=params.n_estimators, max_samples=min(params.max_samples, len(clean)),
                            random_state=random_state).fit(clean)
    return ForestState(model, state.refits + 1, state.rows, state.flagged)


def forest_raw(state: ForestState, rows: np.ndarray) -> np.ndarray:
    """Raw surprise in [0, 1] of feature rows under the current model (0 before the first fit)."""
    if state.model is None or len(rows) == 0:
        return np.zeros(len(rows))
    return np.clip(2.0 * -state.model.score_samples(rows) - 1.0, 0.0, 1.0)


def remember(params: ForestParams, state: ForestState, rows: np.ndarray, scores: np.ndarray) -> ForestState:
    """Append scored rows (flagged where their score reached ``flag_level``) to the training window."""
    keep = params.train_window
    all_rows = np.vstack([state.rows, rows])[-keep:]
    flags = np.concatenate([state.flagged, scores >= params.flag_level])[-keep:]
    return ForestState(state.model, state.refits, all_rows, flags)
