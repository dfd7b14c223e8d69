"""Scenario files: which pipelines the twin runs and which faults hit them when.

The format is the JSON in DESIGN.md (YAML is not supported yet). Validation errors name the field,
e.g. ``faults[0].kind: unknown fault kind 'disk_full'; expected one of ...``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ScenarioError, field_errors
from engine.model import EPOCH, STAGES, FaultKind, Stage
from engine.textfile import read_text


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.\-]+$")
    freshness_target_minutes: float = Field(default=15.0, gt=0, le=24 * 60)


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str
    stage: str
    kind: str
    at_minute: int = Field(ge=0)
    duration_minutes: int = Field(default=60, gt=0)
    severity: float = Field(default=0.8, gt=0, le=1, allow_inf_nan=False)

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, v: str) -> str:
        if v not in {s.value for s in STAGES}:
            raise ValueError(f"unknown stage {v!r}; expected one of {[s.value for s in STAGES]}")
        return v

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in {k.value for k in FaultKind}:
            raise ValueError(f"unknown fault kind {v!r}; expected one of {[k.value for k in FaultKind]}")
        return v

    @property
    def stage_enum(self) -> Stage:
        return Stage(self.stage)

    @property
    def kind_enum(self) -> FaultKind:
        return FaultKind(self.kind)


class Scenario(BaseModel):
    """A reproducible run of the twin: seed, length, pipelines and scheduled faults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    duration_minutes: int = Field(gt=0, le=60 * 24 * 90)
    start: datetime = EPOCH
    pipelines: list[PipelineConfig] = Field(min_length=1)
    faults: list[FaultConfig] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2026-01-01T00:00:00Z")
        return v.replace(second=0, microsecond=0)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        ids = [p.id for p in self.pipelines]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"pipelines: duplicate id(s) {dupes}")
        known = set(ids)
        for i, fault in enumerate(self.faults):
            if fault.pipeline not in known:
                raise ValueError(f"faults[{i}].pipeline: unknown pipeline {fault.pipeline!r}; "
                                 f"the scenario defines {sorted(known)}")
            if fault.at_minute >= self.duration_minutes:
                raise ValueError(f"faults[{i}].at_minute: {fault.at_minute} is not before the end of "
                                 f"the scenario (duration_minutes={self.duration_minutes})")
        return self


def parse_scenario(data: Any, source: str = "<data>") -> Scenario:
    """Validate already-parsed scenario data; raises ScenarioError naming the bad field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"invalid scenario {source}: the top level must be a JSON object")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(f"invalid scenario {source}: {field_errors(e)}") from e


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario JSON file."""
    p = Path(path)
    text = read_text(p, "scenario", ScenarioError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"invalid scenario {p}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    return parse_scenario(data, str(p))
