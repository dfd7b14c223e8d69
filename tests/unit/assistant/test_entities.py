"""Entity resolution: pipelines, stages, components (exact and fuzzy), metrics, aggregations, units."""

from __future__ import annotations

import pytest

from engine.assistant.entities import Catalog, Target, find_aggregation, find_mentions, normalise
from engine.model import PipelineSpec, Stage
from engine.sim.fleet import component_names, fleet_pipelines

CATALOG = Catalog.from_specs([PipelineSpec(p.id, p.freshness_target_minutes, component_names(p.id))
                              for p in fleet_pipelines(22)])


@pytest.mark.parametrize(("text", "pipeline", "stage"), [
    ("CPU of the orders Glue job over the last 24 h", "orders", Stage.TRANSFORM),
    ("how many errors has the payments DAG thrown", "payments", Stage.ORCHESTRATOR),
    ("glue-orders-transform latency", "orders", Stage.TRANSFORM),
    ("queue wait on the warehouse of invoices", "invoices", Stage.WAREHOUSE),
    ("redshift-invoices memory", "invoices", Stage.WAREHOUSE),
    ("lag of dms-customers-cdc", "customers", Stage.SOURCE),
    ("dag_refunds runs", "refunds", Stage.ORCHESTRATOR),
    ("shipments’ dms task", "shipments", Stage.SOURCE),
    ("the orders pipeline's airflow dag", "orders", Stage.ORCHESTRATOR),
    ("orders-2 glue", "orders-2", Stage.TRANSFORM),
    ("paymnets dag errors", "payments", Stage.ORCHESTRATOR),  # typo in the pipeline
    ("dag_payment runs", "payments", Stage.ORCHESTRATOR),  # typo in the component
    ("the invoice etl job", "invoices", Stage.TRANSFORM),  # singular
])
def test_components_by_name_or_by_pipeline_and_stage(text: str, pipeline: str, stage: Stage) -> None:
    m = find_mentions(text, CATALOG)
    assert m.pipeline == pipeline
    assert m.stage is stage
    assert m.component == CATALOG.component_of(pipeline, stage)


def test_column_names_and_phrases_are_not_pipelines() -> None:
    assert find_mentions("search logs for customer_id", CATALOG).pipelines == ()
    assert find_mentions("in order to see the cpu", CATALOG).pipelines == ()


@pytest.mark.parametrize(("text", "metrics", "stage"), [
    ("cpu usage", ("cpu_pct",), None),
    ("RAM", ("memory_pct",), None),
    ("memory utilization", ("memory_pct",), None),
    ("how far behind is the cdc", ("cdc_lag_s",), Stage.SOURCE),
    ("replication lag", ("cdc_lag_s",), Stage.SOURCE),
    ("how stale is the data", ("freshness_s",), Stage.WAREHOUSE),
    ("rows per second", ("throughput_rows_s",), None),
    ("wlm queue wait", ("queue_wait_s",), Stage.WAREHOUSE),
    ("error rate", ("error_count",), None),
    ("cpu and memory", ("cpu_pct", "memory_pct"), None),
])
def test_metric_synonyms_and_the_stage_a_metric_implies(text: str, metrics: tuple[str, ...], stage: Stage | None
                                                         ) -> None:
    m = find_mentions(text, CATALOG)
    assert m.metrics == metrics
    assert m.stage is stage


@pytest.mark.parametrize(("text", "agg"), [
    ("average cpu", "avg"), ("mean latency", "avg"), ("peak cpu", "max"), ("how high did it get", "max"),
    ("lowest throughput", "min"), ("min cpu over the last hour", "min"), ("p95 latency", "p95"),
    ("95th percentile lag", "p95"), ("median memory", "p50"), ("p99", "p99"), ("current lag", "last"),
    ("cpu right now", "last"), ("cpu in the last 30 min", None), ("total errors", "sum"),
])
def test_aggregation_words(text: str, agg: str | None) -> None:
    assert find_aggregation(normalise(text)) == agg


def test_ranking_words_order_a_ranking_instead_of_aggregating() -> None:
    m = find_mentions("which pipeline has the highest freshness right now", CATALOG)
    assert m.aggregation == "max"
    assert m.ranking_aggregation == "last"


@pytest.mark.parametrize(("text", "unit"), [("lag in minutes", "min"), ("latency in ms", "ms"),
                                            ("throughput per minute", "per_min"), ("latency", None)])
def test_units(text: str, unit: str | None) -> None:
    assert find_mentions(text, CATALOG).unit == unit


def test_incident_ids_fleet_words_and_fault_kinds() -> None:
    assert find_mentions("explain incident #12", CATALOG).incident_id == 12
    assert find_mentions("tell me about incident 4", CATALOG).incident_id == 4
    assert find_mentions("restart all the dags", CATALOG).whole_fleet
    assert find_mentions("scale everything", CATALOG).whole_fleet
    assert find_mentions("how do I handle a stopped cdc task", CATALOG).fault_kind is not None
    assert find_mentions("schema drift runbook", CATALOG).fault_kind.value == "schema_drift"  # type: ignore[union-attr]


def test_catalog_resolves_tool_arguments() -> None:
    assert CATALOG.resolve("orders") == Target("orders")
    assert CATALOG.resolve("GLUE-ORDERS-TRANSFORM") == Target("orders", Stage.TRANSFORM, "glue-orders-transform")
    assert CATALOG.resolve("the payments DAG") == Target("payments", Stage.ORCHESTRATOR, "dag_payments")
    assert CATALOG.resolve("no such thing") is None
