"""Scenario families for training and for held-out benchmarks, drawn from a seeded generator.

Training draws batches here with its own seed stream and even twin seeds; held-out sets (`write_sets`) use
odd twin seeds from another stream, so the agent never trains on a benchmark's scenario. Where each fault
kind happens follows the pipeline (bench/diagnosis.py's table, plus the kinds added with the decision layer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.model import FaultKind
from engine.sim.scenario import Scenario, parse_scenario

STAGES_OF: dict[str, tuple[str, ...]] = {
    "schema_drift": ("source", "transform", "warehouse"),
    "resource_contention": ("orchestrator", "transform"),
    "network_failure": ("source", "orchestrator", "transform", "warehouse"),
    "timeout": ("orchestrator", "transform"),
    "warehouse_overload": ("warehouse",),
    "cdc_stopped": ("source",),
    "credentials_expired": ("source", "transform", "warehouse"),
    "warehouse_saturation": ("warehouse",),
}
assert set(STAGES_OF) == {k.value for k in FaultKind}
KNOWN = ("schema_drift", "resource_contention", "network_failure", "timeout", "warehouse_overload", "cdc_stopped")
NOVEL = ("credentials_expired",)
FAMILIES = ("single", "mixed", "ambiguous", "novel", "sparse")
# What training draws per episode (each its own pipeline); sparse days are a benchmark, not an episode.
TRAINING_MIX: dict[str, float] = {"single": 0.4, "mixed": 0.2, "ambiguous": 0.15, "novel": 0.25}
WARMUP = 60  # the anomaly scorer's warm-up: faults start after it
HORIZON = 240  # minutes an episode may run after its onset


def _fault(rng: np.random.Generator, pipeline: str, kind: str, at: int, stage: str | None = None) -> dict[str, Any]:
    return {"pipeline": pipeline, "stage": stage or str(rng.choice(STAGES_OF[kind])), "kind": kind, "at_minute": at,
            "duration_minutes": int(rng.integers(30, 121)), "severity": round(float(rng.uniform(0.5, 1.0)), 2)}


def episode_faults(rng: np.random.Generator, family: str, pipeline: str, at: int) -> list[dict[str, Any]]:
    """The faults of one episode of `family` on `pipeline`, starting at minute `at`."""
    if family == "single":
        return [_fault(rng, pipeline, str(rng.choice(KNOWN)), at)]
    if family == "novel":
        return [_fault(rng, pipeline, str(rng.choice(NOVEL)), at)]
    if family == "ambiguous":
        # Half the time the contention-like signature really is a warehouse overload.
        if rng.random() < 0.5:
            return [_fault(rng, pipeline, "warehouse_saturation", at)]
        return [_fault(rng, pipeline, "resource_contention", at, "transform")]
    if family == "mixed":
        first, second = rng.choice(len(KNOWN), size=2, replace=False)
        a = _fault(rng, pipeline, KNOWN[int(first)], at)
        b = _fault(rng, pipeline, KNOWN[int(second)], at + int(rng.integers(0, 6)))
        return [a, b]
    raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")


def _pipeline(rng: np.random.Generator, pid: str) -> dict[str, Any]:
    return {"id": pid, "freshness_target_minutes": float(rng.choice([15.0, 30.0, 60.0]))}


def episode_scenario(rng: np.random.Generator, family: str, name: str, *, twin_seed: int) -> Scenario:
    """A one-pipeline scenario holding one episode of `family` (sparse: a quiet day with a few faults)."""
    if family == "sparse":
        return sparse_scenario(rng, name, twin_seed=twin_seed)
    at = WARMUP + int(rng.integers(0, 31))
    return parse_scenario({"name": name, "seed": twin_seed, "duration_minutes": at + HORIZON,
                           "pipelines": [_pipeline(rng, "orders")],
                           "faults": episode_faults(rng, family, "orders", at)}, name)


def sparse_scenario(rng: np.random.Generator, name: str, *, twin_seed: int, days: int = 2,
                    pipelines: int = 2, max_cover: float = 0.05) -> Scenario:
    """Long quiet runs where faults cover at most `max_cover` of the pipeline-minutes (by their duration)."""
    total = days * 1440
    budget = max_cover * total * pipelines
    faults: list[dict[str, Any]] = []
    used = 0
    while True:
        pid = f"p{int(rng.integers(pipelines))}"
        f = _fault(rng, pid, str(rng.choice(KNOWN)), int(rng.integers(WARMUP, total - HORIZON)))
        f["duration_minutes"] = int(rng.integers(20, 61))
        clash = any(g["pipeline"] == pid and abs(g["at_minute"] - f["at_minute"]) < HORIZON for g in faults)
        if used + f["duration_minutes"] > budget:
            break
        if not clash:
            faults.append(f)
            used += f["duration_minutes"]
    return parse_scenario({"name": name, "seed": twin_seed, "duration_minutes": total,
                           "pipelines": [_pipeline(rng, f"p{i}") for i in range(pipelines)],
                           "faults": sorted(faults, key=lambda f: f["at_minute"])}, name)


def training_batch(rng: np.random.Generator, size: int, index: int, mix: dict[str, float] | None = None, *,
                   families: Sequence[str] | None = None) -> tuple[Scenario, list[str]]:
    """A twin of `size` pipelines, each with one training episode; returns it and each pipeline's family
    (drawn from `mix`, or exactly `families` when given)."""
    if families is None:
        mix = mix or TRAINING_MIX
        names = list(mix)
        p = np.array([mix[n] for n in names]) / sum(mix.values())
        families = [names[int(k)] for k in rng.choice(len(names), size=size, p=p)]
    families = list(families)
    pipes, faults = [], []
    for i, family in enumerate(families):
        pid = f"t{i}"
        pipes.append(_pipeline(rng, pid))
        faults.extend(episode_faults(rng, family, pid, WARMUP + int(rng.integers(0, 31))))
    last = max(f["at_minute"] for f in faults)
    scenario = parse_scenario({"name": f"train-{index}", "seed": 2 * int(rng.integers(0, 2**30)),
                               "duration_minutes": last + HORIZON, "pipelines": pipes, "faults": faults})
    return scenario, families


def held_out(family: str, count: int, seed: int) -> list[Scenario]:
    """`count` held-out scenarios of `family` (odd twin seeds, a stream training never draws from)."""
    rng = np.random.default_rng([seed, 7919, FAMILIES.index(family)])
    return [episode_scenario(rng, family, f"{family}-{seed}-{k:03d}", twin_seed=2 * int(rng.integers(0, 2**30)) + 1)
            for k in range(count)]


def write_sets(root: Path, *, count: int = 30, seed: int = 1000,
               families: Sequence[str] = FAMILIES) -> dict[str, Path]:
    """Write held-out scenario sets, one directory per family; returns {family: dir}."""
    out = {}
    for family in families:
        d = root / family
        d.mkdir(parents=True, exist_ok=True)
        for sc in held_out(family, count if family != "sparse" else max(1, count // 3), seed):
            (d / f"{sc.name}.json").write_text(sc.model_dump_json(indent=1) + "\n", encoding="utf-8")
        out[family] = d
    return out


def load_dir(path: Path) -> list[Scenario]:
    """Every scenario JSON directly in `path` (sorted by file name)."""
    from engine.sim.scenario import load_scenario

    files = sorted(path.glob("*.json"))
    return [load_scenario(f) for f in files]


def dump(scenario: Scenario) -> str:
    return json.dumps(json.loads(scenario.model_dump_json()), indent=1)
