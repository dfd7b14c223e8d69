"""The assistant's repositories and tools on SQLite and on the real PostgreSQL (marker `postgres`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from engine.assistant import ToolStatus, ask
from engine.assistant.analyst import OfflineAnalyst
from engine.assistant.context import ToolContext
from engine.assistant.tools import call_tool
from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario
from engine.store.db import Store
from engine.store.tables import ProposalRow
from tests.support.assistant_store import SCENARIO


@pytest.fixture
def simulated(db_url: str) -> Iterator[Store]:
    run_scenario(parse_scenario(SCENARIO), store_url=db_url)
    store = Store.open(db_url)
    yield store
    store.dispose()


def test_every_tool_answers_on_this_database(simulated: Store) -> None:
    ctx = ToolContext(simulated)
    calls = {
        "get_metric": {"pipeline": "glue-orders-transform", "metric": "cpu_pct", "aggregation": "p95"},
        "count_errors": {"window": "today"},
        "list_anomalies": {"window": "all"},
        "explain_incident": {"pipeline": "payments"},
        "search_knowledge": {"query": "missing column", "source": "logs", "window": "all"},
        "fleet_status": {},
    }
    for name, args in calls.items():
        assert call_tool(ctx, name, args).result.status is ToolStatus.SUCCESS, name
    ranked = call_tool(ctx, "get_metric", {"metric": "cpu_pct", "stage": "transform", "aggregation": "avg"})
    assert len(ranked.result.data["results"]) == 3
    health = call_tool(ctx, "list_anomalies", {"pipeline": "payments", "window": "all"}).result.data["health"]
    assert health[0]["unhealthy_minutes"] > 0


def test_a_chat_proposal_lands_once(simulated: Store) -> None:
    analyst = OfflineAnalyst(simulated)
    first = ask(analyst, "restart the customers CDC task")
    again = ask(analyst, "please restart the customers CDC task")
    assert first.proposal is not None and again.proposal is not None
    assert again.proposal["deduplicated"]
    with simulated.read() as conn:
        rows = conn.execute(select(ProposalRow.__table__)).all()
    assert [(r.action, r.stage, r.origin, r.status) for r in rows] == [("restart_cdc_task", "source", "chat",
                                                                        "pending")]
