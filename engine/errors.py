"""The one exception tree of selfheal. Adapters translate foreign errors into these at the edge."""

from __future__ import annotations

from typing import Any


class SelfhealError(Exception):
    """Base of every error selfheal raises on purpose."""


class ConfigError(SelfhealError):
    """Settings or a config file are invalid."""


class ScenarioError(SelfhealError):
    """A scenario file is invalid; the message names the offending field."""


class SourceError(SelfhealError):
    """A telemetry source could not be read (e.g. an AWS call failed); nothing was consumed."""


class StoreError(SelfhealError):
    """The store could not be opened, migrated, read or written."""


class UnknownPipelineError(SelfhealError):
    """A pipeline id that the fleet does not have."""


class UnknownActionError(SelfhealError):
    """An action name that the catalog does not have."""


class PermissionDenied(SelfhealError):  # noqa: N818 (reads as what happened)
    """The signed-in principal's role does not allow the operation (enforced in the engine, not only the UI)."""


class NotFoundError(SelfhealError):
    """A proposal, run or other record that does not exist."""


class ConflictError(SelfhealError):
    """The record changed under the caller: e.g. a proposal someone else already approved, rejected or expired."""


class PolicyError(ConfigError):
    """A policy file is invalid; the message names the file and the offending field."""


class ActionParamsError(SelfhealError):
    """An action's parameters are unknown for it or out of bounds."""


def field_errors(err: Any) -> str:
    """A pydantic `ValidationError` as one line naming each bad field: `faults[0].stage: unknown stage 'x'; …`."""
    lines = []
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)
