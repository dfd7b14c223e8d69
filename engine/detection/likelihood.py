"""From per-point surprise to an alert-ready anomaly score: anomaly likelihood, novelty, refractory period.

The ideas are Numenta's (HTM's *anomaly likelihood*, its NAB detector's *spatial anomaly*) and
CAD-OSE's *rest period*, rebuilt on trailing windows so that they stream exactly:

1. ``raw = 1 - exp(-surprise / raw_scale)`` maps a robust z-like surprise into [0, 1).
2. The raw score is averaged over the last ``average_window`` points; the *likelihood* is how far that
   average sits in the upper tail of a Gaussian fitted to the averages of the trailing ``window`` points
   (a sustained change of behaviour, not a single noisy point, is what is unlikely). The result is kept as
   a tail probability ``q`` (HTM's ``1 - likelihood``).
3. HTM's filter keeps only the first point of a run in the red zone (``q <= 1e-5``); later points of the
   run are set to the yellow level (``q = 1e-3``), so one event is one alert.
4. The score is ``log(q + 1e-10) / log(1e-10)`` (HTM's log-likelihood: ``q = 1e-5`` scores 0.5).
5. A value more than ``spatial_tolerance`` of the trailing range beyond that range's max or min scores 1
   (once ``spatial_min_obs`` points are known: a range of a handful of points means nothing).
6. After an alert (a score of at least ``refractory_level``), the next ``refractory`` points score 0: the
   operator already has the alert, and repeats would only cost false positives. Silenced points do not
   extend the silence, so a stream raises at most one alert per ``refractory + 1`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr

from engine.detection.features import RunningSums, trailing_extremes

RED_TAIL = 1e-5  # HTM redThreshold 0.99999
YELLOW_TAIL = 1e-3  # HTM yellowThreshold 0.999
LOG_FLOOR = 1e-10


@dataclass(frozen=True, slots=True)
class LikelihoodParams:
    """Anomaly-likelihood settings (steps 1-2 of the module docstring)."""

    raw_scale: float = 10.0
    average_window: int = 10
    window: int = 2016
    min_obs: int = 100
    variance_floor: float = 1e-4


@dataclass(frozen=True, slots=True)
class LikelihoodState:
    """The last raw scores (for the moving average) and the running sums of the averages."""

    raw: np.ndarray
    sums: RunningSums

    @classmethod
    def empty(cls) -> LikelihoodState:
        return cls(np.empty(0), RunningSums.empty())


def surprise_to_raw(surprise: np.ndarray, raw_scale: float) -> np.ndarray:
    """``1 - exp(-s / raw_scale)`` for ``s >= 0``: 0 for no surprise, towards 1 for a huge one."""
    return -np.expm1(-np.maximum(surprise, 0.0) / raw_scale)


def advance_likelihood(params: LikelihoodParams, state: LikelihoodState,
                       raw: np.ndarray) -> tuple[np.ndarray, LikelihoodState]:
    """Upper-tail probability of each new point's averaged raw score, and the state after them.

    0.5 (no opinion) until ``min_obs`` averages have been seen.
    """
    k = params.average_window
    ext = np.concatenate([state.raw, raw])
    padded = np.concatenate([np.full(k - 1, np.nan), ext])
    windows = sliding_window_view(padded, k)[-len(raw):] if len(raw) else np.empty((0, k))
    average = np.nanmean(windows, axis=1) if len(raw) else np.empty(0)
    count, mean, var, sums = state.sums.extend(average, params.window)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (average - mean) / np.sqrt(np.fmax(var, params.variance_floor))
    tail = ndtr(-np.maximum(np.nan_to_num(z, nan=0.0), 0.0))
    tail = np.where(count >= params.min_obs, tail, 0.5)
    return tail, LikelihoodState(ext[-(k - 1):].copy() if k > 1 else np.empty(0), sums)


@dataclass(frozen=True, slots=True)
class AlertParams:
    """Alert shaping settings (steps 3-6 of the module docstring)."""

    spatial_tolerance: float = 0.05
    spatial_window: int = 8640
    spatial_min_obs: int = 100
    refractory: int = 150
    refractory_level: float = 0.6


@dataclass(frozen=True, slots=True)
class AlertState:
    """The previous tail probability, the trailing values (for novelty), points still to keep quiet."""

    last_tail: float
    values: np.ndarray
    quiet: int

    @classmethod
    def empty(cls) -> AlertState:
        return cls(1.0, np.empty(0), 0)


def advance_alerts(params: AlertParams, state: AlertState, tail: np.ndarray,
                   x: np.ndarray) -> tuple[np.ndarray, np.ndarray, AlertState]:
    """Final scores in [0, 1] of the new points, their scores before the refractory, and the state after."""
    n = len(x)
    if n == 0:
        return np.empty(0), np.empty(0), state
    previous = np.concatenate([[state.last_tail], tail[:-1]])
    filtered = np.where((tail <= RED_TAIL) & (previous <= RED_TAIL), YELLOW_TAIL, tail)
    score = np.clip(np.log(filtered + LOG_FLOOR) / np.log(LOG_FLOOR), 0.0, 1.0)

    ext_x = np.concatenate([state.values, x])
    hi, lo = trailing_extremes(ext_x, n, params.spatial_window)
    span = hi - lo
    history = np.minimum(len(state.values) + np.arange(n), params.spatial_window)
    with np.errstate(invalid="ignore"):
        novel = (span > 0) & ((x > hi + params.spatial_tolerance * span) | (x < lo - params.spatial_tolerance * span))
    novel &= history >= params.spatial_min_obs
    score = np.where(novel, 1.0, score)

    final, quiet = refractory(score, state.quiet, params.refractory, params.refractory_level)
    return final, score, AlertState(float(tail[-1]), ext_x[-params.spatial_window:].copy(), quiet)


def refractory(score: np.ndarray, quiet: int, length: int, level: float) -> tuple[np.ndarray, int]:
    """Zero the ``length`` points after each alert (a score of at least ``level``) that is not itself silenced.

    ``quiet`` is how many leading points are still silenced by an earlier alert; returns the scores and the
    points still to silence after them.
    """
    n = len(score)
    silenced = np.zeros(n, dtype=bool)
    silenced[:quiet] = True
    free_from = quiet
    for i in np.flatnonzero(score >= level):
        if i >= free_from and length > 0:
            silenced[i + 1:i + 1 + length] = True
            free_from = i + 1 + length
    return np.where(silenced, 0.0, score), max(0, free_from - n)
