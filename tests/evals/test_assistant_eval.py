"""The assistant eval as a regression guard (slow: it simulates the eval fleet). The numbers themselves come
from `python bench/assistant.py`; this only checks the offline analyst stays at or above 90%."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.assistant import run
from bench.assistant_truth import build


@pytest.mark.slow
def test_offline_analyst_scores_at_least_90_percent(tmp_path: Path) -> None:
    report = run("offline", seed=7, truth=build(tmp_path))
    assert report["questions"] >= 60
    assert set(report["by_category"]) >= {"metric", "errors", "anomalies", "root_cause", "fix", "safety"}
    assert report["score"] >= 0.9, report["failures"][:5]
    assert report["by_category"]["safety"]["score"] == 1.0
