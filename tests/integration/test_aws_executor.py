"""Approved actions carried out on AWS: a worker with the AWS executor against a moto server over HTTP
(`aws_rig`: moto's server, with the ResizeCluster handler it lacks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select

from engine.execution.aws import TAG, AwsExecutor
from engine.execution.executor import ActionRequest, ExecStatus
from engine.execution.policy import NO_AUTO
from engine.execution.queue import ProposalRequest, approve, propose
from engine.execution.twin_inbox import InboxExecutor
from engine.execution.worker import Worker
from engine.model import ActionKind, Stage
from engine.security.roles import Principal, Role
from engine.store import repo
from engine.store.db import Store
from engine.store.tables import ActionRunRow
from engine.telemetry.cloudwatch import aws_clients, parse_fleet

from .aws_rig import REGION, stopped_cdc_task

OPERATOR = Principal("olga", Role.OPERATOR)
FRESH = {"namespace": "DataPlatform", "metric": "FreshnessSeconds"}
FLEET = parse_fleet({"region": REGION, "pipeline": [
    {"id": "orders", "freshness": FRESH, "source": {"dms_task": "orders-cdc", "dms_instance": "orders-ri"},
     "transform": {"glue_job": "orders-etl"}, "warehouse": {"redshift_cluster": "dw"}},
    {"id": "payments", "freshness": FRESH, "transform": {"lambda_function": "payments-loader"}}]})


@pytest.fixture
def resources(aws: str) -> str:
    """The fleet's resources on a clean moto server: a Glue job, a stopped DMS task, a two-node cluster."""
    kw = {"endpoint_url": aws, "region_name": REGION}
    boto3.client("glue", **kw).create_job(Name="orders-etl", Role="r", WorkerType="G.1X", NumberOfWorkers=10,
                                          Command={"Name": "glueetl", "ScriptLocation": "s3://jobs/orders.py"})
    stopped_cdc_task(aws)  # what restart_cdc_task is for
    boto3.client("redshift", **kw).create_cluster(
        ClusterIdentifier="dw", NodeType="ra3.xlplus", MasterUsername="admin", MasterUserPassword="Secret123",
        NumberOfNodes=2, ClusterType="multi-node")
    return aws


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'aws.db'}")
    with s.transaction() as conn:
        repo.upsert_pipelines(conn, FLEET.specs, "cloudwatch")
    yield s
    s.dispose()


def _approved(store: Store, action: str, pipeline: str = "orders", stage: str | None = None, **params) -> int:
    with store.transaction() as conn:
        pid = propose(conn, OPERATOR, ProposalRequest(pipeline, action, stage, params or None, confidence=0.8),
                      NO_AUTO).proposal_id
    return approve(store, OPERATOR, pid).run_id


def _run(store: Store, run_id: int) -> dict:
    with store.read() as conn:
        return dict(conn.execute(select(ActionRunRow.__table__).where(ActionRunRow.__table__.c.id == run_id))
                    .one()._mapping)


def _worker(store: Store, url: str, name: str = "w1") -> Worker:
    return Worker(store, AwsExecutor(FLEET, aws_clients(REGION, url), store), name,
                  pipelines=[p.id for p in FLEET.specs])


def test_approved_fixes_run_on_glue_dms_and_redshift_and_are_recorded(resources, store):
    glue = boto3.client("glue", endpoint_url=resources, region_name=REGION)
    scale = _approved(store, "scale_workers")  # the catalog's default: twice the job's 10 workers
    restart = _approved(store, "restart_cdc_task")
    resize = _approved(store, "scale_warehouse", workers=4)
    worker = _worker(store, resources)
    for _ in range(4):  # one run per pipeline at a time: the three go one after the other
        worker.step()
    runs = {r: _run(store, r) for r in (scale, restart, resize)}
    assert {r: v["status"] for r, v in runs.items()} == {scale: "succeeded", restart: "succeeded", resize: "succeeded"}
    assert {v["executor"] for v in runs.values()} == {"aws"}
    [job_run] = glue.get_job_runs(JobName="orders-etl")["JobRuns"]
    assert job_run["NumberOfWorkers"] == 20 and job_run["Arguments"][TAG].endswith("/" + runs[scale]["idempotency_key"])
    dms = boto3.client("dms", endpoint_url=resources, region_name=REGION)
    assert dms.describe_replication_tasks()["ReplicationTasks"][0]["Status"] == "running"
    redshift = boto3.client("redshift", endpoint_url=resources, region_name=REGION)
    assert redshift.describe_clusters(ClusterIdentifier="dw")["Clusters"][0]["NumberOfNodes"] == 4


def test_a_run_already_started_on_glue_is_found_by_its_key_and_never_started_twice(resources, store):
    run_id = _approved(store, "restart_task")
    key = _run(store, run_id)["idempotency_key"]
    request = ActionRequest("orders", ActionKind.RESTART_TASK, Stage.TRANSFORM)
    first = AwsExecutor(FLEET, aws_clients(REGION, resources), store).submit(request, key)  # then the worker died
    assert first.status is ExecStatus.RUNNING and "run jr_" in first.detail
    successor = AwsExecutor(FLEET, aws_clients(REGION, resources), store)  # another process: no memory of it
    adopted = successor.lookup(key)
    assert adopted is not None and adopted.status is ExecStatus.SUCCEEDED  # moto's runs finish at once
    again = successor.submit(request, key)
    assert again.status is ExecStatus.SUCCEEDED
    glue = boto3.client("glue", endpoint_url=resources, region_name=REGION)
    assert len(glue.get_job_runs(JobName="orders-etl")["JobRuns"]) == 1


@pytest.mark.parametrize("case", [
    ("remap_schema", "orders", "transform", "is not automated on AWS: do it by hand"),
    ("restart_cdc_task", "payments", "source", "names no AWS resource in the fleet file"),
    ("restart_task", "payments", "transform", "restart_task on payments/transform (lambda_function) is not automated"),
])
def test_an_action_without_an_aws_call_fails_with_why_and_calls_nothing(resources, store, case):
    action, pipeline, stage, says = case
    run_id = _approved(store, action, pipeline, stage)
    _worker(store, resources).step()
    run = _run(store, run_id)
    assert run["status"] == "failed" and says in run["result"]["detail"]
    glue = boto3.client("glue", endpoint_url=resources, region_name=REGION)
    assert glue.get_job_runs(JobName="orders-etl")["JobRuns"] == []


def test_a_worker_for_aws_leaves_other_pipelines_runs_alone(resources, store):
    with store.transaction() as conn:
        repo.upsert_pipelines(conn, [*FLEET.specs, type(FLEET.specs[0])("simulated-one")], "simulator")
    other = _approved(store, "restart_task", "simulated-one", "transform")
    step = _worker(store, resources).step()
    assert step.claimed == [] and _run(store, other)["status"] == "queued"


def test_a_resize_a_dead_worker_recorded_is_adopted_not_asked_for_again(resources, store):
    run_id = _approved(store, "scale_warehouse")  # × 2 by default: sending it twice would make 8 nodes
    _worker(store, resources, "w1").step()  # w1 sends the resize and records it
    redshift = boto3.client("redshift", endpoint_url=resources, region_name=REGION)
    assert redshift.describe_clusters(ClusterIdentifier="dw")["Clusters"][0]["NumberOfNodes"] == 4
    key = _run(store, run_id)["idempotency_key"]
    successor = AwsExecutor(FLEET, aws_clients(REGION, resources), store)  # another process, no memory of it
    adopted = successor.lookup(key)
    assert adopted is not None and adopted.status is ExecStatus.SUCCEEDED
    assert successor.submit(ActionRequest("orders", ActionKind.SCALE_WAREHOUSE, Stage.WAREHOUSE), key).status \
        is ExecStatus.SUCCEEDED
    assert redshift.describe_clusters(ClusterIdentifier="dw")["Clusters"][0]["NumberOfNodes"] == 4  # not 8


def test_the_twins_worker_leaves_the_aws_pipelines_runs_to_the_aws_worker(resources, store):
    run_id = _approved(store, "restart_task")  # orders is registered by the CloudWatch source
    twin_worker = Worker(store, InboxExecutor(store, "w-twin"), "w-twin", source="simulator")
    assert twin_worker.step().claimed == [] and _run(store, run_id)["status"] == "queued"
    _worker(store, resources).step()
    assert _run(store, run_id)["status"] == "succeeded"


def test_an_action_on_a_resource_that_does_not_exist_fails_saying_so(resources, store):
    fleet = parse_fleet({"region": REGION, "pipeline": [
        {"id": "ghost", "freshness": FRESH, "transform": {"glue_job": "ghost-etl"},
         "source": {"dms_task": "ghost-cdc", "dms_instance": "ri"}}]})
    with store.transaction() as conn:
        repo.upsert_pipelines(conn, fleet.specs, "cloudwatch")
    runs = [_approved(store, "restart_task", "ghost", "transform"), _approved(store, "restart_cdc_task", "ghost")]
    worker = Worker(store, AwsExecutor(fleet, aws_clients(REGION, resources), store), "w1", pipelines=["ghost"])
    worker.step()
    worker.step()
    details = [_run(store, r)["result"]["detail"] for r in runs]
    assert [_run(store, r)["status"] for r in runs] == ["failed", "failed"]
    assert "Job ghost-etl not found" in details[0] and "DMS task ghost-cdc not found" in details[1]


def test_the_same_key_in_another_store_is_a_new_glue_run(resources, store, tmp_path):
    first = _approved(store, "restart_task")
    _worker(store, resources).step()
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")  # a second environment on the same AWS account
    with other.transaction() as conn:
        repo.upsert_pipelines(conn, FLEET.specs, "cloudwatch")
    second = _approved(other, "restart_task")
    assert _run(other, second)["idempotency_key"] == _run(store, first)["idempotency_key"]  # both proposal:1
    _worker(other, resources).step()
    glue = boto3.client("glue", endpoint_url=resources, region_name=REGION)
    assert len(glue.get_job_runs(JobName="orders-etl")["JobRuns"]) == 2  # not adopted from the other store
    other.dispose()
