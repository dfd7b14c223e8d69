"""The Numenta Anomaly Benchmark's scoring rules, as numenta/NAB publishes them (v1.1 scorer).

Reimplemented from NAB's `nab/sweeper.py`, `nab/optimizer.py`, `nab/scorer.py`, `nab/runner.py` and
`config/profiles.json` (MIT, Copyright 2014-2024 Numenta Inc.), vectorised with numpy:

- Each labelled anomaly *window* counts once. Its first detection earns
  ``tpWeight * scaledSigmoid(-(right - i + 1) / width) / scaledSigmoid(-1)`` (``tpWeight`` at the window's
  first row, falling towards 0 at its last); later detections in the same window add nothing; a window
  with no detection costs ``fnWeight``.
- Every flagged row outside the windows is a false positive costing
  ``fpWeight * scaledSigmoid(|right_prev - i| / (width_prev - 1))`` relative to the closest preceding
  window (nearly free just after a window, ``-fpWeight`` far from it), or ``-fpWeight`` before any window.
- The first ``min(floor(0.15 n), 0.15 * 5000)`` rows of each file are *probationary*: not scored at all.
- A row is a detection when its anomaly score is ``>= threshold``. One threshold per profile is chosen
  over the whole corpus by sweeping every distinct score (NAB's Sweeper + optimizer; ties go to the
  higher threshold), and the corpus score is the sum of the per-file scores at that threshold.
- Normalisation (runner.normalize): ``100 * (raw - null) / (perfect - null)`` where ``null`` is the raw
  score of the null detector (a constant score, scored the same way) and ``perfect`` is
  ``tpWeight * number of windows`` in the scored files. Scoring a subset (the AWS CloudWatch files)
  therefore normalises over that subset, which is how the per-category tables are published.

Window precision / recall are extras NAB does not print: recall is the share of windows with at least
one detection; precision is the share of *alert events* (runs of consecutive flagged, non-probationary
rows) that begin inside a window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15
_OUTSIDE = -1  # a scored row outside every window
_PROBATION = -2  # a probationary row: never scored


@dataclass(frozen=True, slots=True)
class Profile:
    """A NAB application profile: the weights of true positives, false positives and false negatives."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """One data file: its name, rows and labelled anomaly windows as inclusive row-index ranges."""

    name: str
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """A detector's NAB result on a corpus for one profile, at the profile's optimised threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float
    tp: int
    fp: int
    tn: int
    fn: int
    windows: int
    windows_detected: int
    alerts: int
    alerts_in_windows: int

    @property
    def window_recall(self) -> float:
        """Share of labelled windows with at least one detection."""
        return self.windows_detected / self.windows if self.windows else math.nan

    @property
    def window_precision(self) -> float:
        """Share of alert events (runs of flagged rows) that begin inside a labelled window."""
        return self.alerts_in_windows / self.alerts if self.alerts else math.nan


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``2 * sigmoid(-5 x) - 1``, and exactly -1 past ``x > 3``."""
    x = np.asarray(position, dtype=float)
    inner = 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0
    return np.where(x > 3.0, -1.0, inner)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are never scored: ``min(floor(p n), p * 5000)``."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


def row_weights(n_rows: int, windows: Sequence[tuple[int, int]], profile: Profile,
                probation: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's score if it were flagged, and its window id (-1 outside, -2 probationary).

    Follows `Sweeper.calcSweepScore`: inside a window the row scores as a true positive by its position;
    outside, as a false positive weighted by its distance past the closest preceding window.
    """
    idx = np.arange(n_rows)
    weight = np.full(n_rows, -profile.fp_weight)
    window_id = np.full(n_rows, _OUTSIDE)
    max_tp = float(scaled_sigmoid(-1.0))
    spans = sorted(windows)
    for k, (left, right) in enumerate(spans):
        width = right - left + 1
        inside = idx[left:right + 1]
        weight[left:right + 1] = scaled_sigmoid(-(right - inside + 1) / width) * profile.tp_weight / max_tp
        window_id[left:right + 1] = k
        stop = spans[k + 1][0] if k + 1 < len(spans) else n_rows
        after = idx[right + 1:stop]
        # NAB divides by (width - 1); a one-row window would divide by zero there: take the limit (-1).
        position = np.abs(right - after) / (width - 1) if width > 1 else np.full(len(after), np.inf)
        weight[right + 1:stop] = scaled_sigmoid(position) * profile.fp_weight
    window_id[:probation] = _PROBATION
    return weight, window_id


def sweep(corpus: Sequence[LabelledSeries], scores: Sequence[np.ndarray], profile: Profile,
          probation_percent: float = PROBATION_PERCENT) -> tuple[np.ndarray, np.ndarray]:
    """NAB's threshold sweep over a whole corpus: (thresholds descending, raw score at each).

    The first threshold is 1.1 (nothing flagged: every window a false negative); then every distinct
    anomaly score, with the raw score of flagging every row whose anomaly score is at least that value.
    """
    a_parts, w_parts, id_parts = [], [], []
    offset = 0
    for series, raw_scores in zip(corpus, scores, strict=True):
        anomaly = _checked(series, raw_scores)
        weight, window_id = row_weights(len(series), series.windows, profile,
                                        probation_length(len(series), probation_percent))
        keep = window_id != _PROBATION
        ids = window_id[keep]
        a_parts.append(anomaly[keep])
        w_parts.append(weight[keep])
        id_parts.append(np.where(ids >= 0, ids + offset, _OUTSIDE))
        offset += len(series.windows)
    return _sweep_arrays(np.concatenate(a_parts), np.concatenate(w_parts), np.concatenate(id_parts), profile)


def _checked(series: LabelledSeries, anomaly: np.ndarray) -> np.ndarray:
    a = np.asarray(anomaly, dtype=float)
    if a.shape != (len(series),):
        raise ValueError(f"{series.name}: {a.shape[0] if a.ndim else 0} scores for {len(series)} rows")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{series.name}: anomaly scores must be finite")
    return a


def _sweep_arrays(anomaly: np.ndarray, weight: np.ndarray, window_id: np.ndarray,
                  profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """`Sweeper.calcScoreByThreshold` over concatenated non-probationary rows, in O(n log n)."""
    order = np.argsort(-anomaly, kind="stable")
    a, w, ids = anomaly[order], weight[order], window_id[order]
    windows_present = np.unique(ids[ids >= 0])
    base = -profile.fn_weight * len(windows_present)
    delta = np.where(ids == _OUTSIDE, w, 0.0)
    # A window's part is max(-fnWeight, best weight among its flagged rows): each row adds the increase
    # of that running maximum. Group rows by window (keeping sweep order) and take running maxima.
    tp_rows = np.flatnonzero(ids >= 0)
    if len(tp_rows):
        by_window = tp_rows[np.argsort(ids[tp_rows], kind="stable")]
        group = np.searchsorted(windows_present, ids[by_window])
        # Weights inside windows lie in (0, 1]; offsetting each group by 10 lets one global running
        # maximum act as a per-group one.
        running = np.maximum.accumulate(w[by_window] + 10.0 * group) - 10.0 * group
        first = np.r_[True, group[1:] != group[:-1]]
        previous = np.where(first, -profile.fn_weight, np.r_[0.0, running[:-1]])
        delta[by_window] = running - previous
    total = base + np.cumsum(delta)
    last_of_value = np.r_[a[1:] != a[:-1], True] if len(a) else np.zeros(0, dtype=bool)
    thresholds = np.r_[1.1, a[last_of_value]]
    raw = np.r_[base, total[last_of_value]]
    return thresholds, raw


def optimize_threshold(corpus: Sequence[LabelledSeries], scores: Sequence[np.ndarray], profile: Profile,
                       probation_percent: float = PROBATION_PERCENT) -> tuple[float, float]:
    """The corpus-wide threshold with the best raw score (ties: the higher threshold), and that score."""
    thresholds, raw = sweep(corpus, scores, profile, probation_percent)
    best = int(np.argmax(raw))
    return float(thresholds[best]), float(raw[best])


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file scored at a fixed threshold (NAB's per-file rows of the results CSV, plus windows)."""

    name: str
    raw: float
    tp: int
    fp: int
    tn: int
    fn: int
    windows: int
    windows_detected: int
    alerts: int
    alerts_in_windows: int


def score_file(series: LabelledSeries, anomaly: np.ndarray, threshold: float, profile: Profile,
               probation_percent: float = PROBATION_PERCENT) -> FileResult:
    """Raw NAB score and counts of one file when rows scoring ``>= threshold`` are detections."""
    anomaly = _checked(series, anomaly)
    weight, window_id = row_weights(len(series), series.windows, profile,
                                    probation_length(len(series), probation_percent))
    scored = window_id != _PROBATION
    flagged = (anomaly >= threshold) & scored
    inside = window_id >= 0
    raw = float(weight[flagged & ~inside].sum())
    present = np.unique(window_id[inside])
    detected = 0
    for k in present:
        hits = flagged & (window_id == k)
        if hits.any():
            detected += 1
            raw += float(weight[hits].max())
        else:
            raw -= profile.fn_weight
    onsets = flagged & ~np.r_[False, flagged[:-1]]
    return FileResult(
        name=series.name, raw=raw,
        tp=int((flagged & inside).sum()), fp=int((flagged & ~inside).sum()),
        tn=int((scored & ~flagged & ~inside).sum()), fn=int((scored & ~flagged & inside).sum()),
        windows=len(present), windows_detected=detected,
        alerts=int(onsets.sum()), alerts_in_windows=int((onsets & inside).sum()),
    )


def score_corpus(corpus: Sequence[LabelledSeries], scores: Sequence[np.ndarray], profile: Profile,
                 probation_percent: float = PROBATION_PERCENT) -> ProfileResult:
    """Optimise the threshold over the corpus, score every file at it, normalise (null 0, perfect 100)."""
    threshold, _ = optimize_threshold(corpus, scores, profile, probation_percent)
    files = [score_file(s, a, threshold, profile, probation_percent) for s, a in zip(corpus, scores, strict=True)]
    null = null_score(corpus, profile, probation_percent)
    perfect = profile.tp_weight * sum(len(s.windows) for s in corpus)
    raw = sum(f.raw for f in files)
    return ProfileResult(
        profile=profile.name, threshold=threshold, raw=raw, null=null, perfect=perfect,
        score=normalise(raw, null, perfect),
        tp=sum(f.tp for f in files), fp=sum(f.fp for f in files),
        tn=sum(f.tn for f in files), fn=sum(f.fn for f in files),
        windows=sum(f.windows for f in files), windows_detected=sum(f.windows_detected for f in files),
        alerts=sum(f.alerts for f in files), alerts_in_windows=sum(f.alerts_in_windows for f in files),
    )


def null_score(corpus: Sequence[LabelledSeries], profile: Profile,
               probation_percent: float = PROBATION_PERCENT) -> float:
    """Raw score of NAB's null detector (a constant 0.5) at its own optimised threshold."""
    constant = [np.full(len(s), 0.5) for s in corpus]
    threshold, _ = optimize_threshold(corpus, constant, profile, probation_percent)
    return sum(score_file(s, a, threshold, profile, probation_percent).raw for s, a in zip(corpus, constant,
                                                                                          strict=True))


def normalise(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score: 0 for the null detector, 100 for a perfect one."""
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan


def score_all(corpus: Sequence[LabelledSeries], scores: Sequence[np.ndarray],
              profiles: Sequence[Profile] = tuple(PROFILES.values()),
              probation_percent: float = PROBATION_PERCENT) -> dict[str, ProfileResult]:
    """`score_corpus` for every profile."""
    return {p.name: score_corpus(corpus, scores, p, probation_percent) for p in profiles}


def load_corpus(data_dir: Path | str, windows_file: Path | str | None = None) -> list[LabelledSeries]:
    """Every labelled CSV under ``DIR/data`` with its windows from ``DIR/labels/combined_windows.json``.

    Files absent from the windows file are skipped, as NAB's runner does. Window limits must be
    timestamps present in the file (NAB's labeler raises otherwise).
    """
    root = Path(data_dir)
    labels_path = Path(windows_file) if windows_file else root / "labels" / "combined_windows.json"
    with labels_path.open(encoding="utf-8") as f:
        limits: dict[str, list[list[str]]] = json.load(f)
    corpus = []
    for path in sorted((root / "data").rglob("*.csv")):
        key = path.relative_to(root / "data").as_posix()
        if key not in limits:
            continue
        frame = pd.read_csv(path)
        stamps = pd.to_datetime(frame["timestamp"]).to_numpy()
        corpus.append(LabelledSeries(name=key, values=frame["value"].to_numpy(dtype=float),
                                     windows=window_rows(stamps, limits[key], key), timestamps=stamps))
    return corpus


def window_rows(timestamps: np.ndarray, limits: Sequence[Sequence[str]], name: str = "") -> tuple[tuple[int, int], ...]:
    """Window limits (timestamp strings) as inclusive row ranges of a file sorted by time."""
    rows = []
    for start, end in limits:
        ends = []
        for limit in (start, end):
            t = np.datetime64(pd.Timestamp(limit).to_datetime64(), "ns")
            i = int(np.searchsorted(timestamps, t))
            if i >= len(timestamps) or timestamps[i] != t:
                raise ValueError(f"{name}: window limit {limit} is not a timestamp of the file")
            ends.append(i)
        rows.append((ends[0], ends[1]))
    return tuple(sorted(rows))
