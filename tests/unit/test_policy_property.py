"""Property: the policy auto-executes a proposal only when one of its rules allows it within that rule's rate
limit; everything else waits for a human, with no run. Random policies and proposals through `queue.propose` on
a SQLite file, each example in a transaction that is rolled back."""

from __future__ import annotations

import fnmatch
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from engine.execution.catalog import CATALOG, Risk
from engine.execution.policy import AutoRule, Policy, RateLimit
from engine.execution.queue import ProposalRequest, propose
from engine.model import ActionKind
from engine.security.roles import agent
from engine.service.tick import register
from engine.sim.fleet import fleet_pipelines
from engine.sim.twin import Twin
from engine.store.db import Store
from engine.store.tables import ActionRunRow, ProposalRow
from engine.telemetry.simulator import SimulatorSource

ACTIONS = [a for a in ActionKind if a is not ActionKind.WAIT]
PIPELINES = [p.id for p in fleet_pipelines(14, seed=3)]  # orders, payments, … and orders-2, …
GLOBS = ["*", "orders*", "pay*", "*-2", "inventory", "o?ders", "[op]*", "nothing-matches", *PIPELINES[:3]]
ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
R = ActionRunRow.__table__
P = ProposalRow.__table__


@pytest.fixture(scope="module")
def store():
    with tempfile.TemporaryDirectory() as tmp:
        s = Store.open(f"sqlite:///{Path(tmp) / 'policy.db'}")
        register(s, SimulatorSource(Twin(fleet_pipelines(14, seed=3), seed=3)))
        yield s
        s.dispose()


rules = st.lists(st.builds(
    lambda actions, globs, risk, conf, count, window: dict(
        actions=actions, pipelines=globs, max_risk=risk, min_confidence=conf,
        rate_limit=RateLimit(count=count, per_minutes=window)),
    st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=8, unique=True),
    st.just(["*"]) | st.lists(st.sampled_from(GLOBS), min_size=1, max_size=3, unique=True),
    st.sampled_from([Risk.HIGH, Risk.HIGH, Risk.MEDIUM, Risk.LOW]),
    st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0]) | st.floats(0, 1),
    st.integers(0, 4),
    st.integers(1, 90)), max_size=3)
proposals = st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(PIPELINES[:3] + PIPELINES[12:]),
                               st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0]) | st.floats(0, 1),
                               st.integers(0, 40)), min_size=1, max_size=14)


def _oracle(policy: Policy, action: ActionKind, pipeline: str, confidence: float, *, now: datetime,
            granted: list[tuple[str, datetime]]) -> str | None:
    """The rule that must auto-approve, written independently of engine.execution.policy."""
    for rule in policy.auto:
        allows = (action in rule.actions and any(fnmatch.fnmatchcase(pipeline, g) for g in rule.pipelines)
                  and ORDER[CATALOG[action].risk] <= ORDER[rule.max_risk] and confidence >= rule.min_confidence)
        since = now - timedelta(minutes=rule.rate_limit.per_minutes)
        used = sum(1 for name, at in granted if name == rule.name and at >= since)
        if allows and used < rule.rate_limit.count:
            return rule.name
    return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rules, proposals=proposals)
def test_auto_execution_only_within_a_rule_and_its_rate_limit(store: Store, rules, proposals) -> None:
    policy = Policy(auto=tuple(AutoRule(name=f"rule-{i}", **r) for i, r in enumerate(rules)))
    proposer = agent("property")
    granted: list[tuple[str, datetime]] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    now = T0
    with store.engine.connect() as conn:
        tx = conn.begin()
        try:
            for action, pipeline, confidence, gap in proposals:
                now += timedelta(minutes=gap)
                done = propose(conn, proposer, ProposalRequest(pipeline, action, confidence=confidence), policy,
                               now=now)
                if (pipeline, action.value) in seen:  # an identical open proposal is returned, not filed again
                    assert done.deduplicated and (done.proposal_id, done.status) == seen[(pipeline, action.value)]
                    continue
                expected = _oracle(policy, action, pipeline, confidence, now=now, granted=granted)
                assert not done.deduplicated
                assert done.verdict.auto == (expected is not None) and done.verdict.rule == expected, done.verdict
                assert done.status == ("approved" if expected else "pending")
                assert (done.run_id is not None) == (expected is not None)
                if expected:
                    granted.append((expected, now))
                seen[(pipeline, action.value)] = (done.proposal_id, done.status)
            # The store agrees: a run exists exactly for the auto-approved proposals, none for the pending ones.
            rows = conn.execute(select(P.c.id, P.c.status, P.c.policy_rule, R.c.id.label("run"))
                                .select_from(P.outerjoin(R, R.c.proposal_id == P.c.id))).all()
            assert len(rows) == len(seen)
            for row in rows:
                assert (row.status == "approved") == (row.run is not None) == (row.policy_rule is not None)
            assert conn.execute(select(func.count()).select_from(R)).scalar_one() == len(granted)
            event("some auto-approved" if granted else "none auto-approved")
            event("some waited" if len(granted) < len(seen) else "none waited")
        finally:
            tx.rollback()
