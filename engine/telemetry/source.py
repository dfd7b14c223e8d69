"""The port every telemetry source implements (simulator now; CloudWatch and replay later)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from engine.model import PipelineSpec, TelemetryBatch


@runtime_checkable
class TelemetrySource(Protocol):
    """Hands out telemetry in whole minutes, each minute exactly once."""

    name: str

    def pipelines(self) -> list[PipelineSpec]:
        """The pipelines this source reports on."""
        ...

    def pull(self, until: datetime) -> TelemetryBatch:
        """Everything new in the minutes before `until` (floored to the minute)."""
        ...
