"""App tests (AppTest) for the console: the router, the Fleet page with fault injection, the SLO page.

Each test gets its own SQLite store (SELFHEAL_DATA_DIR in tmp) and a twin that does not tick by itself
(SELFHEAL_LIVE=false): the test moves simulated time with ``runtime.advance``.
"""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.services import get_runtime, get_settings
from console.widgets import percent
from engine.errors import SelfhealError
from engine.model import Health
from engine.service.reports import data_range, fleet_snapshot, slo_report
from engine.service.runtime import EmbeddedRuntime
from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "console" / "app.py")
FLEET = str(ROOT / "pages" / "fleet.py")
SLO = str(ROOT / "pages" / "slo.py")
TIMEOUT = 60
FLEET_SIZE = 12


class _StageCells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-stage" in a:
            self.cells[(a["data-pipeline"] or "", a["data-stage"] or "")] = a["data-status"] or ""


def stage_statuses(html: str) -> dict[tuple[str, str], str]:
    """{(pipeline, stage): status} from the fleet table's stage cells."""
    parser = _StageCells()
    parser.feed(html)
    return parser.cells


def fleet_html(at: AppTest) -> str:
    tables = [h.value for h in at.html if "sh-fleet" in h.value]
    assert len(tables) == 1, "expected exactly one fleet table"
    return tables[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def run(path: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def fleet_fragment_body() -> None:
    """The Fleet page's live fragment body on its own (AppTest does not fire run_every timers)."""
    from console.fleet_panel import render_fleet
    from console.services import get_runtime, get_settings

    settings = get_settings()
    render_fleet(get_runtime(settings), slo_target=settings.slo_target)


# -- services -------------------------------------------------------------------------------------
def test_one_runtime_per_store_whatever_the_display_settings(runtime: EmbeddedRuntime, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_REFRESH_SECONDS", "5")  # display-only: same twin
    monkeypatch.setenv("SELFHEAL_SLO_TARGET", "0.95")
    assert get_runtime(get_settings()) is runtime
    other = tmp_path / "other"
    monkeypatch.setenv("SELFHEAL_DATA_DIR", str(other))
    monkeypatch.setenv("SELFHEAL_DATABASE_URL", f"sqlite:///{other}/selfheal.db")
    assert get_runtime(get_settings()) is not runtime


# -- router ---------------------------------------------------------------------------------------
def test_router_runs_and_shows_runtime_status(runtime: EmbeddedRuntime) -> None:
    at = run(APP)
    assert "Fleet health" in at.title[0].value
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert f"{runtime.status().sim_now:%Y-%m-%d %H:%M} UTC" in sidebar
    assert "Ticks:" in sidebar
    assert not at.sidebar.error


def test_router_switches_to_the_slo_page(runtime: EmbeddedRuntime) -> None:
    at = run(APP)
    at.switch_page("../pages/slo.py").run()
    assert not at.exception
    assert "SLO & MTTR" in at.title[0].value


def test_router_explains_invalid_settings(console_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_FLEET_SIZE", "0")
    at = run(APP)
    assert "SELFHEAL_FLEET_SIZE" in at.error[0].value
    assert "environment variables" in at.info[0].value
    assert not at.title  # stopped before any page ran


def test_router_explains_an_unusable_store(console_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_DATABASE_URL", "nosuchdialect://nowhere/db")
    at = run(APP)
    assert "could not start" in at.error[0].value
    assert "SELFHEAL_DATABASE_URL" in at.info[0].value


# -- fleet ----------------------------------------------------------------------------------------
def test_fleet_page_shows_every_pipeline_and_the_headline(runtime: EmbeddedRuntime) -> None:
    at = run(FLEET)
    html = fleet_html(at)
    ids = [p.id for p in runtime.pipelines()]
    assert len(ids) == FLEET_SIZE
    for pid in ids:
        assert f'<tr data-pipeline="{pid}"' in html
    cells = stage_statuses(html)
    assert len(cells) == 4 * FLEET_SIZE

    snap = fleet_snapshot(runtime.store)
    shown = metrics(at)
    assert shown["Pipelines"] == str(FLEET_SIZE)
    assert shown["Healthy"] == str(snap.count(Health.HEALTHY))
    assert shown["Degraded"] == str(snap.count(Health.DEGRADED))
    assert shown["Failed"] == str(snap.count(Health.FAILED))
    assert shown["Open incidents"] == str(snap.open_incidents)
    assert shown["SLO, last hour"] == percent(snap.slo_window)


def test_injecting_a_fault_through_the_form_fails_the_stage(runtime: EmbeddedRuntime) -> None:
    at = run(FLEET)
    assert stage_statuses(fleet_html(at))[("orders", "transform")] == "healthy"
    assert at.selectbox(key="fleet_inject_stage").value == "transform"
    assert at.selectbox(key="fleet_inject_kind").value == "schema_drift"
    at.selectbox(key="fleet_inject_pipeline").set_value("orders")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    assert not at.error
    assert "Injected schema drift on orders / transform" in at.success[0].value

    runtime.advance(3)
    body = AppTest.from_function(fleet_fragment_body, default_timeout=TIMEOUT).run()
    assert not body.exception
    cells = stage_statuses(fleet_html(body))
    assert cells[("orders", "transform")] == "failed"
    assert all(status != "failed" for (pid, _), status in cells.items() if pid != "orders")
    shown = metrics(body)
    assert shown["Failed"] == "1"
    assert shown["Open incidents"] == "1"
    assert 'data-pipeline="orders" data-status="failed"' in fleet_html(body)


def test_attention_filter_keeps_only_unhealthy_pipelines(runtime: EmbeddedRuntime) -> None:
    runtime.inject_fault("payments", "warehouse", "schema_drift")
    runtime.advance(2)
    at = AppTest.from_function(fleet_fragment_body, default_timeout=TIMEOUT).run()
    at.toggle(key="fleet_only_problems").set_value(True).run()
    assert not at.exception
    assert {pid for pid, _ in stage_statuses(fleet_html(at))} == {"payments"}


# -- SLO ------------------------------------------------------------------------------------------
def test_slo_page_renders_charts_and_exports_consistent_numbers(runtime: EmbeddedRuntime) -> None:
    runtime.inject_fault("orders", "transform", "schema_drift")
    runtime.advance(5)
    at = run(SLO)
    first, last = data_range(runtime.store)
    report = slo_report(runtime.store, first, last + timedelta(minutes=1), get_settings().slo_target)
    shown = metrics(at)
    assert shown["SLO attainment"] == percent(report.overall)
    assert shown["Incidents"] == str(len(report.incidents)) == "1"
    meeting = int(report.per_pipeline["meets_target"].sum())
    assert shown["Pipelines meeting target"] == f"{meeting} of {FLEET_SIZE}"
    assert len(at.get("plotly_chart")) == 4  # attainment, burn, MTTD/MTTR, causes
    assert len(at.dataframe) == 2
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Per-pipeline SLO (CSV)", "Incidents (CSV)"]


def test_slo_page_without_incidents_says_so(runtime: EmbeddedRuntime) -> None:
    at = run(SLO)
    assert len(at.get("plotly_chart")) == 2
    assert any("No incidents in this period" in i.value for i in at.info)
    assert len(at.get("download_button")) == 2


# -- empty store ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("page", "message"), [(FLEET, "No telemetry in the store yet"),
                                               (SLO, "No health data yet")])
def test_empty_store_shows_an_info_message(console_env: Path, monkeypatch: pytest.MonkeyPatch, page: str,
                                           message: str) -> None:
    monkeypatch.setenv("SELFHEAL_BACKFILL_MINUTES", "0")
    at = run(page)
    assert message in at.info[0].value
    assert not at.error


def test_without_a_twin_the_console_shows_the_stores_own_pipelines_and_injects_nothing(
        console_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SELFHEAL_TWIN=false: a view of a store other processes fill (`selfheal watch`; here a simulated scenario
    whose only pipeline, `foo`, is no pipeline of the built-in fleet)."""
    scenario = parse_scenario({"name": "foo-drift", "seed": 3, "duration_minutes": 90,
                               "pipelines": [{"id": "foo", "freshness_target_minutes": 20}],
                               "faults": [{"pipeline": "foo", "stage": "transform", "kind": "schema_drift",
                                           "at_minute": 60, "duration_minutes": 30, "severity": 0.9}]})
    run_scenario(scenario, store_url=get_settings().store_url)
    monkeypatch.setenv("SELFHEAL_TWIN", "false")
    rt = get_runtime(get_settings())
    assert [(p.id, p.freshness_target_minutes) for p in rt.pipelines()] == [("foo", 20.0)]  # nothing registered
    assert rt.twin_pipelines() == []
    with pytest.raises(SelfhealError, match="hosts no simulated fleet"):
        rt.advance(1)
    with pytest.raises(SelfhealError, match="hosts no simulated fleet"):
        rt.inject_fault("foo", "transform", "timeout")

    fleet = run(FLEET)
    assert set(p for p, _s in stage_statuses(fleet_html(fleet))) == {"foo"}
    assert not [e for e in fleet.expander if "Inject a fault" in e.label]
    anomalies = run(str(ROOT / "pages" / "anomalies.py"))
    assert "foo" in anomalies.selectbox(key="anom_pipeline").options
    app = run(APP)
    assert "Store view" in " ".join(m.value for m in app.sidebar.markdown)
