"""`AwsExecutor`: approved actions carried out on the AWS resources a fleet file names (Glue, DMS, Redshift).

`selfheal worker --executor aws --fleet FILE` runs it: the worker claims approved runs as always (leases,
deadlines, audit) and this executor makes the AWS calls.

- `restart_task`, `retry_with_backoff` on a `glue_job` stage: `glue.StartJobRun`;
- `scale_workers` on a `glue_job` stage: `glue.StartJobRun` with `NumberOfWorkers` (`workers`, or the job's
  count × `factor`);
- `restart_cdc_task` on a `dms_task` stage: `dms.StartReplicationTask`, `resume-processing`;
- `scale_warehouse` on a `redshift_cluster` warehouse: `redshift.ResizeCluster`, elastic (`workers` nodes, or the
  cluster's × `factor`);
- `wait`, `escalate_to_human`: nothing, done at once (no pager is wired; the incident waits on the console).

Anything else (remapping a schema, back pressure, rescheduling a DAG, reloading chosen tables) is pipeline-specific:
it comes back FAILED, saying it is to be done by hand, and nothing is called.

Exactly once across workers: a Glue run carries the run's idempotency key in its arguments (`--selfheal-key`), so
a worker taking over a dead one's run finds the run it started instead of starting another. DMS and Redshift calls
have no client token; there a task already running, or a cluster already resizing or at its target size, counts
as the call having been made. IAM: `glue:StartJobRun`, `glue:GetJob`, `glue:GetJobRuns`,
`dms:DescribeReplicationTasks`, `dms:StartReplicationTask`, `redshift:DescribeClusters`, `redshift:ResizeCluster`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from engine.errors import SelfhealError
from engine.execution.executor import ActionRequest, ExecStatus, Execution
from engine.model import ActionKind, Stage
from engine.store import repo
from engine.store.db import Store
from engine.store.tables import ActionRunRow
from engine.telemetry.cloudwatch.fleet import Fleet, StageBinding
from engine.telemetry.cloudwatch.source import AwsCallError, AwsClients, aws_call

log = logging.getLogger(__name__)
TAG = "--selfheal-key"  # the Glue job argument that carries a run's idempotency key
R = ActionRunRow.__table__
GLUE_RUNNING = ("STARTING", "RUNNING", "WAITING", "STOPPING")
GLUE_FAILED = ("FAILED", "TIMEOUT", "ERROR", "STOPPED")
GLUE_PAGES = 25  # of 200 runs, when looking for the run a key started
MISSING = ("EntityNotFoundException", "ResourceNotFoundFault", "ClusterNotFound", "ClusterNotFoundFault")
_GLUE_ACTIONS = (ActionKind.RESTART_TASK, ActionKind.RETRY_WITH_BACKOFF, ActionKind.SCALE_WORKERS)


def _now() -> datetime:
    return datetime.now(UTC)


class AwsExecutor:
    """Runs actions on AWS; see the module docstring. `store` holds the runs (to rebuild a request by its key)."""

    name = "aws"

    def __init__(self, fleet: Fleet, clients: AwsClients, store: Store, *,
                 clock: Callable[[], datetime] = _now) -> None:
        self.clients = clients
        self.store = store
        self.clock = clock
        self._stages = {(b.pipeline_id, b.stage): b for b in fleet.stages}
        self._store_id = store_id(store)  # keys are unique in one store: the tag names the store too
        self._done: dict[str, Execution] = {}  # outcomes decided at submit (nothing to poll on AWS)
        self._started: dict[str, datetime] = {}

    # -- the executor port ------------------------------------------------------------------------
    def submit(self, request: ActionRequest, key: str | None = None) -> Execution:
        if key is None:
            raise SelfhealError("the AWS executor needs an idempotency key per action")
        known = self.lookup(key, request)
        if known is not None:
            return known
        now = self.clock()
        self._started[key] = now
        binding = self._binding(request)
        try:
            detail = self._start(request, key, binding)
        except SelfhealError as e:  # no AWS call for it, or AWS said no (or could not be reached): it did not start
            return self._finished(key, request, ExecStatus.FAILED, now, str(e))
        if request.action in (ActionKind.WAIT, ActionKind.ESCALATE_TO_HUMAN):
            return self._finished(key, request, ExecStatus.SUCCEEDED, now, detail)
        log.info("aws: %s on %s/%s started (%s): %s", request.action.value, request.pipeline_id,
                 request.stage.value, key, detail)
        return Execution(key, request, ExecStatus.RUNNING, now, None, detail)

    def poll(self, ref: str) -> Execution:
        found = self.lookup(ref)
        if found is None:
            raise SelfhealError(f"AWS shows nothing for run {ref!r} (not started, or its resource is gone)")
        return found

    def lookup(self, key: str, request: ActionRequest | None = None) -> Execution | None:
        """What AWS shows for `key`: None when nothing was started under it (then it is safe to submit)."""
        if key in self._done:
            return self._done[key]
        stored, sent = self._stored(key)
        request = request or stored
        if request is None:
            return None
        if sent:  # a worker recorded sending it (then maybe died): the call was made, whatever this process knows
            self._started.setdefault(key, self.clock())
        binding = self._binding(request)
        started = self._started.get(key, self.clock())
        if binding is None:
            return None
        try:
            if binding.kind == "glue_job" and request.action in _GLUE_ACTIONS:
                return self._glue_state(key, request, binding, started)
            if binding.kind == "dms_task" and request.action is ActionKind.RESTART_CDC_TASK:
                return self._dms_state(key, request, binding, started)
            if binding.kind == "redshift_cluster" and request.action is ActionKind.SCALE_WAREHOUSE:
                return self._redshift_state(key, request, binding, started)
        except _Missing:
            return None  # the resource is gone: nothing was started on it (submit fails, saying why)
        return None

    def cancel(self, key: str) -> bool:
        return False  # every call starts at once: nothing waits to be withdrawn

    # -- starting ---------------------------------------------------------------------------------
    def _binding(self, request: ActionRequest) -> StageBinding | None:
        return self._stages.get((request.pipeline_id, request.stage))

    def _start(self, request: ActionRequest, key: str, b: StageBinding | None) -> str:
        action, params = request.action, request.params
        if action is ActionKind.WAIT:
            return "waited"
        if action is ActionKind.ESCALATE_TO_HUMAN:
            return "no pager is wired to AWS pipelines: the incident waits for the on-call engineer on the console"
        where = f"{request.pipeline_id}/{request.stage.value}"
        if b is None or b.resource is None:
            raise _Refused(f"{where} names no AWS resource in the fleet file, so {action.value} has nothing to act on")
        if b.kind == "glue_job" and action in _GLUE_ACTIONS:
            args: dict[str, Any] = {"JobName": b.resource, "Arguments": {TAG: self._tag(key)}}
            if action is ActionKind.SCALE_WORKERS:
                job = self._call("glue", "get_job", JobName=b.resource)["Job"]
                current, kind = job.get("NumberOfWorkers"), job.get("WorkerType")
                target = params.get("workers") or (round(current * float(params.get("factor", 2.0)))
                                                   if current else None)
                if not target or not kind:
                    raise _Refused(f"Glue job {b.resource} has no worker type and count (it is sized by "
                                   "MaxCapacity): scale it by hand, or give it a worker type first")
                args |= {"NumberOfWorkers": max(2, int(target)), "WorkerType": kind}
            run = self._call("glue", "start_job_run", **args)
            extra = f" with {args['NumberOfWorkers']} {args['WorkerType']} workers" if "NumberOfWorkers" in args else ""
            return f"Glue job {b.resource}: run {run['JobRunId']} started{extra}"
        if b.kind == "dms_task" and action is ActionKind.RESTART_CDC_TASK:
            task = self._dms_task(b)
            self._call("dms", "start_replication_task", ReplicationTaskArn=task["ReplicationTaskArn"],
                       StartReplicationTaskType="resume-processing")
            return f"DMS task {b.resource}: resume-processing requested"
        if b.kind == "redshift_cluster" and action is ActionKind.SCALE_WAREHOUSE:
            nodes = int(self._cluster(b)["NumberOfNodes"])
            target = int(params.get("workers") or round(nodes * float(params.get("factor", 2.0))))
            self._call("redshift", "resize_cluster", ClusterIdentifier=b.resource, NumberOfNodes=max(1, target),
                       Classic=False)
            return f"Redshift cluster {b.resource}: elastic resize {nodes} → {max(1, target)} nodes requested"
        raise _Refused(f"{action.value} on {where} ({b.kind}) is not automated on AWS: do it by hand, then close "
                       "the incident")

    # -- states -----------------------------------------------------------------------------------
    def _glue_state(self, key: str, request: ActionRequest, b: StageBinding, started: datetime) -> Execution | None:
        run = self._glue_run(b.resource, self._tag(key))
        if run is None:
            return None
        state = str(run.get("JobRunState", ""))
        status = (ExecStatus.RUNNING if state in GLUE_RUNNING else
                  ExecStatus.FAILED if state in GLUE_FAILED else ExecStatus.SUCCEEDED)
        detail = f"Glue job {b.resource}: run {run.get('Id')} {state}"
        if run.get("ErrorMessage"):
            detail += f": {run['ErrorMessage']}"
        return Execution(key, request, status, run.get("StartedOn", started),
                         run.get("CompletedOn") if status.finished else None, detail[:500])

    def _dms_state(self, key: str, request: ActionRequest, b: StageBinding, started: datetime) -> Execution | None:
        task = self._dms_task(b)
        status = str(task.get("Status", "")).lower()
        detail = f"DMS task {b.resource}: {status}"
        if status == "running":
            return Execution(key, request, ExecStatus.SUCCEEDED, started, self.clock(), detail)
        if status in ("starting", "resuming"):
            return Execution(key, request, ExecStatus.RUNNING, started, None, detail)
        if key not in self._started:  # a worker asking before it sends: nothing shows it was sent
            return None
        why = task.get("LastFailureMessage") or task.get("StopReason") or ""
        return Execution(key, request, ExecStatus.FAILED, started, self.clock(), f"{detail} {why}".strip()[:500])

    def _redshift_state(self, key: str, request: ActionRequest, b: StageBinding,
                        started: datetime) -> Execution | None:
        cluster = self._cluster(b)
        status = str(cluster.get("ClusterStatus", "")).lower()
        detail = f"Redshift cluster {b.resource}: {status}, {cluster.get('NumberOfNodes')} nodes"
        if status in ("resizing", "modifying"):
            return Execution(key, request, ExecStatus.RUNNING, started, None, detail)
        if key not in self._started and status == "available":
            return None  # nothing shows a resize was asked for under this key
        ok = status == "available"
        return Execution(key, request, ExecStatus.SUCCEEDED if ok else ExecStatus.FAILED, started, self.clock(), detail)

    # -- helpers ----------------------------------------------------------------------------------
    def _finished(self, key: str, request: ActionRequest, status: ExecStatus, now: datetime, detail: str) -> Execution:
        exe = Execution(key, request, status, now, now, detail[:500])
        self._done[key] = exe
        return exe

    def _stored(self, key: str) -> tuple[ActionRequest | None, bool]:
        """The run's request, and whether a worker recorded having sent it (its result holds the call's ref)."""
        with self.store.read() as conn:
            row = conn.execute(select(R.c.pipeline_id, R.c.action, R.c.stage, R.c.params, R.c.incident_id,
                                      R.c.result).where(R.c.idempotency_key == key)).first()
        if row is None:
            return None, False
        request = ActionRequest(row.pipeline_id, ActionKind(row.action), Stage(row.stage), dict(row.params or {}),
                                row.incident_id)
        return request, bool((row.result or {}).get("ref"))

    def _tag(self, key: str) -> str:
        return f"{self._store_id}/{key}"

    def _glue_run(self, job: str | None, tag: str) -> dict[str, Any] | None:
        """The job's run carrying `tag`, looked for page by page (a busy job has many runs)."""
        kw: dict[str, Any] = {"JobName": job, "MaxResults": 200}
        for _page in range(GLUE_PAGES):
            reply = self._call("glue", "get_job_runs", **kw)
            run = next((r for r in reply.get("JobRuns", ()) if (r.get("Arguments") or {}).get(TAG) == tag), None)
            if run is not None or not reply.get("NextToken"):
                return run
            kw["NextToken"] = reply["NextToken"]
        return None

    def _dms_task(self, b: StageBinding) -> dict[str, Any]:
        tasks = self._call("dms", "describe_replication_tasks", WithoutSettings=True,
                           Filters=[{"Name": "replication-task-id", "Values": [b.resource]}]).get("ReplicationTasks")
        if not tasks:
            raise _Missing(f"DMS task {b.resource} not found")
        return tasks[0]

    def _cluster(self, b: StageBinding) -> dict[str, Any]:
        return self._call("redshift", "describe_clusters", ClusterIdentifier=b.resource)["Clusters"][0]

    def _call(self, service: str, op: str, **kw: Any) -> dict[str, Any]:
        try:
            return aws_call(self.clients, service, op, **kw)
        except AwsCallError as e:
            if e.code in MISSING:
                raise _Missing(str(e)) from e
            raise


class _Refused(SelfhealError):  # noqa: N818 (an outcome: the action cannot run on this resource)
    """The action has no AWS call on this stage's resource."""


class _Missing(SelfhealError):  # noqa: N818 (an outcome: the resource does not exist)
    """The stage's AWS resource does not exist."""


def store_id(store: Store) -> str:
    """This store's own id (made once, kept in it): what makes a run's key unique beyond one store."""
    with store.transaction() as conn:
        found = repo.get_value(conn, "store:id")
        if found and found.get("id"):
            return str(found["id"])
        made = uuid.uuid4().hex[:12]
        repo.set_value(conn, "store:id", {"id": made})
        return made
