"""NAB's scoring rules on hand-made cases, and the vectorised sweep against a plain loop over the rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.nab_scoring import (
    PROFILES,
    LabelledSeries,
    load_corpus,
    optimize_threshold,
    probation_length,
    scaled_sigmoid,
    score_all,
    score_corpus,
    score_file,
    sweep,
)

STANDARD = PROFILES["standard"]


def series(n: int, windows: tuple[tuple[int, int], ...], name: str = "f.csv") -> LabelledSeries:
    return LabelledSeries(name=name, values=np.zeros(n), windows=windows)


def flags(n: int, *rows: int) -> np.ndarray:
    a = np.zeros(n)
    a[list(rows)] = 1.0
    return a


# Two files of 1000 rows (probation = 150 rows each), three windows in all.
CORPUS = [series(1000, ((300, 339), (700, 739)), "a.csv"), series(1000, ((500, 519),), "b.csv")]


def perfect(corpus: list[LabelledSeries]) -> list[np.ndarray]:
    return [flags(len(s), *[left for left, _ in s.windows]) for s in corpus]


def test_profiles_are_numentas() -> None:
    weights = {p.name: (p.tp_weight, p.fp_weight, p.fn_weight) for p in PROFILES.values()}
    assert weights == {"standard": (1.0, 0.11, 1.0), "reward_low_FP_rate": (1.0, 0.22, 1.0),
                       "reward_low_FN_rate": (1.0, 0.11, 2.0)}


def test_scaled_sigmoid_reference_values() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == pytest.approx(0.0)
    assert float(scaled_sigmoid(1.0)) == pytest.approx(-0.98661, abs=1e-5)
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(100_000) == 750


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_perfect_detector_scores_100(profile) -> None:
    assert score_corpus(CORPUS, perfect(CORPUS), profile).score == pytest.approx(100.0)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_null_detector_scores_0(profile, level: float) -> None:
    constant = [np.full(len(s), level) for s in CORPUS]
    result = score_corpus(CORPUS, constant, profile)
    assert result.score == pytest.approx(0.0)
    assert result.null == pytest.approx(-profile.fn_weight * 3)


def test_earlier_detection_in_a_window_scores_more() -> None:
    one = [series(1000, ((300, 339),))]
    start = score_file(one[0], flags(1000, 300), 0.5, STANDARD).raw
    middle = score_file(one[0], flags(1000, 320), 0.5, STANDARD).raw
    end = score_file(one[0], flags(1000, 339), 0.5, STANDARD).raw
    assert start == pytest.approx(1.0)  # the first row of a window earns the full tpWeight
    assert start > middle > end > 0.0


def test_only_the_first_detection_in_a_window_counts() -> None:
    s = series(1000, ((300, 339),))
    assert score_file(s, flags(1000, 310, 311, 330), 0.5, STANDARD).raw == score_file(s, flags(1000, 310), 0.5,
                                                                                      STANDARD).raw


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_a_false_positive_costs_the_profiles_weight(profile) -> None:
    s = series(1000, ((700, 739),))
    clean = score_file(s, flags(1000, 700), 0.5, profile).raw
    with_fp = score_file(s, flags(1000, 700, 400), 0.5, profile)  # before any window: full weight
    assert clean - with_fp.raw == pytest.approx(profile.fp_weight)
    assert with_fp.fp == 1


def test_a_false_positive_just_after_a_window_is_nearly_free() -> None:
    s = series(1000, ((300, 339),))
    base = score_file(s, flags(1000, 300), 0.5, STANDARD).raw
    soon = base - score_file(s, flags(1000, 300, 341), 0.5, STANDARD).raw
    late = base - score_file(s, flags(1000, 300, 900), 0.5, STANDARD).raw
    assert 0 < soon < STANDARD.fp_weight / 5
    assert late == pytest.approx(STANDARD.fp_weight)


def test_a_missed_window_costs_fn_weight() -> None:
    s = series(1000, ((300, 339),))
    for profile in PROFILES.values():
        assert score_file(s, np.zeros(1000), 0.5, profile).raw == -profile.fn_weight


def test_detections_in_probation_are_ignored() -> None:
    s = series(1000, ((300, 339),))
    with_probation_alerts = flags(1000, 0, 10, 149)
    result = score_file(s, with_probation_alerts, 0.5, STANDARD)
    assert result.raw == -1.0 and result.fp == 0
    assert score_file(s, flags(1000, 150), 0.5, STANDARD).fp == 1  # the first row after probation counts


def test_threshold_is_optimised_over_the_whole_corpus() -> None:
    # File a's windows are found at score 0.9, file b's at 0.6; b also has a false positive at 0.8.
    a = flags(1000, 300, 700) * 0.9
    b = flags(1000, 500) * 0.6
    b[900] = 0.8
    threshold, raw = optimize_threshold(CORPUS, [a, b], STANDARD)
    assert threshold == 0.6
    assert raw == pytest.approx(3.0 - STANDARD.fp_weight)
    results = score_all(CORPUS, [a, b])
    assert results["standard"].windows_detected == 3 and results["standard"].fp == 1
    assert results["standard"].window_recall == 1.0
    assert results["standard"].window_precision == pytest.approx(3 / 4)


def _loop_sweep(corpus: list[LabelledSeries], scores: list[np.ndarray], profile) -> list[tuple[float, float]]:
    """NAB's Sweeper written as the plain per-row loop its documentation describes."""
    rows = []
    max_tp = float(scaled_sigmoid(-1.0))
    for s, a in zip(corpus, scores, strict=True):
        probation = probation_length(len(s))
        previous = None
        for i, value in enumerate(a):
            inside = [(k, w) for k, w in enumerate(s.windows) if w[0] <= i <= w[1]]
            if inside:
                k, (left, right) = inside[0]
                weight = float(scaled_sigmoid(-(right - i + 1) / (right - left + 1))) * profile.tp_weight / max_tp
                name: str | None = f"{s.name}|{k}"
            else:
                before = [w for w in s.windows if w[1] < i]
                if before:
                    left, right = before[-1]
                    weight = float(scaled_sigmoid(abs(right - i) / (right - left))) * profile.fp_weight
                else:
                    weight = -profile.fp_weight
                name = None
            previous = name
            if i >= probation:
                rows.append((float(value), weight, previous))
    rows.sort(key=lambda r: -r[0])
    parts: dict[str | None, float] = {r[2]: -profile.fn_weight for r in rows if r[2] is not None}
    fp_total, out, current = 0.0, [], 1.1
    for value, weight, name in rows:
        if value != current:
            out.append((current, fp_total + sum(parts.values())))
            current = value
        if name is None:
            fp_total += weight
        else:
            parts[name] = max(parts[name], weight)
    out.append((current, fp_total + sum(parts.values())))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_sweep_matches_the_row_by_row_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    corpus, scores = [], []
    for f in range(3):
        n = int(rng.integers(40, 400))
        starts = sorted(rng.choice(np.arange(5, n - 30), size=int(rng.integers(0, 4)), replace=False))
        windows, last = [], -1
        for start in starts:
            if start > last + 1:
                windows.append((int(start), int(start + rng.integers(1, 25))))
                last = windows[-1][1]
        corpus.append(series(n, tuple(windows), f"{f}.csv"))
        scores.append(np.round(rng.random(n), 2))  # rounded: many ties between rows
    for profile in PROFILES.values():
        thresholds, raw = sweep(corpus, scores, profile)
        expected = _loop_sweep(corpus, scores, profile)
        np.testing.assert_allclose(thresholds, [t for t, _ in expected])
        np.testing.assert_allclose(raw, [r for _, r in expected], atol=1e-9)
        threshold, best = optimize_threshold(corpus, scores, profile)
        at_threshold = sum(score_file(s, a, threshold, profile).raw for s, a in zip(corpus, scores, strict=True))
        assert at_threshold == pytest.approx(best)


def test_load_corpus_reads_nab_layout(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    stamps = [f"2020-01-01 00:{m:02d}:00" for m in range(0, 60, 5)]
    (tmp_path / "data" / "cat" / "x.csv").write_text(
        "timestamp,value\n" + "".join(f"{t},{i}\n" for i, t in enumerate(stamps)), encoding="utf-8")
    (tmp_path / "data" / "cat" / "unlabelled.csv").write_text("timestamp,value\n", encoding="utf-8")
    windows = {"cat/x.csv": [["2020-01-01 00:20:00.000000", "2020-01-01 00:30:00.000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows), encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert [s.name for s in corpus] == ["cat/x.csv"]
    assert corpus[0].windows == ((4, 6),)
    assert math.isclose(corpus[0].values.sum(), sum(range(12)))

    windows["cat/x.csv"] = [["2020-01-01 00:21:00", "2020-01-01 00:30:00"]]
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows), encoding="utf-8")
    with pytest.raises(ValueError, match="not a timestamp"):
        load_corpus(tmp_path)
