"""Generating a fleet of plausible pipelines for the twin."""

from __future__ import annotations

import numpy as np

from engine.model import Stage
from engine.sim.scenario import PipelineConfig

_DOMAINS = (
    "orders", "payments", "customers", "inventory", "shipments", "invoices", "clickstream", "refunds",
    "marketing", "sessions", "reviews", "pricing", "returns", "ledger", "carts", "loyalty", "support",
    "catalog", "fraud", "partners",
)
_TARGETS = (15.0, 15.0, 30.0, 60.0)


def fleet_pipelines(n: int, seed: int = 0) -> list[PipelineConfig]:
    """`n` pipelines with domain-like ids ("orders", "payments", ..., "orders-2", ...)."""
    if n < 1:
        raise ValueError("a fleet needs at least one pipeline")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = _DOMAINS[i % len(_DOMAINS)]
        pid = base if i < len(_DOMAINS) else f"{base}-{i // len(_DOMAINS) + 1}"
        out.append(PipelineConfig(id=pid, freshness_target_minutes=float(rng.choice(_TARGETS))))
    return out


def component_names(pipeline_id: str) -> dict[Stage, str]:
    """AWS-style component names for a pipeline's stages."""
    return {
        Stage.SOURCE: f"dms-{pipeline_id}-cdc",
        Stage.ORCHESTRATOR: f"dag_{pipeline_id.replace('-', '_')}",
        Stage.TRANSFORM: f"glue-{pipeline_id}-transform",
        Stage.WAREHOUSE: f"redshift-{pipeline_id}",
    }
