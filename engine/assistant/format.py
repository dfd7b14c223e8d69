"""Numbers and charts as people read them: units, rounding, and time series thinned for plotting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from engine.assistant.entities import METRIC_LABELS
from engine.assistant.results import ChartSpec

SECONDS_METRICS = frozenset({"latency_s", "cdc_lag_s", "queue_wait_s", "freshness_s"})
AGG_LABELS = {"avg": "average", "max": "maximum", "min": "minimum", "p50": "median", "p90": "p90", "p95": "p95",
              "p99": "p99", "last": "latest", "sum": "total"}
MAX_POINTS = 720


def base_unit(metric: str) -> str:
    if metric in SECONDS_METRICS:
        return "s"
    return {"cpu_pct": "%", "memory_pct": "%", "throughput_rows_s": "rows/s", "error_count": "errors/min",
            "workers": "workers", "anomaly_score": ""}.get(metric, "")


def convert(metric: str, value: float, unit: str | None) -> tuple[float, str]:
    """`value` (in the metric's base unit) in the unit asked for, when that unit fits the metric."""
    if metric in SECONDS_METRICS:
        factor = {"min": 1 / 60, "h": 1 / 3600, "ms": 1000.0}.get(unit or "")
        if factor is not None:
            return value * factor, {"min": "min", "h": "h", "ms": "ms"}[unit or ""]
    if metric == "throughput_rows_s" and unit in ("per_min", "per_h"):
        return value * (60 if unit == "per_min" else 3600), "rows/min" if unit == "per_min" else "rows/h"
    return value, base_unit(metric)


def number(value: float, decimals: int = 1) -> str:
    if abs(value - round(value)) < 1e-9 and abs(value) >= 1:
        return f"{round(value):,}"
    return f"{value:,.{decimals}f}"


def fmt_value(metric: str, value: float, unit: str | None = None, aggregation: str = "avg") -> str:
    """E.g. "45.2%", "312.0 s (5.2 min)", "1,234.5 rows/s", "5.2 min"."""
    shown, u = convert(metric, value, unit)
    if metric == "error_count" and aggregation == "sum":
        return f"{number(shown, 0)} errors"
    if u == "%":
        return f"{shown:.1f}%"
    if u == "workers":
        return f"{number(shown)} workers"
    decimals = 2 if u == "h" else 0 if u == "ms" else 1
    text = f"{shown:,.{decimals}f} {u}".strip()
    if u == "s" and shown >= 120:
        text += f" ({shown / 60:.1f} min)"
    return text


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def iso(ts: datetime | pd.Timestamp | None) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).isoformat()


def hhmm(ts: datetime | pd.Timestamp | None) -> str:
    if ts is None or pd.isna(ts):
        return "-"
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")


def series_chart(frame: pd.DataFrame, value: str, *, title: str, series: str | None = None, y_label: str = "",
                 markers: list[dict[str, Any]] | None = None) -> ChartSpec:
    """A line chart of `value` over `ts` (one line per `series`), averaged into at most MAX_POINTS buckets."""
    data = frame[["ts", value] + ([series] if series else [])].dropna(subset=[value]).copy()
    data["ts"] = pd.to_datetime(data["ts"], utc=True)
    groups = [(None, data)] if series is None else list(data.groupby(series, sort=False))
    rows: list[dict[str, Any]] = []
    for key, group in groups:
        g = group.sort_values("ts")
        if len(g) > MAX_POINTS:
            step = -(-len(g) // MAX_POINTS)
            g = g.groupby(pd.RangeIndex(len(g)) // step).agg(ts=("ts", "first"), **{value: (value, "mean")})
        for ts, v in zip(g["ts"], g[value], strict=True):
            row = {"ts": ts.isoformat(), value: round(float(v), 4)}
            if series:
                row[series] = key
            rows.append(row)
    return ChartSpec("line", title, "ts", value, rows, y_label=y_label, color=series, markers=markers or [])
