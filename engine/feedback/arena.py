"""The loop in memory: the twin, the analysis layer and the healer, one minute at a time, without a store.

Training and benchmarks need thousands of simulated hours; the SQL store writes far too slowly for that. The
arena runs the same steps as the tick (`StageScorer.score` → `assess` → `update_incidents` → `Healer`) on
each minute, keeping incidents and health in memory, so the agent trains on the state it gets live.
Only `truth` (for the oracle baseline) reads the twin's ground truth.

By default (`fast`) it scores the whole fleet's minute as arrays and builds samples, health rows and incidents only
for the pipelines that could be anything but healthy (`Arena._analysed_minute`); the others get their SLO minute and
nothing else, as in the tick's steps. `fast=False` runs the tick's steps over pulled samples; the two give the same
incidents, SLO minutes, decisions and learning (`tests/unit/test_arena_analysis.py`).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from engine.decision.policy import Policy
from engine.decision.state import MinuteView, minute_views
from engine.detection.health import assess, calm_rows
from engine.detection.incidents import update_incidents
from engine.detection.stage_scores import StageScore, StageScorer
from engine.execution.executor import TwinExecutor
from engine.feedback.loop import Decision, EpisodeEnd, Healer, Learned, StepResult
from engine.feedback.reward import RewardWeights
from engine.model import METRICS, STAGES, FaultKind, Incident, IncidentStatus, PipelineSpec, Stage, TelemetryBatch
from engine.sim.twin import Twin
from engine.telemetry.simulator import SimulatorSource, fleet_cube, samples_of

_FRESHNESS = METRICS.index("freshness_s")
# One minute to analyse: its telemetry (as samples), the scores of those samples, the pipelines to assess.
_Minute = tuple[TelemetryBatch, dict[tuple[str, Stage, datetime], StageScore], list[PipelineSpec]]


def _last_emitting(emitted: np.ndarray, metric: int) -> int:
    """The last stage that emits `metric` (the one whose value `assess` ends up using)."""
    return int(np.flatnonzero(emitted[metric])[-1])


@dataclass(frozen=True, slots=True)
class _Analysed:
    """The pipelines an arena still analyses (in the twin's order), as its array path reads them each minute."""

    pipelines: list[tuple[int, PipelineSpec]]  # (row in the twin's arrays, pipeline)
    rows: list[int]
    keys: list[tuple[str, Stage]]  # the scorer's key of each [pipeline, stage] row
    stages: np.ndarray  # each such row's index in STAGES
    targets: np.ndarray  # each pipeline's freshness target (minutes)


@dataclass(slots=True)
class ArenaLog:
    decisions: list[Decision] = field(default_factory=list)
    learned: list[Learned] = field(default_factory=list)
    ended: list[EpisodeEnd] = field(default_factory=list)


class Arena:
    """A twin with its analysis and (unless `policy` is None) a healer acting on it (`parallel`: the healer
    works on a second troubled stage beside a running step, as the tick's does; see `Healer`; `fast`: see above)."""

    def __init__(self, twin: Twin, policy: Policy | None, *, rng: np.random.Generator | None = None,
                 weights: RewardWeights | None = None, scorer: StageScorer | None = None,
                 parallel: bool = True, fast: bool = True) -> None:
        self.twin = twin
        self.source = SimulatorSource(twin)
        self.scorer = scorer or StageScorer(seed=twin.seed)
        self.executor = TwinExecutor(twin, self.source.lock)
        self.healer = None if policy is None else Healer(
            policy, self.executor, rng=rng if rng is not None else np.random.default_rng(twin.seed),
            weights=weights or RewardWeights(), on_capacity_change=self._capacity_changed, parallel=parallel)
        self.pipelines = list(twin.pipelines)
        self.targets = {p.id: p.freshness_target_minutes for p in self.pipelines}
        self.open: dict[str, Incident] = {}
        self.incidents: dict[int, Incident] = {}
        self.slo: dict[str, list[bool]] = defaultdict(list)
        self.log = ArenaLog()
        self.retired: frozenset[str] = frozenset()  # pipelines still simulated but no longer analysed
        self._next_id = 1
        self._last: tuple[datetime, dict[str, MinuteView]] | None = None
        self.fast = fast
        self._analysed: _Analysed | None = None

    def retire(self, pipeline_id: str) -> None:
        """Stop analysing (and acting on) a pipeline whose run no longer matters, e.g. a scoring episode that has
        ended. The twin still simulates it, so every other pipeline sees the same minutes as before."""
        self.retired |= {pipeline_id}
        self.open.pop(pipeline_id, None)
        self.pipelines = [p for p in self.pipelines if p.id != pipeline_id]
        self._analysed = None

    def fork(self, policy: Policy | None, *, rng: np.random.Generator | None = None,
             weights: RewardWeights | None = None, parallel: bool = True) -> Arena:
        """A copy of this arena's world from now on (the twin, the analysis, every minute's SLO so far) with
        `policy` acting in it: a warm-up simulated once, then run under several policies. Only from an arena
        nothing has acted in and no incident has opened in, so the copy is exactly where a run under `policy`
        would be."""
        if self.healer is not None or self.incidents or self.retired:
            raise ValueError("only an arena without a policy, incidents or retired pipelines can be forked")
        out = Arena(copy.deepcopy(self.twin), policy, rng=rng, weights=weights, scorer=copy.deepcopy(self.scorer),
                    parallel=parallel, fast=self.fast)
        out.slo = defaultdict(list, {pid: list(flags) for pid, flags in self.slo.items()})
        out._next_id = self._next_id
        return out

    def _capacity_changed(self, pipeline_id: str, stage: Stage) -> None:
        self.scorer.rebaseline(pipeline_id, stage)

    def truth(self, pipeline_id: str, ts: datetime) -> list[tuple[FaultKind, Stage]]:
        """The faults active on a pipeline in the minute `ts` (ground truth: the oracle's and the bench's only)."""
        minute = round((ts - self.twin.start).total_seconds() / 60)
        return [(f.kind, f.stage) for f in self.twin.faults if f.pipeline == pipeline_id and f.active(minute)]

    def run_until(self, minute: int) -> None:
        while self.twin.minute < minute:
            self.minute()

    def minute(self, *, decide: bool = True) -> StepResult | None:
        """Simulate, analyse and act on one minute (`decide=False`: account and learn only; `decide()` later)."""
        batch, scored, analysed = self._analysed_minute() if self.fast else self._pulled_minute()
        stage_rows, pipe_rows = assess(batch, analysed, scores=scored)
        changed = update_incidents(list(self.open.values()), pipe_rows, stage_rows, batch.events)
        closed: dict[str, Incident] = {}
        for changed_inc in changed:
            inc = changed_inc
            if inc.id is None:
                inc = replace(inc, id=self._next_id)
                self._next_id += 1
            self.incidents[inc.id] = inc
            if inc.status is IncidentStatus.CLOSED:
                self.open.pop(inc.pipeline_id, None)
                closed[inc.pipeline_id] = inc
            else:
                self.open[inc.pipeline_id] = inc
        for ph in pipe_rows:
            self.slo[ph.pipeline_id].append(ph.slo_healthy)
        if self.healer is None:
            return None
        views = {pid: v for (pid, _), v in minute_views(batch.samples, stage_rows, pipe_rows, self.targets,
                                                         only=self.open.keys() | closed.keys()).items()}
        self._last = (batch.start, views)
        result = self.healer.observe(batch.start, views, self.open, closed)
        if decide:
            self.healer.decide(batch.start, views, self.open, result)
        self._record(result)
        return result

    def _pulled_minute(self) -> _Minute:
        """The next minute as the tick sees it: pulled as samples from the source, every sample scored."""
        batch = self.source.pull(self.twin.time_of(self.twin.minute + 1), skip=self.retired)
        return batch, {(s.pipeline_id, s.stage, s.ts): s for s in self.scorer.score(batch.samples)}, self.pipelines

    def _analysed_minute(self) -> _Minute:
        """The next minute scored as arrays (the same scores and baselines as `_pulled_minute`), and as samples only
        for the pipelines that need a closer look (`busy`): those with an open incident, and those the minute may
        make unhealthy (a warning or error logged, a static limit reached, an error counted, no throughput, an
        anomaly alarm, freshness over target or unknown). The others are healthy for certain: the tick's steps would
        only note their SLO minute (met), so that is all done for them. Per minute this saves the objects of
        most pipelines, the bulk of training's cost."""
        minute = self.source.step()
        ts = minute.ts
        analysed = self._active()
        active, rows = analysed.pipelines, analysed.rows
        cube, emitted = fleet_cube(minute)
        events = [e for e in minute.events if e.pipeline_id not in self.retired]
        if not active:
            return TelemetryBatch(ts, self.twin.now, [], events), {}, []
        # [pipeline, stage, metric], NaN where a stage does not emit a metric (as a sample leaves it out).
        x = np.where(emitted.T[None, :, :], cube[:, rows, :].transpose(1, 2, 0), np.nan).reshape(-1, len(METRICS))
        scores = self.scorer.score_rows(ts, analysed.keys, x)
        calm = calm_rows(x, analysed.stages).reshape(len(active), len(STAGES))
        calm &= ~scores.alarms.reshape(len(active), len(STAGES))
        fresh = cube[_FRESHNESS, rows, _last_emitting(emitted, _FRESHNESS)] / 60.0 if emitted[_FRESHNESS].any() \
            else np.full(len(active), np.nan)
        fine = calm.all(axis=1) & (fresh <= analysed.targets)
        noisy = {e.pipeline_id for e in events if e.level in ("warning", "error")}
        busy: list[tuple[int, tuple[int, PipelineSpec]]] = []  # (position in `active`, (row, pipeline))
        for j, (ok, (i, p)) in enumerate(zip(fine.tolist(), active, strict=True)):
            if not ok or p.id in noisy or p.id in self.open:
                busy.append((j, (i, p)))
            else:
                self.slo[p.id].append(True)  # healthy, freshness within target: the SLO minute is met
        n = len(STAGES)
        scored = {(p.id, stage, ts): scores.score(j * n + s) for j, (_i, p) in busy for s, stage in enumerate(STAGES)}
        samples = samples_of(cube, emitted, ts, [ip for _j, ip in busy])
        names = {p.id for _j, (_i, p) in busy}
        return (TelemetryBatch(ts, self.twin.now, samples, [e for e in events if e.pipeline_id in names]), scored,
                [p for _j, (_i, p) in busy])

    def _active(self) -> _Analysed:
        """The pipelines still analysed and what each minute's arrays need of them (worked out again on `retire`)."""
        if self._analysed is None:
            active = [(self.twin.index_of(p.id), p) for p in self.pipelines]
            self._analysed = _Analysed(
                active, [i for i, _p in active], [(p.id, stage) for _i, p in active for stage in STAGES],
                np.tile(np.arange(len(STAGES)), len(active)), np.array([self.targets[p.id] for _i, p in active]))
        return self._analysed

    @property
    def last_views(self) -> dict[str, MinuteView]:
        """The analysis of the newest minute, per pipeline."""
        return self._last[1] if self._last else {}

    def decide(self) -> StepResult:
        """Decide on the newest minute (after `minute(decide=False)`)."""
        assert self.healer is not None and self._last is not None
        ts, views = self._last
        result = self.healer.decide(ts, views, self.open)
        self._record(result)
        return result

    def _record(self, result: StepResult) -> None:
        self.log.decisions.extend(result.decisions)
        self.log.learned.extend(result.learned)
        self.log.ended.extend(result.ended)
