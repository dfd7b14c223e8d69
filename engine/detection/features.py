"""Streaming feature engineering for one metric stream: level, rate of change, seasonal residual.

Every feature of the point at absolute index ``t`` is a function of that point and the points before it
only, and of nothing else: the statistics are computed over trailing windows whose *contents* alone decide
the result (order statistics through pandas' rolling skiplist, sums through cumulative sums anchored at
the start of the stream). That is what makes a stream scored chunk by chunk, carrying a `FeatureState`,
give exactly the same numbers as the same stream scored in one batch.

Features (all "higher = stranger"):

- ``level``: robust z-score of the value against the trailing ``window`` values (median and IQR, with a
  fraction of the trailing standard deviation as a floor when the IQR collapses on quantised series).
- ``rate``: one-sided robust z-score of ``|x_t - x_{t-1}|`` against its own trailing window.
- ``season``: one-sided robust z-score of the seasonal residual ``min |x_t - x_{t - d P + j}|`` over the
  previous ``cycles`` periods ``P`` (a day) with a ``jitter`` of a few points: a value that a previous day
  already showed at about the same time is explained. ``inf`` while nothing can explain it yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_REFERENCE = 30  # trailing observations needed before a z-score means anything
SMALL_CHUNK = 32  # up to this many new points, window statistics are computed directly, not by rolling


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """How features are computed; see the module docstring."""

    window: int = 2016
    period: int | None = None
    cycles: int = 2
    jitter: int = 1
    scale_floor: float = 0.2

    def max_lag(self) -> int:
        """Furthest point back that the seasonal residual looks at (0 without seasonality)."""
        return self.cycles * self.period + self.jitter if self.period else 0


@dataclass(frozen=True, slots=True)
class RunningSums:
    """Cumulative (count, sum, sum of squares) of a stream, anchored at its first point.

    ``cum`` holds the cumulative rows for the last ``window + 1`` positions; its first row is the zero
    row before the stream while the stream is shorter than that. Values are shifted by ``origin`` so that
    large-magnitude metrics keep their precision.
    """

    cum: np.ndarray
    origin: float = 0.0

    @classmethod
    def empty(cls, origin: float = 0.0) -> RunningSums:
        return cls(np.zeros((1, 3)), origin)

    def extend(self, values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, RunningSums]:
        """Count, mean and sample variance over the ``window`` points *before* each new value, and the new sums.

        NaN values are skipped (they count for nothing).
        """
        valid = ~np.isnan(values)
        v = np.where(valid, values - self.origin, 0.0)
        inc = np.column_stack([valid.astype(float), v, v * v])
        full = np.cumsum(np.vstack([self.cum[-1:], inc]), axis=0)
        full = np.vstack([self.cum[:-1], full])
        idx = np.arange(len(self.cum) - 1, len(full) - 1)  # row of the cumulative sum before each new value
        start = np.maximum(idx - window, 0)
        total = full[idx] - full[start]
        count = total[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total[:, 1] / count + self.origin
            var = (total[:, 2] - total[:, 1] ** 2 / count) / (count - 1)
        var = np.where(count > 1, np.maximum(var, 0.0), np.nan)
        return count, mean, var, RunningSums(full[-(window + 1):].copy(), self.origin)


def trailing_quantiles(ext: np.ndarray, n_new: int, window: int, qs: Sequence[float]) -> np.ndarray:
    """Order-statistic quantiles (``'lower'``) of the ``window`` values before each of the last ``n_new`` points.

    ``ext`` is the retained history followed by the new points; NaNs are skipped. Shape ``(len(qs), n_new)``.
    """
    if n_new == 0:
        return np.empty((len(qs), 0))
    if n_new <= SMALL_CHUNK:
        out = np.full((len(qs), n_new), np.nan)
        for j, raw in enumerate(_windows(ext, n_new, window)):
            w = raw[~np.isnan(raw)]
            if len(w):
                # pandas' rule for the 'lower' order statistic: index int(q * (nobs - 1))
                ks = [int(q * (len(w) - 1)) for q in qs]
                out[:, j] = np.partition(w, ks)[ks]
        return out
    rolling = pd.Series(ext).shift(1).rolling(window, min_periods=1)
    return np.stack([rolling.quantile(q, interpolation="lower").to_numpy()[-n_new:] for q in qs])


def trailing_extremes(ext: np.ndarray, n_new: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Max and min of the ``window`` values before each of the last ``n_new`` points of ``ext`` (NaN if none)."""
    if n_new <= SMALL_CHUNK:
        pairs = [(np.max(w), np.min(w)) if len(w) else (np.nan, np.nan) for w in _windows(ext, n_new, window)]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rolling = pd.Series(ext).shift(1).rolling(window, min_periods=1)
    return rolling.max().to_numpy()[-n_new:], rolling.min().to_numpy()[-n_new:]


def _windows(ext: np.ndarray, n_new: int, window: int) -> list[np.ndarray]:
    """The ``window`` values before each of the last ``n_new`` points of ``ext`` (fewer at the start)."""
    base = len(ext) - n_new
    return [ext[max(0, i - window):i] for i in range(base, len(ext))]


def robust_z(values: np.ndarray, ext: np.ndarray, count: np.ndarray, var: np.ndarray, *, window: int,
             scale_floor: float) -> np.ndarray:
    """Signed robust z-score of ``values`` (the last points of ``ext``) against their trailing windows.

    NaN where fewer than `MIN_REFERENCE` trailing observations exist or the value itself is NaN.
    """
    n = len(values)
    q1, med, q3 = trailing_quantiles(ext, n, window, (0.25, 0.5, 0.75))
    spread = np.fmax((q3 - q1) / 1.349, scale_floor * np.sqrt(var))
    scale = np.fmax(spread, 1e-6 * (np.abs(med) + 1e-9))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - med) / scale
    return np.where(count >= MIN_REFERENCE, z, np.nan)


def seasonal_residual(ext: np.ndarray, n_new: int, first_index: int, params: FeatureParams) -> np.ndarray:
    """``min |x_t - x_{t - d P + j}|`` over the lags that exist for each of the last ``n_new`` points of ``ext``.

    ``first_index`` is the absolute stream index of the first new point; ``ext`` holds at least
    ``params.max_lag()`` points of history before the new points whenever the stream has them.
    """
    out = np.full(n_new, np.nan)
    if not params.period or n_new == 0:
        return out
    base = len(ext) - n_new
    current = ext[base:]
    absolute = first_index + np.arange(n_new)
    for cycle in range(1, params.cycles + 1):
        for j in range(-params.jitter, params.jitter + 1):
            lag = cycle * params.period + j
            if lag <= 0:
                continue
            pos = np.arange(base, len(ext)) - lag
            ok = (absolute - lag >= 0) & (pos >= 0)
            past = np.full(n_new, np.nan)
            past[ok] = ext[pos[ok]]
            out = np.fmin(out, np.abs(current - past))
    return out


@dataclass(frozen=True, slots=True)
class FeatureState:
    """What a stream must remember between calls to compute the features of its next points."""

    seen: int
    values: np.ndarray  # last max(window, max_lag) values
    rates: np.ndarray  # last `window` |dx|
    residuals: np.ndarray  # last `window` seasonal residuals
    value_sums: RunningSums
    rate_sums: RunningSums
    residual_sums: RunningSums

    @classmethod
    def empty(cls) -> FeatureState:
        nothing = np.empty(0)
        return cls(0, nothing, nothing, nothing, RunningSums.empty(), RunningSums.empty(), RunningSums.empty())


@dataclass(frozen=True, slots=True)
class Features:
    """The features of a chunk of points, one array per feature."""

    level: np.ndarray  # |robust z| of the value
    rate: np.ndarray  # one-sided robust z of |dx|
    season: np.ndarray  # one-sided robust z of the seasonal residual; inf when unexplained

    def matrix(self) -> np.ndarray:
        """The features as an ``(n, 3)`` matrix of ``log1p`` magnitudes, finite (for tree models)."""
        cols = [np.nan_to_num(f, nan=0.0, posinf=1e6) for f in (self.level, self.rate, self.season)]
        return np.log1p(np.column_stack(cols))


def advance_features(params: FeatureParams, state: FeatureState, x: np.ndarray) -> tuple[Features, FeatureState]:
    """Features of the next points ``x`` of the stream, and the state after them."""
    n = len(x)
    if state.seen == 0 and n:
        state = FeatureState(0, state.values, state.rates, state.residuals, RunningSums.empty(float(x[0])),
                             state.rate_sums, state.residual_sums)
    w = params.window
    ext_x = np.concatenate([state.values, x])
    rate = np.abs(np.diff(np.concatenate([state.values[-1:] if state.seen else x[:1], x])))
    ext_rate = np.concatenate([state.rates, rate])
    residual = seasonal_residual(ext_x, n, state.seen, params)
    ext_residual = np.concatenate([state.residuals, residual])

    count, _, var, value_sums = state.value_sums.extend(x, w)
    level = np.abs(robust_z(x, ext_x, count, var, window=w, scale_floor=params.scale_floor))
    count, _, var, rate_sums = state.rate_sums.extend(rate, w)
    rate_z = np.maximum(robust_z(rate, ext_rate, count, var, window=w, scale_floor=params.scale_floor), 0.0)
    count, _, var, residual_sums = state.residual_sums.extend(residual, w)
    season = np.maximum(robust_z(residual, ext_residual, count, var, window=w,
                               scale_floor=params.scale_floor), 0.0)
    season = np.where(np.isnan(season), np.inf, season)

    keep_x = max(w, params.max_lag())
    new_state = FeatureState(state.seen + n, ext_x[-keep_x:].copy(), ext_rate[-w:].copy(),
                             ext_residual[-w:].copy(), value_sums, rate_sums, residual_sums)
    return Features(np.nan_to_num(level, nan=0.0), np.nan_to_num(rate_z, nan=0.0), season), new_state


def infer_period(timestamps: Sequence[object] | np.ndarray | None, *, cycle_seconds: float = 86_400.0,
                 max_period: int = 10_080) -> int | None:
    """Points per day (or per ``cycle_seconds``) from the median sampling interval; None if not usable.

    None when there are no timestamps, fewer than three, a non-positive median step, or a cycle that
    would be shorter than 4 or longer than ``max_period`` points.
    """
    if timestamps is None or len(timestamps) < 3:
        return None
    stamps = pd.to_datetime(pd.Series(timestamps), errors="coerce")
    if stamps.isna().any():
        return None
    step = np.median(np.diff(stamps.to_numpy()).astype("timedelta64[ns]").astype(np.int64)) / 1e9
    if step <= 0:
        return None
    period = round(cycle_seconds / step)
    return int(period) if 4 <= period <= max_period else None
