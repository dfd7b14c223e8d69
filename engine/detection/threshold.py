"""Thresholding, kept apart from scoring: a score becomes an alert when it reaches the threshold.

The scorer never looks at the threshold, so choosing one (per deployment, or per NAB profile over a
corpus) never changes the scores. Raising the threshold can only remove alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5  # the likelihood stage's red level: tail probability 1e-5


@dataclass(frozen=True, slots=True)
class Threshold:
    """Alerts where ``score >= level``."""

    level: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if not 0.0 <= self.level <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.level}")

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of the scores that raise an alert."""
        return np.asarray(scores, dtype=float) >= self.level
