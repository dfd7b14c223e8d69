"""The execution policy: which proposals may run without a human, read from a TOML file and validated.

    version = 1
    proposal_ttl_minutes = 240          # a proposal nobody decided expires after this long

    [[auto]]                            # one rule; a proposal auto-executes when any rule allows it
    name = "low-risk retries"
    actions = ["retry_with_backoff", "apply_back_pressure"]
    pipelines = ["*"]                   # shell-style globs over pipeline ids
    max_risk = "low"                    # low | medium | high
    min_confidence = 0.6                # the proposer's confidence, 0..1
    rate_limit = { count = 10, per_minutes = 60 }   # at most this many auto-executions by this rule per window

Everything no rule allows waits for an operator. An absent file means the built-in default (`DEFAULT_POLICY`:
only low-risk actions, confidence ≥ 0.5, 20 an hour); an invalid file is an error naming the file and field,
never a silent fallback.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import PolicyError
from engine.execution.catalog import CATALOG, Risk
from engine.model import ActionKind
from engine.security.roles import Permission, Principal, require
from engine.service.audit import record
from engine.store.db import Store

RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0, le=100_000, description="auto-executions allowed per window (0: none)")
    per_minutes: int = Field(ge=1, le=60 * 24 * 7, description="the window, in minutes")


class AutoRule(BaseModel):
    """One permission to auto-execute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    actions: tuple[ActionKind, ...] = Field(min_length=1)
    pipelines: tuple[str, ...] = Field(default=("*",), min_length=1)
    max_risk: Risk = Risk.LOW
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    rate_limit: RateLimit = RateLimit(count=20, per_minutes=60)

    @field_validator("actions", mode="before")
    @classmethod
    def _known_actions(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            unknown = [a for a in value if a not in {k.value for k in ActionKind}]
            if unknown:
                raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(a.value for a in ActionKind)}")
        return value

    def matches(self, action: ActionKind, pipeline_id: str, risk: Risk, confidence: float) -> str | None:
        """None when this rule allows it, else why not."""
        if action not in self.actions:
            return f"{action.value} is not among its actions"
        if not any(fnmatch.fnmatchcase(pipeline_id, g) for g in self.pipelines):
            return f"pipeline {pipeline_id} matches none of {list(self.pipelines)}"
        if RISK_ORDER[risk] > RISK_ORDER[self.max_risk]:
            return f"risk {risk.value} is above its max_risk {self.max_risk.value}"
        if confidence < self.min_confidence:
            return f"confidence {confidence:.2f} is below its min_confidence {self.min_confidence:.2f}"
        return None


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    proposal_ttl_minutes: int = Field(default=240, ge=1, le=60 * 24 * 30)
    auto: tuple[AutoRule, ...] = ()

    @field_validator("auto")
    @classmethod
    def _unique_names(cls, rules: tuple[AutoRule, ...]) -> tuple[AutoRule, ...]:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        return rules


DEFAULT_POLICY = Policy(auto=(AutoRule(name="low-risk fixes", actions=tuple(
    k for k, spec in CATALOG.items() if spec.risk is Risk.LOW and k is not ActionKind.WAIT)),))
NO_AUTO = Policy()  # every proposal waits for a human


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says of one proposal: auto-execute under `rule`, or wait for a human (`why`)."""

    auto: bool
    rule: str | None
    why: str


def evaluate(policy: Policy, *, action: ActionKind, pipeline_id: str, confidence: float,
             used: Mapping[str, int]) -> Verdict:
    """Whether a proposal may auto-execute. `used` counts each rule's auto-executions in its current window."""
    risk = CATALOG[action].risk
    reasons = []
    for rule in policy.auto:
        miss = rule.matches(action, pipeline_id, risk, confidence)
        if miss is None and used.get(rule.name, 0) >= rule.rate_limit.count:
            miss = f"its rate limit ({rule.rate_limit.count} per {rule.rate_limit.per_minutes} min) is used up"
        if miss is None:
            return Verdict(True, rule.name, f"allowed by rule {rule.name!r}")
        reasons.append(f"rule {rule.name!r}: {miss}")
    return Verdict(False, None, "; ".join(reasons) if reasons else "the policy auto-executes nothing")


def parse(text: str, *, source: str = "policy") -> Policy:
    """A policy from TOML text; PolicyError naming `source` and the field on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{source}: not valid TOML: {e}") from e
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{_loc(x['loc'])}: {x['msg']}" for x in e.errors())
        raise PolicyError(f"{source}: {problems}") from e


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load(path: Path | None) -> Policy:
    """The policy in `path`; the default policy when no path is given or the file does not exist."""
    if path is None or not path.exists():
        return DEFAULT_POLICY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e}") from e
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return parse(text, source=str(path))


def dump(policy: Policy) -> str:
    """TOML text for `policy` (what the console's editor starts from)."""
    lines = [f"version = {policy.version}", f"proposal_ttl_minutes = {policy.proposal_ttl_minutes}"]
    for r in policy.auto:
        lines += ["", "[[auto]]", f"name = {_q(r.name)}",
                  f"actions = [{', '.join(_q(a.value) for a in r.actions)}]",
                  f"pipelines = [{', '.join(_q(g) for g in r.pipelines)}]",
                  f"max_risk = {_q(r.max_risk.value)}", f"min_confidence = {r.min_confidence:g}",
                  f"rate_limit = {{ count = {r.rate_limit.count}, per_minutes = {r.rate_limit.per_minutes} }}"]
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save(store: Store, actor: Principal, path: Path, text: str) -> Policy:
    """An admin replaces the policy file with `text`: validated first (nothing changes on an error), written
    atomically, audited with the old and new text. Returns the new policy."""
    require(actor, Permission.CHANGE_POLICY)
    policy = parse(text, source="the new policy")
    old = path.read_text(encoding="utf-8") if path.exists() else dump(DEFAULT_POLICY)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PolicyError(f"{path}: cannot write: {e}") from e
    record(store, actor=actor.label, kind="policy_changed", subject=f"policy:{path.name}",
           detail={"path": str(path), "before": old, "after": text})
    return policy
