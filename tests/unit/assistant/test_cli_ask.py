"""`selfheal ask` uses the same code: plain answer text, or JSON with the tool calls and any proposal."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.store.db import Store

runner = CliRunner()


def url(store: Store) -> str:
    return str(store.engine.url)


def test_ask_prints_the_answer_with_its_window(store: Store) -> None:
    result = runner.invoke(app, ["ask", "how many errors did the payments glue job throw in the last 2 hours?",
                                 "--store", url(store)])
    assert result.exit_code == 0, result.output
    assert "glue-payments-transform" in result.output
    assert "Window: last 2 h (2026-01-05 02:00 → 04:00 UTC)" in result.output.replace("\n", " ")


def test_ask_json_has_answer_tool_calls_and_proposal(store: Store) -> None:
    result = runner.invoke(app, ["ask", "restart the customers DMS task", "--json", "--store", url(store)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == "restart the customers DMS task"
    assert data["backend"] == "offline"
    assert data["proposal"]["action"] == "restart_cdc_task" and data["proposal"]["status"] == "pending"
    assert [c["name"] for c in data["tool_calls"]][-1] == "propose_action"
    assert data["tool_calls"][-1]["status"] == "approval_required"


def test_openai_backend_without_key_is_a_one_line_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = runner.invoke(app, ["ask", "hi", "--backend", "openai", "--store", url(store)])
    assert result.exit_code == 2
    assert "needs OPENAI_API_KEY" in result.output
    assert "Traceback" not in result.output
