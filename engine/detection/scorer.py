"""Per-stream anomaly scores in [0, 1] (higher = more anomalous), streaming and reproducible.

Two methods share the features (`engine.detection.features`) and the likelihood / alert stages
(`engine.detection.likelihood`); they differ in how a point's *surprise* is measured:

- ``"likelihood"`` (default, the best on NAB): two channels, the level's and the rate of change's robust
  z-scores, each explained away by the seasonal residual (``min(z, z_season)``: what yesterday or the day
  before showed at about the same time is not surprising); each channel gets its own anomaly likelihood and
  the more unlikely one counts.
- ``"iforest"``: an Isolation Forest over the same features, refitted on a schedule without learning from
  the points it flagged (`engine.detection.iforest`), through the same likelihood and alert stages.

A point's score uses only itself and the points before it. `advance` is the one pure function behind
everything here: ``advance(spec, state, values) -> (scores, state)``; scoring a series in one call or
minute by minute, carrying the state, gives the same scores. Thresholding is a separate stage
(`engine.detection.threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from engine.detection.features import FeatureParams, FeatureState, advance_features, infer_period
from engine.detection.iforest import ForestParams, ForestState, block_bounds, forest_raw, maybe_refit, remember
from engine.detection.likelihood import (
    AlertParams,
    AlertState,
    LikelihoodParams,
    LikelihoodState,
    advance_alerts,
    advance_likelihood,
    surprise_to_raw,
)
from engine.detection.threshold import Threshold

METHODS: tuple[str, ...] = ("likelihood", "iforest")


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    """Hyper-parameters, chosen once for every stream, never per series.

    Windows are in points, sized for CloudWatch's 5-minute metrics: ``features.window`` and
    ``likelihood.window`` = 2016 (a week: several daily cycles in the reference, yet a regime change is the
    new normal within a week); the season is a day (from the timestamps), two previous days, +-1 point.
    HTM's own values: 10-point averaging, red/yellow tails 1e-5/1e-3, 5 % spatial tolerance. The
    refractory (150 points, half a day) is CAD-OSE's rest period for a file of NAB's usual length. On the
    NAB AWS subset (standard 73.7 with these values) moving any one window to 0.5x-2x, the scale floor to
    0.1-0.3, the tolerance to 2-10 % or the refractory to 100-200 points keeps the standard score within
    72.1-75.3; the averaging window (8: 71.4, 15: 68.8) and the seasonal jitter (0: 70.1) matter most.
    """

    features: FeatureParams = field(default_factory=FeatureParams)
    likelihood: LikelihoodParams = field(default_factory=LikelihoodParams)
    alerts: AlertParams = field(default_factory=AlertParams)
    forest: ForestParams = field(default_factory=ForestParams)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Everything that decides a stream's scores besides its values: method, season, seed, config."""

    method: str = "likelihood"
    period: int | None = None
    seed: int = 0
    config: ScorerConfig = field(default_factory=ScorerConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.period is not None and self.period < 2:
            raise ValueError(f"period must be at least 2 points or None, got {self.period}")

    @property
    def feature_params(self) -> FeatureParams:
        return replace(self.config.features, period=self.period)


@dataclass(frozen=True, slots=True)
class StreamState:
    """What one stream carries from one call to the next."""

    features: FeatureState
    channels: tuple[LikelihoodState, ...]
    alerts: AlertState
    forest: ForestState

    @property
    def seen(self) -> int:
        """Points consumed so far."""
        return self.features.seen

    @classmethod
    def empty(cls, spec: StreamSpec) -> StreamState:
        n_channels = 2 if spec.method == "likelihood" else 1
        return cls(FeatureState.empty(), tuple(LikelihoodState.empty() for _ in range(n_channels)),
                   AlertState.empty(), ForestState.empty())


def advance(spec: StreamSpec, state: StreamState, values: np.ndarray) -> tuple[np.ndarray, StreamState]:
    """Scores of the next ``values`` of the stream in [0, 1], and the state after them. Pure."""
    x = _as_values(values)
    cfg = spec.config
    feats, fstate = advance_features(spec.feature_params, state.features, x)
    if spec.method == "likelihood":
        tails = []
        channels = []
        for surprise, before in zip((feats.level, feats.rate), state.channels, strict=True):
            raw = surprise_to_raw(np.minimum(surprise, feats.season), cfg.likelihood.raw_scale)
            tail, after = advance_likelihood(cfg.likelihood, before, raw)
            tails.append(tail)
            channels.append(after)
        tail = np.min(tails, axis=0) if len(x) else np.empty(0)
        scores, _, astate = advance_alerts(cfg.alerts, state.alerts, tail, x)
        return scores, StreamState(fstate, tuple(channels), astate, state.forest)
    return _advance_forest(spec, state, fstate, feats.matrix(), x)


def _advance_forest(spec: StreamSpec, state: StreamState, fstate: FeatureState, rows: np.ndarray,
                    x: np.ndarray) -> tuple[np.ndarray, StreamState]:
    """The iforest method: block by block between refits, because a refit needs the flags before it."""
    cfg = spec.config
    forest, (cstate,), astate = state.forest, state.channels, state.alerts
    out = np.empty(len(x))
    for a, b in block_bounds(state.seen, len(x), cfg.forest.refit_every):
        forest = maybe_refit(cfg.forest, forest, state.seen + a, spec.seed)
        tail, cstate = advance_likelihood(cfg.likelihood, cstate, forest_raw(forest, rows[a:b]))
        out[a:b], shaped, astate = advance_alerts(cfg.alerts, astate, tail, x[a:b])
        forest = remember(cfg.forest, forest, rows[a:b], shaped)  # silenced anomalies stay out of training too
    return out, StreamState(fstate, (cstate,), astate, forest)


def _as_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"expected one series of values (1-D, or one column), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite numbers (no NaN or infinity)")
    return x


def score_series(values: Sequence[float] | np.ndarray, timestamps: Sequence[object] | np.ndarray | None = None,
                 *, method: str = "likelihood", period: int | Literal["auto"] | None = "auto", seed: int = 0,
                 config: ScorerConfig | None = None) -> np.ndarray:
    """Anomaly score in [0, 1] of every point of one series, each from itself and its past only.

    ``period="auto"`` takes a day's worth of points from the timestamps' sampling interval (no seasonal
    channel without timestamps); an int sets it; None switches seasonality off.
    """
    if period == "auto":
        period = infer_period(timestamps)
    spec = StreamSpec(method, period, seed, config or ScorerConfig())
    scores, _ = advance(spec, StreamState.empty(spec), values)
    return scores


class AnomalyScorer(BaseEstimator):
    """scikit-learn-style scorer of one metric stream.

    ``fit(X)`` consumes ``X`` as the stream's history; ``score_samples(X)`` scores ``X`` as the points that
    follow it (without remembering them); ``update(X)`` scores them *and* remembers them, for scoring a stream
    chunk by chunk. ``decision_function`` and ``predict`` apply ``threshold`` (`engine.detection.threshold`).
    Higher scores are more anomalous.
    """

    def __init__(self, method: str = "likelihood", *, period: int | None = None, seed: int = 0,
                 threshold: float = 0.5, config: ScorerConfig | None = None) -> None:
        self.method = method
        self.period = period
        self.seed = seed
        self.threshold = threshold
        self.config = config

    def _spec(self) -> StreamSpec:
        return StreamSpec(self.method, self.period, self.seed, self.config or ScorerConfig())

    def fit(self, X: Sequence[float] | np.ndarray, y: object = None) -> AnomalyScorer:  # noqa: N803
        """Consume ``X`` (may be empty) as the history of the stream. Returns self."""
        spec = self._spec()
        self.spec_ = spec
        _, self.state_ = advance(spec, StreamState.empty(spec), X)
        self.n_seen_ = self.state_.seen
        return self

    def score_samples(self, X: Sequence[float] | np.ndarray) -> np.ndarray:  # noqa: N803
        """Scores in [0, 1] of ``X`` as the continuation of the fitted stream; the state is not changed."""
        check_is_fitted(self, "state_")
        scores, _ = advance(self.spec_, self.state_, X)
        return scores

    def update(self, X: Sequence[float] | np.ndarray) -> np.ndarray:  # noqa: N803
        """Score ``X`` as the next points of the stream and remember them."""
        check_is_fitted(self, "state_")
        scores, self.state_ = advance(self.spec_, self.state_, X)
        self.n_seen_ = self.state_.seen
        return scores

    def decision_function(self, X: Sequence[float] | np.ndarray) -> np.ndarray:  # noqa: N803
        """Score minus threshold: zero or more means an alert."""
        return self.score_samples(X) - self.threshold

    def predict(self, X: Sequence[float] | np.ndarray) -> np.ndarray:  # noqa: N803
        """1 where the score reaches the threshold, else 0."""
        return Threshold(self.threshold).alerts(self.score_samples(X)).astype(int)
