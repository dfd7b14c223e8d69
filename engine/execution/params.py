"""Action parameters: which ones each action takes and their bounds. One place, read by the approval queue
(an operator editing a worker count), the assistant and the executors.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import ActionParamsError
from engine.model import ActionKind


class ActionParams(BaseModel):
    """Every parameter any action takes; `ALLOWED` says which ones each action accepts."""

    model_config = ConfigDict(extra="forbid")

    workers: int | None = Field(None, ge=1, le=64, description="scale_workers / scale_warehouse: target count")
    factor: float | None = Field(None, ge=0.1, le=8.0, description="scale_*: multiply capacity by this instead")
    base_s: float | None = Field(None, gt=0, le=3600, description="retry_with_backoff: first delay in seconds")
    cap_s: float | None = Field(None, gt=0, le=3600, description="retry_with_backoff: longest delay in seconds")
    max_attempts: int | None = Field(None, ge=1, le=20, description="retry_with_backoff: attempts")
    max_utilisation: float | None = Field(None, ge=0.1, le=1.0,
                                          description="apply_back_pressure: admit at most this share of capacity")
    min_utilisation: float | None = Field(None, ge=0.1, le=1.0, description="apply_back_pressure: the tightest "
                                          "share it may adapt down to (at most max_utilisation)")
    release: bool | None = Field(None, description="apply_back_pressure: lift back pressure")

    @field_validator("workers", "factor", "base_s", "cap_s", "max_attempts", "max_utilisation", "min_utilisation",
                     mode="before")
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # `--param workers=true` is not one worker
            raise ValueError("must be a number, not true/false")
        return v

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


_RETRY = frozenset({"base_s", "factor", "cap_s", "max_attempts"})
_SCALE = frozenset({"workers", "factor"})
ALLOWED: dict[ActionKind, frozenset[str]] = {
    ActionKind.RETRY_WITH_BACKOFF: _RETRY,
    ActionKind.SCALE_WORKERS: _SCALE,
    ActionKind.SCALE_WAREHOUSE: _SCALE,
    ActionKind.APPLY_BACK_PRESSURE: frozenset({"max_utilisation", "min_utilisation", "release"}),
}


def check_params(action: ActionKind, params: dict[str, Any] | ActionParams | None) -> dict[str, Any]:
    """The validated parameters of `action` (only those given); ActionParamsError naming the problem."""
    if isinstance(params, ActionParams):
        given = params.given()
    else:
        try:
            given = ActionParams.model_validate(params or {}).given()
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ActionParamsError(f"{action.value}: {problems}") from e
    allowed = ALLOWED.get(action, frozenset())
    extra = sorted(set(given) - allowed)
    if extra:
        takes = ", ".join(sorted(allowed)) or "no parameters"
        raise ActionParamsError(f"{action.value} does not take {', '.join(extra)}; it takes {takes}")
    if "workers" in given and "factor" in given:
        raise ActionParamsError(f"{action.value}: give either workers or factor, not both")
    if action is ActionKind.RETRY_WITH_BACKOFF and given.get("factor", 1.0) < 1:
        raise ActionParamsError("retry_with_backoff: factor must be at least 1")
    if given.get("min_utilisation", 0.0) > given.get("max_utilisation", 0.8):
        raise ActionParamsError(f"{action.value}: min_utilisation must not exceed max_utilisation")
    return given
