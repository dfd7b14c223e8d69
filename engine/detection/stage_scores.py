"""Streaming anomaly scores for every stage of every pipeline, one minute at a time.

Per stream (pipeline, stage) and metric, an exponentially weighted baseline (mean and variance) gives
a z-score of the newest value *before* the value updates the baseline, so a score only uses the past.
A model per stage kind turns the z-vector into a tail probability: ``method="zmax"`` (the default: the
largest |z| through the two-sided normal tail) or ``method="iforest"`` (Isolation Forest over the
z-vector, refit on a schedule from recent unflagged minutes; the share of its training minutes at least
as strange). The score is that probability in "nines", −log10(p) / 8, clipped to [0, 1]: ordinary noise
scores about 0.05–0.2, a one-in-ten-thousand minute 0.5 (the default alarm level), 1e-8 or rarer 1.
Measured on the twin, zmax raises far fewer false alarms on calm days and is about 25 times faster,
so it is the default; Isolation Forest stays a measured option.

Points scored at or above ``learn_below`` never update baselines or training data, so a long fault
does not become the new normal. An *alarm* is a score at or above ``alarm_at`` for ``confirm``
minutes in a row: thresholding is separate from scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import erfc

from engine.model import METRICS, STAGES, Stage, StageSample

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

M = len(METRICS)
_NANS = (float("nan"),) * M  # dict.get's default per metric, for map()
# Smallest standard deviation per metric: keeps a flat metric (0 errors, fixed workers) from turning
# a tiny wobble into a huge z-score.
FLOOR = np.array([2.0, 2.0, 1.0, 1.0, 0.5, 0.5, 1.0, 2.0, 30.0])
assert len(FLOOR) == M
# ...and relative to the level: a 3% wobble of a 1,000 rows/s throughput is not news.
REL_FLOOR = 0.03
# Metrics with |z| at least this large are named as the evidence of a score.
TOP_Z = 3.0


NINES_FOR_ONE = 8.0


def nines(p_tail: np.ndarray) -> np.ndarray:
    """Map a tail probability to [0, 1]: −log10(p) / 8, so 1e-4 → 0.5 and 1e-8 or rarer → 1."""
    return np.minimum(1.0, -np.log10(np.maximum(p_tail, 1e-300)) / NINES_FOR_ONE)


@dataclass(frozen=True, slots=True)
class StageScore:
    pipeline_id: str
    stage: Stage
    ts: datetime
    score: float
    top: tuple[tuple[str, float], ...]  # the metrics that moved most, as (metric, z)
    alarm: bool = False  # score at or above the alarm threshold for `confirm` minutes in a row
    elevated_since: datetime | None = None  # first minute of the current run of scores >= learn_below


@dataclass(frozen=True, slots=True)
class RowScores:
    """One minute scored as arrays (`StageScorer.score_rows`): per row, its rounded score, alarm, elevation start and
    top metrics; `score(r)` is row r's `StageScore`."""

    ts: datetime
    keys: list[tuple[str, Stage]]
    scores: list[float]
    alarms: np.ndarray  # bool per row
    since: list[datetime | None]
    tops: dict[int, tuple[tuple[str, float], ...]]  # rows with a metric at |z| >= TOP_Z

    def score(self, r: int) -> StageScore:
        pid, stage = self.keys[r]
        return StageScore(pid, stage, self.ts, self.scores[r], self.tops.get(r, ()), bool(self.alarms[r]),
                          self.since[r])


class StageScorer:
    """Fleet-wide streaming scorer. Feed it minutes in time order with `score`."""

    def __init__(self, *, method: str = "zmax", alpha: float = 1 / 60, warmup: int = 60,
                 refit_every: int = 360, train_rows: int = 4096, learn_below: float = 0.25,
                 alarm_at: float = 0.5, confirm: int = 2, n_estimators: int = 100, seed: int = 0) -> None:
        if method not in ("iforest", "zmax"):
            raise ValueError(f"unknown scoring method {method!r}; expected 'iforest' or 'zmax'")
        self.method = method
        self.alpha = alpha
        self.warmup = warmup
        self.refit_every = refit_every
        self.train_rows = train_rows
        self.learn_below = learn_below
        self.alarm_at = alarm_at
        self.confirm = confirm
        self.n_estimators = n_estimators
        self.seed = seed
        self.streams_: dict[tuple[str, Stage], int] = {}
        self.mean_ = np.zeros((0, M))
        self.var_ = np.zeros((0, M))
        self.seen_ = np.zeros(0, dtype=int)
        self.streak_ = np.zeros(0, dtype=int)
        self.elevated_: dict[int, datetime] = {}
        self.buffer_: dict[Stage, list[np.ndarray]] = {s: [] for s in STAGES}
        self.models_: dict[Stage, tuple[IsolationForest, np.ndarray]] = {}
        self.minutes_ = 0
        self.rng_ = np.random.default_rng(seed)

    # -- public -----------------------------------------------------------------------------------
    def score(self, samples: Sequence[StageSample]) -> list[StageScore]:
        """Scores for `samples` (any number of whole minutes, in time order), updating the state."""
        by_ts: dict[datetime, list[StageSample]] = {}
        for s in samples:
            by_ts.setdefault(s.ts, []).append(s)
        out: list[StageScore] = []
        for ts in sorted(by_ts):
            out.extend(self._minute(ts, by_ts[ts]))
        return out

    def rebaseline(self, pipeline_id: str, stage: Stage) -> bool:
        """Restart one stream's baseline after a deliberate change (e.g. twice the workers).

        Flagged minutes never teach the baseline, so a permanent, intended change would otherwise stay
        "anomalous" forever. The stream warms up again like a new one: scores are 0 for `warmup` minutes
        while the baseline learns the new level. False when the stream has not been seen yet.
        """
        i = self.streams_.get((pipeline_id, stage))
        if i is None:
            return False
        self.seen_[i] = 0
        self.streak_[i] = 0
        self.elevated_.pop(i, None)
        return True

    # -- one minute -------------------------------------------------------------------------------
    def _minute(self, ts: datetime, samples: list[StageSample]) -> list[StageScore]:
        x = np.array([list(map(s.values.get, METRICS, _NANS)) for s in samples])  # absent metrics: NaN
        rows = self.score_rows(ts, [(s.pipeline_id, s.stage) for s in samples], x)
        return [rows.score(r) for r in range(len(samples))]

    def score_rows(self, ts: datetime, keys: Sequence[tuple[str, Stage]], x: np.ndarray) -> RowScores:
        """Score one minute given as arrays: a (pipeline, stage) key per row of `x` ([rows, METRICS], NaN where a
        stage does not emit a metric), updating the state exactly as `score` does for the same samples. For callers
        holding the minute as arrays already (the in-memory arena), who build `StageScore`s only for rows they read."""
        get = self.streams_.get
        known = [get(k) for k in keys]
        idx = np.array(known if None not in known else [self._stream(*k) for k in keys])
        mean, var, seen = self.mean_[idx], self.var_[idx], self.seen_[idx]
        z = (x - mean) / np.sqrt(var + FLOOR**2 + (REL_FLOOR * mean) ** 2)
        z = np.where(np.isnan(z) | (seen[:, None] < self.warmup), 0.0, z)
        z = np.minimum(np.maximum(z, -50.0), 50.0)  # np.clip's result (z has no NaN here), without its overhead
        stages = [k[1] for k in keys]
        scores = self._model_scores(z, stages)
        learn = (scores < self.learn_below) | (seen < self.warmup)
        self._update(idx[learn], x[learn])
        if self.method == "iforest":
            trained = learn & (seen >= self.warmup)
            self._remember(z[trained], [st for st, ok in zip(stages, trained, strict=True) if ok])
        self.minutes_ += 1
        if self.method == "iforest" and self.minutes_ % self.refit_every == 0:
            self._refit()
        self.streak_[idx] = np.where(scores >= self.alarm_at, self.streak_[idx] + 1, 0)
        alarms = self.streak_[idx] >= self.confirm
        since = self._elevation(idx, scores, ts)
        absz = np.abs(z)
        moved = np.flatnonzero(absz.max(axis=1) >= TOP_Z)
        tops: dict[int, tuple[tuple[str, float], ...]] = {}
        if len(moved):
            # The three metrics that moved most in each such row, largest |z| first (as argsort orders each row).
            order = np.argsort(-absz[moved], axis=1)[:, :3]
            rows = moved[:, None]
            for r, ks, zs, big in zip(moved.tolist(), order.tolist(), z[rows, order].tolist(),
                                      (absz[rows, order] >= TOP_Z).tolist(), strict=True):
                tops[r] = tuple((METRICS[k], round(v, 2)) for k, v, b in zip(ks, zs, big, strict=True) if b)
        return RowScores(ts, list(keys), np.round(scores, 6).tolist(), alarms, since, tops)

    def _elevation(self, idx: np.ndarray, scores: np.ndarray, ts: datetime) -> list[datetime | None]:
        """Per row, when its stream's current run of elevated scores began (None when not elevated)."""
        high = scores >= self.learn_below
        elevated = self.elevated_
        if not elevated and not high.any():
            return [None] * len(idx)  # the common minute: nothing elevated before or now
        out: list[datetime | None] = []
        for stream, up in zip(idx.tolist(), high.tolist(), strict=True):
            if up:
                out.append(elevated.setdefault(stream, ts))
            else:
                elevated.pop(stream, None)
                out.append(None)
        return out

    def _stream(self, pipeline_id: str, stage: Stage) -> int:
        key = (pipeline_id, stage)
        i = self.streams_.get(key)
        if i is None:
            i = self.streams_[key] = len(self.streams_)
            self.mean_ = np.vstack([self.mean_, np.zeros((1, M))])
            self.var_ = np.vstack([self.var_, np.zeros((1, M))])
            self.seen_ = np.append(self.seen_, 0)
            self.streak_ = np.append(self.streak_, 0)
        return i

    def _update(self, idx: np.ndarray, x: np.ndarray) -> None:
        if not len(idx):
            return
        seen = self.seen_[idx]
        # Plain running mean while warming up, exponential afterwards.
        a = np.maximum(self.alpha, 1.0 / (seen + 1.0))[:, None]
        mean, var = self.mean_[idx], self.var_[idx]
        present = ~np.isnan(x)
        delta = np.where(present, x - mean, 0.0)
        new_mean = mean + a * delta
        new_var = (1 - a) * (var + a * delta**2)
        self.mean_[idx] = np.where(present, new_mean, mean)
        self.var_[idx] = np.where(present, new_var, var)
        self.seen_[idx] = seen + 1

    # -- models -----------------------------------------------------------------------------------
    def _model_scores(self, z: np.ndarray, stages: list[Stage]) -> np.ndarray:
        zmax = np.abs(z).max(axis=1)
        out = nines(erfc(zmax / np.sqrt(2.0)))  # P(|N(0,1)| >= zmax)
        if self.method == "zmax":
            return out
        for stage, (model, ref) in self.models_.items():
            rows = np.array([s is stage for s in stages])
            if rows.any():
                raw = -model.score_samples(z[rows])
                above = len(ref) - np.searchsorted(ref, raw, side="left")  # training rows at least as strange
                out[rows] = nines((above + 1) / (len(ref) + 1))
        return out

    def _remember(self, z: np.ndarray, stages: list[Stage]) -> None:
        for row, stage in zip(z, stages, strict=True):
            buf = self.buffer_[stage]
            if len(buf) < self.train_rows:
                buf.append(row)
            else:  # reservoir keeps a uniform sample of recent history
                buf[int(self.rng_.integers(0, len(buf)))] = row

    def _refit(self) -> None:
        from sklearn.ensemble import IsolationForest  # here, not at the top: importing sklearn takes ~1.4 s

        for stage, rows in self.buffer_.items():
            if len(rows) < 256:
                continue
            data = np.vstack(rows)
            model = IsolationForest(n_estimators=self.n_estimators, random_state=int(self.rng_.integers(2**31)))
            model.fit(data)
            self.models_[stage] = (model, np.sort(-model.score_samples(data)))
