"""Contract of the anomaly scorer: range, no look-ahead, streaming = batch, determinism, thresholds, sklearn API."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from engine.detection.features import FeatureParams, FeatureState, advance_features, infer_period
from engine.detection.iforest import ForestParams, block_bounds
from engine.detection.scorer import METHODS, AnomalyScorer, ScorerConfig, score_series
from engine.detection.threshold import Threshold

# Small windows and an eager forest, so short test series exercise every stage (warm-up, refits, alerts).
FAST = ScorerConfig(forest=ForestParams(n_estimators=8, max_samples=64, refit_every=64, train_window=256,
                                        min_train=64))
FAST = replace(FAST, features=replace(FAST.features, window=200),
               likelihood=replace(FAST.likelihood, window=200, min_obs=20))
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def noisy(n: int, seed: int = 0, period: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1, n)


def series_strategy() -> st.SearchStrategy[np.ndarray]:
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    arbitrary = st.lists(finite, min_size=0, max_size=300).map(np.array)
    constant = st.tuples(finite, st.integers(0, 300)).map(lambda c: np.full(c[1], c[0]))
    spiky = st.tuples(st.integers(1, 300), st.lists(st.integers(0, 299), max_size=5), st.floats(1, 1e6),
                      st.integers(0, 2**16)).map(_spiky)
    return st.one_of(arbitrary, constant, spiky)


def _spiky(args: tuple[int, list[int], float, int]) -> np.ndarray:
    n, spikes, height, seed = args
    x = noisy(n, seed)
    x[[s for s in spikes if s < n]] += height
    return x


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(x=series_strategy(), period=st.sampled_from([None, 5, 48]))
def test_scores_are_in_unit_interval(method: str, x: np.ndarray, period: int | None) -> None:
    scores = score_series(x, method=method, period=period, config=FAST)
    assert scores.shape == x.shape
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(x=series_strategy(), cut=st.integers(0, 300), seed=st.integers(0, 3))
def test_no_look_ahead_prefix_scores_equal_full_scores(method: str, x: np.ndarray, cut: int, seed: int) -> None:
    full = score_series(x, method=method, period=48, seed=seed, config=FAST)
    cut = min(cut, len(x))
    assert np.array_equal(score_series(x[:cut], method=method, period=48, seed=seed, config=FAST), full[:cut])


@pytest.mark.parametrize("method", METHODS)
def test_changing_the_future_never_changes_past_scores(method: str) -> None:
    x = noisy(600)
    y = x.copy()
    y[400:] += 50.0  # a level shift that the first 400 points cannot know about
    a = score_series(x, method=method, period=48, config=FAST)
    b = score_series(y, method=method, period=48, config=FAST)
    assert np.array_equal(a[:400], b[:400])
    assert b[400] == 1.0  # and the shift itself is a clear alert


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunking", ["minute", "random"])
def test_streaming_in_chunks_equals_one_batch(method: str, chunking: str) -> None:
    x = noisy(700, seed=3)
    x[[250, 500]] += [30.0, -25.0]
    batch = score_series(x, method=method, period=48, seed=7, config=FAST)
    scorer = AnomalyScorer(method, period=48, seed=7, config=FAST).fit(x[:0])
    rng = np.random.default_rng(1)
    out, i = [], 0
    while i < len(x):
        k = 1 if chunking == "minute" else int(rng.integers(1, 90))
        out.append(scorer.update(x[i:i + k]))
        i += k
    assert np.array_equal(np.concatenate(out), batch)
    assert scorer.n_seen_ == len(x)


def test_fit_then_score_samples_continues_the_stream_without_remembering() -> None:
    x = noisy(500)
    scorer = AnomalyScorer(period=48, config=FAST)
    assert scorer.fit(x[:300]) is scorer
    first = scorer.score_samples(x[300:])
    assert np.array_equal(first, scorer.score_samples(x[300:]))  # state unchanged
    assert np.array_equal(first, score_series(x, period=48, config=FAST)[300:])
    assert scorer.n_seen_ == 300


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_scores(method: str) -> None:
    x = noisy(500, seed=11)
    a = score_series(x, method=method, period=48, seed=5, config=FAST)
    b = score_series(x, method=method, period=48, seed=5, config=FAST)
    assert np.array_equal(a, b)


def test_forest_depends_on_its_seed() -> None:
    x = noisy(500, seed=11)
    a = score_series(x, method="iforest", period=48, seed=0, config=FAST)
    b = score_series(x, method="iforest", period=48, seed=1, config=FAST)
    assert not np.array_equal(a, b)


@PROPERTY
@given(scores=st.lists(st.floats(0, 1), max_size=200).map(np.array), lo=st.floats(0, 1), hi=st.floats(0, 1))
def test_raising_the_threshold_never_adds_alerts(scores: np.ndarray, lo: float, hi: float) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    low, high = Threshold(lo).alerts(scores), Threshold(hi).alerts(scores)
    assert np.all(low[high])  # every alert at the higher threshold is an alert at the lower one


def test_predict_is_monotone_in_the_threshold() -> None:
    x = noisy(600, seed=2)
    x[[300, 450]] += 40
    scorer = AnomalyScorer(period=48, config=FAST).fit(x[:100])
    counts = [scorer.set_params(threshold=t).predict(x[100:]).sum() for t in np.linspace(0, 1, 21)]
    assert counts == sorted(counts, reverse=True)
    assert np.array_equal(scorer.decision_function(x[100:]) >= 0, scorer.predict(x[100:]).astype(bool))


def test_unfitted_use_raises_not_fitted_error() -> None:
    scorer = AnomalyScorer()
    for call in (scorer.score_samples, scorer.update, scorer.predict, scorer.decision_function):
        with pytest.raises(NotFittedError):
            call(np.zeros(3))


def test_estimator_params_follow_sklearn() -> None:
    scorer = AnomalyScorer("iforest", period=24, seed=3, threshold=0.7)
    twin = clone(scorer)
    assert twin.get_params() == scorer.get_params()
    assert not hasattr(twin, "state_")


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        score_series([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="one series"):
        score_series(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown method"):
        score_series([1.0, 2.0], method="magic")
    with pytest.raises(ValueError, match="threshold"):
        Threshold(1.5)


def test_period_is_a_day_of_samples() -> None:
    five_minutes = pd.date_range("2024-01-01", periods=50, freq="5min")
    assert infer_period(five_minutes) == 288
    assert infer_period(pd.date_range("2024-01-01", periods=50, freq="h")) == 24
    assert infer_period(None) is None
    assert infer_period(pd.date_range("2024-01-01", periods=50, freq="D")) is None  # under 4 points a day


def test_daily_repeats_are_explained_by_the_season() -> None:
    x = 10 + np.random.default_rng(4).normal(0, 0.2, 48 * 8)  # flat, with a spike at the same time every day
    spikes = np.arange(30, len(x), 48)
    x[spikes] += 8.0
    features, _ = advance_features(FeatureParams(window=200, period=48), FeatureState.empty(), x)
    assert np.all(np.isinf(features.season[spikes[:1]]))  # the first day: nothing to explain it yet
    later = spikes[2:]
    assert np.all(features.level[later] > 20)  # far off the level...
    assert np.all(features.season[later] < 0.3 * features.level[later])  # ...but much like yesterday


def test_refits_happen_at_absolute_positions() -> None:
    assert block_bounds(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert block_bounds(6, 5, 4) == [(0, 2), (2, 5)]
    assert block_bounds(8, 2, 4) == [(0, 2)]
