"""Three `selfheal worker` processes on one PostgreSQL, 200 twin pipelines: every proposal runs exactly once and
no pipeline is handled by two workers at once.

The test process plays `selfheal agent --no-worker`: it hosts the twin (the host applies the inbox) and files
proposals that a permissive policy approves, in two waves; the first queues two runs per pipeline at once.
"""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from itertools import pairwise

import pytest
from sqlalchemy import select

from engine.execution.queue import ProposalRequest, propose
from engine.security.roles import agent
from engine.store.tables import ProposalRow

from .exec_rig import FINAL, PERMISSIVE, HostedTwin, R, count, open_store, start_worker, wait_for

PIPELINES = 200
WORKERS = 3
P = ProposalRow.__table__


def _file(rig: HostedTwin, requests: list[ProposalRequest]) -> list[int]:
    with rig.store.transaction() as conn:
        out = [propose(conn, agent("fleet-test"), r, PERMISSIVE) for r in requests]
    assert all(p.status == "approved" and not p.deduplicated for p in out)
    return [p.proposal_id for p in out]


@pytest.mark.slow
@pytest.mark.postgres
def test_three_worker_processes_on_one_postgres(pg_admin, tmp_path) -> None:
    from tests.conftest import fresh_database

    with fresh_database(pg_admin) as url:
        store = open_store(url)
        try:
            _fleet(store, url, tmp_path)
        finally:
            store.dispose()


def _fleet(store, url: str, tmp_path) -> None:
    rig = HostedTwin(store, PIPELINES)
    workers = [start_worker(url, tmp_path, f"w{i}", lease=15, interval=0.1) for i in range(1, WORKERS + 1)]
    try:
        # Wave 1: two runs queued at once on every pipeline (different actions, so neither is a duplicate).
        filed = _file(rig, [ProposalRequest(p, "retry_with_backoff", "transform", {"max_attempts": 3}, confidence=0.9)
                            for p in rig.ids] + [ProposalRequest(p, "apply_back_pressure", confidence=0.9)
                                                 for p in rig.ids])
        finished = lambda: count(store, R, R.c.status.in_(FINAL))  # noqa: E731
        wait_for("half of wave 1", lambda: finished() >= PIPELINES, timeout=60, between=rig.pump, poll=0.05)
        # Wave 2, while wave 1 still runs: a third action on every fourth pipeline.
        filed += _file(rig, [ProposalRequest(p, "restart_task", "transform", confidence=0.9) for p in rig.ids[::4]])
        wait_for("every run to finish", lambda: finished() == len(filed), timeout=90, between=rig.pump, poll=0.05)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=15) for w in workers]
    assert codes == [0] * WORKERS
    # No step failed (a PostgreSQL deadlock between claims and lease releases aborts a step and logs this).
    logs = {i: (tmp_path / f"w{i}.log").read_text(encoding="utf-8") for i in range(1, WORKERS + 1)}
    assert not [line for text in logs.values() for line in text.splitlines() if "step failed" in line]

    with store.read() as conn:
        runs = conn.execute(select(R).order_by(R.c.id)).all()
        proposals = conn.execute(select(P.c.id, P.c.status)).all()
    # Every proposal has exactly one run, and every run ended.
    assert len(proposals) == len(filed) == 2 * PIPELINES + PIPELINES // 4
    assert all(p.status == "approved" for p in proposals)
    assert Counter(r.proposal_id for r in runs) == Counter({pid: 1 for pid in filed})
    assert all(r.status in FINAL and r.attempts == 1 for r in runs)
    # Each command reached the twin once.
    assert rig.assert_each_command_applied_once() == len(runs)
    # Every worker worked.
    per_worker = Counter(r.worker for r in runs)
    assert set(per_worker) == {f"w{i}" for i in range(1, WORKERS + 1)}, per_worker
    # One worker at a time per pipeline: a pipeline's runs never overlap in time, and a change of worker comes
    # with a newer lease epoch (the fencing token), never an older or equal one.
    by_pipeline = defaultdict(list)
    for r in runs:
        by_pipeline[r.pipeline_id].append(r)
    handovers = 0
    for pipeline, rs in by_pipeline.items():
        rs.sort(key=lambda r: r.started_at)
        for a, b in pairwise(rs):
            assert a.finished_at <= b.started_at, (pipeline, a.id, a.worker, b.id, b.worker)
            if a.worker != b.worker:
                handovers += 1
                assert b.lease_epoch > a.lease_epoch, (pipeline, a.id, a.lease_epoch, b.id, b.lease_epoch)
            else:
                assert b.lease_epoch >= a.lease_epoch
    print(f"\n{len(runs)} runs on {PIPELINES} pipelines; per worker {dict(sorted(per_worker.items()))}; "
          f"{handovers} hand-overs between workers; statuses {dict(Counter(r.status for r in runs))}")
