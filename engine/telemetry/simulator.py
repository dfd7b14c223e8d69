"""Telemetry source over the digital twin: the twin's arrays become metric samples and events."""

from __future__ import annotations

import math
import threading
from datetime import datetime

import numpy as np

from engine.model import STAGES, PipelineSpec, StageSample, TelemetryBatch, floor_minute
from engine.sim.twin import MinuteTelemetry, Twin


class SimulatorSource:
    """A `TelemetrySource` that advances the twin as time is pulled. Thread-safe."""

    name = "simulator"

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.lock = threading.RLock()

    def pipelines(self) -> list[PipelineSpec]:
        return list(self.twin.pipelines)

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
    ts = minute.ts
    names = list(minute.metrics)
    # [metric, pipeline, stage], rounded once for the whole fleet.
    cube = np.round(np.stack([minute.metrics[m] for m in names]), 4)
    emitted = ~np.isnan(cube[:, 0, :])  # [metric, stage]: what each stage emits (the same for every pipeline)
    per_stage = []
    for s, stage in enumerate(STAGES):
        idx = np.flatnonzero(emitted[:, s])
        # [pipeline][metric] as python floats, for this stage's metrics only.
        per_stage.append((stage, [names[k] for k in idx], cube[idx, :, s].T.tolist()))
    return [StageSample(p.id, stage, ts, dict(zip(present, rows[i], strict=True)))
            for i, p in enumerate(pipelines) if p.id not in skip for stage, present, rows in per_stage]
