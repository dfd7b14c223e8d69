"""A moto server over HTTP for the AWS adapters' tests: one per test module, reset before each test.

moto has no Redshift ResizeCluster (elastic resize); as DESIGN says, the in-process server gets the handler, so the
real boto3 client still speaks HTTP to it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.redshift.responses import RedshiftResponse
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def _resize_cluster(self: RedshiftResponse) -> ActionResult:
    """The missing moto handler: an elastic resize, done at once."""
    cluster = self.redshift_backend.modify_cluster(cluster_identifier=self._get_param("ClusterIdentifier"),
                                                   number_of_nodes=self._get_int_param("NumberOfNodes"))
    return ActionResult({"Cluster": cluster})


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    RedshiftResponse.resize_cluster = _resize_cluster
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    del RedshiftResponse.resize_cluster


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto server and credentials for it; returns its URL."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10).close()
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return moto_url


def client(url: str, service: str):
    """A real boto3 client of `service` on the moto server at `url`."""
    return boto3.client(service, endpoint_url=url, region_name=REGION)


def stopped_cdc_task(url: str, task: str = "orders-cdc", instance: str = "orders-ri") -> str:
    """A DMS replication task that ran and has stopped (what `restart_cdc_task` is for); returns its ARN."""
    dms = client(url, "dms")
    arn = dms.create_replication_task(
        ReplicationTaskIdentifier=task, MigrationType="cdc", TableMappings='{"rules": []}',
        SourceEndpointArn=f"arn:aws:dms:{REGION}:123456789012:endpoint:src",
        TargetEndpointArn=f"arn:aws:dms:{REGION}:123456789012:endpoint:tgt",
        ReplicationInstanceArn=f"arn:aws:dms:{REGION}:123456789012:rep:{instance}")["ReplicationTask"][
        "ReplicationTaskArn"]
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    dms.stop_replication_task(ReplicationTaskArn=arn)
    return arn
