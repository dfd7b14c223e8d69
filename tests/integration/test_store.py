"""The store on SQLite and on the real PostgreSQL: migrations, round-trips, one transaction per tick."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from engine.errors import StoreError
from engine.model import (
    Event,
    EventKind,
    Health,
    Incident,
    IncidentStatus,
    PipelineHealth,
    PipelineSpec,
    Stage,
    StageHealth,
    StageSample,
    TelemetryBatch,
)
from engine.service.tick import ingest, register, tick
from engine.sim.scenario import PipelineConfig
from engine.sim.twin import Twin
from engine.store import repo
from engine.store.db import Store
from engine.store.tables import PipelineHealthRow, QValueRow, StageMinuteRow
from engine.telemetry.simulator import SimulatorSource

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url):
    s = Store.open(db_url)
    yield s
    s.dispose()


def test_migrations_reach_head_and_reopen_is_idempotent(db_url):
    first = Store.open(db_url)
    assert first.revision() == Store.head() == "0005"
    first.dispose()
    again = Store.open(db_url)
    assert again.revision() == Store.head()
    again.dispose()


def test_pipelines_upsert_and_list(store):
    with store.transaction() as conn:
        repo.upsert_pipelines(conn, [PipelineSpec("orders", 15.0, {Stage.SOURCE: "dms-orders"})], "simulator")
        repo.upsert_pipelines(conn, [PipelineSpec("orders", 30.0, {Stage.SOURCE: "dms-orders-v2"}),
                                     PipelineSpec("payments", 15.0)], "simulator")
    with store.read() as conn:
        got = repo.list_pipelines(conn)
    assert [p.id for p in got] == ["orders", "payments"]
    assert got[0].freshness_target_minutes == 30.0 and got[0].component(Stage.SOURCE) == "dms-orders-v2"


def test_telemetry_and_health_round_trip_with_aware_utc_times(store):
    ts = T0 + timedelta(minutes=1)
    sample = StageSample("orders", Stage.SOURCE, ts, {"cpu_pct": 41.5, "cdc_lag_s": 3.25})
    health = StageHealth("orders", Stage.SOURCE, ts, Health.DEGRADED, "cpu_pct=41 ≥ 40")
    event = Event("orders", Stage.SOURCE, ts, EventKind.LOG, "naïve text with ünïcode and 'quotes'", "warning")
    ph = PipelineHealth("orders", ts, Health.DEGRADED, 4.5, {Stage.SOURCE: Health.DEGRADED}, True)
    with store.transaction() as conn:
        repo.insert_stage_minutes(conn, [sample], [health])
        repo.insert_events(conn, [event])
        repo.insert_pipeline_health(conn, [ph])
    with store.read() as conn:
        frame = repo.stage_frame(conn, T0, T0 + timedelta(hours=1))
        events = repo.events_between(conn, T0, T0 + timedelta(hours=1), min_level="warning")
        healths = repo.pipeline_health_frame(conn, T0, T0 + timedelta(hours=1))
        assert repo.latest_health_ts(conn) == ts
    row = frame.iloc[0]
    assert row.ts == ts and row.ts.tzinfo is not None
    assert row.cpu_pct == 41.5 and row.cdc_lag_s == 3.25 and row.status == "degraded"
    assert row.memory_pct is None or row.memory_pct != row.memory_pct  # absent metric stays empty
    assert events == [event]
    assert healths.iloc[0].freshness_minutes == 4.5 and bool(healths.iloc[0].slo_healthy)
    with pytest.raises(ValueError, match="unknown metric"), store.read() as conn:
        repo.stage_frame(conn, T0, T0, metrics=("cpu_pct; drop table x",))


def test_naive_datetimes_are_refused(store):
    with pytest.raises(StoreError, match="naive datetime"), store.transaction() as conn:
        repo.insert_events(conn, [Event("o", Stage.SOURCE, datetime(2026, 1, 1), EventKind.LOG, "x")])


def test_incidents_insert_update_and_window_queries(store):
    inc = Incident(None, "orders", IncidentStatus.OPEN, T0, T0, Stage.TRANSFORM, "schema_drift", 0.6,
                   {"log_lines": [{"message": "column x"}]}, updated_at=T0)
    with store.transaction() as conn:
        new_id = repo.save_incident(conn, inc)
    with store.read() as conn:
        assert [i.id for i in repo.open_incidents(conn)] == [new_id]
    closed = Incident(new_id, "orders", IncidentStatus.CLOSED, T0, T0, Stage.TRANSFORM, "schema_drift", 0.6,
                      inc.evidence, closed_at=T0 + timedelta(minutes=30), updated_at=T0 + timedelta(minutes=32))
    with store.transaction() as conn:
        assert repo.save_incident(conn, closed) == new_id
    with store.read() as conn:
        assert repo.open_incidents(conn) == []
        (got,) = repo.incidents_between(conn, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
        assert repo.incidents_between(conn, T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == []
    assert got.closed_at == T0 + timedelta(minutes=30) and got.evidence == inc.evidence


def test_key_values_and_agent_state_tables(store):
    with store.transaction() as conn:
        repo.set_value(conn, "watermark:x", {"end": "a"})
        repo.set_value(conn, "watermark:x", {"end": "b"})
        conn.execute(insert(QValueRow.__table__).values(policy="q", state="s", action="restart_task", value=-1.5,
                                                         visits=3, updated_at=T0))
    with store.read() as conn:
        assert repo.get_value(conn, "watermark:x") == {"end": "b"}
        assert repo.get_value(conn, "missing") is None
        assert conn.execute(select(QValueRow.__table__.c.value)).scalar_one() == -1.5


def _twin_source():
    twin = Twin([PipelineConfig(id="orders"), PipelineConfig(id="payments")], seed=4, start=T0)
    return twin, SimulatorSource(twin)


def test_a_tick_writes_everything_or_nothing(store):
    _twin, source = _twin_source()
    register(store, source)
    batch = source.pull(T0 + timedelta(minutes=5))
    ingest(store, source, batch)
    with store.read() as conn:
        before = conn.scalar(select(func.count()).select_from(StageMinuteRow.__table__))
        mark = repo.get_value(conn, "watermark:simulator")
    # The next batch carries one minute already stored: the whole tick must roll back.
    later = source.pull(T0 + timedelta(minutes=8))
    bad = TelemetryBatch(later.start, later.end, later.samples + batch.samples[:1], later.events)
    with pytest.raises(StoreError):
        ingest(store, source, bad)
    with store.read() as conn:
        assert conn.scalar(select(func.count()).select_from(StageMinuteRow.__table__)) == before == 5 * 2 * 4
        assert conn.scalar(select(func.max(PipelineHealthRow.__table__.c.ts))) == T0 + timedelta(minutes=4)
        assert repo.get_value(conn, "watermark:simulator") == mark


def test_ticks_over_a_fault_open_and_close_an_incident(store):
    twin, source = _twin_source()
    register(store, source)
    twin.inject_fault("orders", "transform", "schema_drift", at_minute=20)
    for k in range(1, 5):
        tick(store, source, T0 + timedelta(minutes=15 * k))
    with store.read() as conn:
        (inc,) = repo.open_incidents(conn)
    assert inc.pipeline_id == "orders" and inc.stage is Stage.TRANSFORM and inc.error_type == "schema_drift"
    assert inc.onset_at == T0 + timedelta(minutes=20)
    twin.apply_action("orders", "remap_schema", stage="transform")
    tick(store, source, T0 + timedelta(minutes=180))
    with store.read() as conn:
        assert repo.open_incidents(conn) == []
        (done,) = repo.incidents_between(conn, T0, T0 + timedelta(hours=3))
    assert done.id == inc.id and done.closed_at is not None and done.closed_at > T0 + timedelta(minutes=60)


def test_bad_urls_give_a_clear_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot use database URL"):
        Store.open("nosuchdialect://x")
    with pytest.raises(StoreError, match="cannot migrate the store") as e:
        Store.open("postgresql+psycopg://nobody:s3cr3t@127.0.0.1:1/none?connect_timeout=2")
    assert "s3cr3t" not in str(e.value)


def test_upgrading_a_populated_store_keeps_its_data(db_url):
    old = Store.open(db_url, migrate=False)
    old.upgrade("0001")
    with old.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO stage_minutes (pipeline_id, stage, ts, cpu_pct, status, reason) "
            "VALUES ('orders', 'source', '2026-03-01 12:00:00', 12.5, 'healthy', '')")
    old.upgrade()
    assert old.revision() == Store.head()
    with old.read() as conn:
        frame = repo.stage_frame(conn, T0 - timedelta(days=1), T0 + timedelta(days=1), metrics=("cpu_pct",))
        score = conn.execute(select(StageMinuteRow.__table__.c.anomaly_score)).scalar_one()
    assert frame.iloc[0].cpu_pct == 12.5 and score is None
    old.dispose()
