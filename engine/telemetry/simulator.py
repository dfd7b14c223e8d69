"""Telemetry source over the digital twin: the twin's arrays become metric samples and events."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from engine.model import METRICS, STAGES, PipelineSpec, StageSample, TelemetryBatch, floor_minute
from engine.sim.twin import MinuteTelemetry, Twin


class SimulatorSource:
    """A `TelemetrySource` that advances the twin as time is pulled. Thread-safe."""

    name = "simulator"

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.lock = threading.RLock()

    def pipelines(self) -> list[PipelineSpec]:
        return list(self.twin.pipelines)

    def step(self) -> MinuteTelemetry:
        """Simulate the next minute and return it as the twin's arrays (the in-memory arena reads these)."""
        with self.lock:
            return self.twin.step()

    def pull(self, until: datetime, *, skip: frozenset[str] = frozenset()) -> TelemetryBatch:
        """Every minute up to `until`; the pipelines in `skip` are simulated but left out of the batch."""
        with self.lock:
            start = self.twin.now
            target = math.floor((floor_minute(until) - self.twin.start).total_seconds() / 60)
            minutes = self.twin.run_until(target)
            end = self.twin.now
        samples: list[StageSample] = []
        events = []
        for minute in minutes:
            samples.extend(to_samples(minute, self.twin.pipelines, skip=skip))
            events.extend(e for e in minute.events if e.pipeline_id not in skip)
        return TelemetryBatch(start=start, end=max(start, end), samples=samples, events=events)


def to_samples(minute: MinuteTelemetry, pipelines: list[PipelineSpec], *,
               skip: frozenset[str] = frozenset()) -> list[StageSample]:
    """One `StageSample` per pipeline (but those in `skip`) and stage, leaving out metrics a stage does not emit
    (NaN)."""
    cube, emitted = fleet_cube(minute)
    return samples_of(cube, emitted, minute.ts, [(i, p) for i, p in enumerate(pipelines) if p.id not in skip])


def fleet_cube(minute: MinuteTelemetry) -> tuple[np.ndarray, np.ndarray]:
    """A minute's metrics as one [metric, pipeline, stage] array in `METRICS` order, rounded once for the whole
    fleet, and which metrics each stage emits ([metric, stage]: the same for every pipeline)."""
    cube = np.round(np.stack([minute.metrics[m] for m in METRICS]), 4)
    return cube, ~np.isnan(cube[:, 0, :])


def samples_of(cube: np.ndarray, emitted: np.ndarray, ts: datetime,
               pipelines: Sequence[tuple[int, PipelineSpec]]) -> list[StageSample]:
    """The `StageSample`s of the given (row in `cube`, pipeline) pairs, stage by stage, emitted metrics only."""
    if not pipelines:
        return []
    per_stage = []
    sub = cube[:, [i for i, _p in pipelines], :]
    for s, stage in enumerate(STAGES):
        idx = np.flatnonzero(emitted[:, s]).tolist()
        # [pipeline][metric] as python floats, for this stage's metrics only.
        per_stage.append((stage, [METRICS[k] for k in idx], sub[idx, :, s].T.tolist()))
    return [StageSample(p.id, stage, ts, dict(zip(present, values[j], strict=True)))
            for j, (_i, p) in enumerate(pipelines) for stage, present, values in per_stage]
