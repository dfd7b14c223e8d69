"""AppTest for the Anomalies page: the chart, the score of the newest minute, incidents with evidence."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from engine.model import Stage
from engine.service.reports import anomaly_view, data_range
from engine.service.runtime import EmbeddedRuntime

TIMEOUT = 60
ANOMALIES = str(Path(__file__).resolve().parents[2] / "pages" / "anomalies.py")


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_a_hung_task_shows_as_an_anomaly_with_its_incident(runtime: EmbeddedRuntime):
    runtime.inject_fault("payments", "transform", "timeout")
    runtime.advance(6)
    at = AppTest.from_file(ANOMALIES, default_timeout=TIMEOUT).run()
    assert not at.exception
    # The open incident picks the pipeline and stage to show.
    assert at.selectbox(key="anom_pipeline").value == "payments"
    assert at.selectbox(key="anom_stage").value == "transform"
    first, last = data_range(runtime.store)
    view = anomaly_view(runtime.store, "payments", Stage.TRANSFORM, first, last + timedelta(minutes=1),
                        alarm_at=runtime.scorer.alarm_at)
    newest = view.series.iloc[-1]
    assert newest.anomaly_score >= runtime.scorer.alarm_at
    assert _metric(at, "Score now") == f"{newest.anomaly_score:.3f}"
    assert _metric(at, "Status now") == "failed"
    assert len(at.get("plotly_chart")) == 1
    (exp,) = [e for e in at.expander if "timeout at transform" in e.label]
    assert "open" in exp.label
    assert any("no progress" in c.value for c in at.code)


def test_switching_to_a_calm_stage_and_an_empty_window(runtime: EmbeddedRuntime):
    at = AppTest.from_file(ANOMALIES, default_timeout=TIMEOUT).run()
    assert not at.exception
    at.selectbox(key="anom_pipeline").select("orders").run()
    at.selectbox(key="anom_stage").select("source").run()
    assert not at.exception
    assert float(_metric(at, "Score now")) < runtime.scorer.alarm_at
    assert _metric(at, "Status now") == "healthy"
    assert any("No incidents in this window" in s.value for s in at.success)
