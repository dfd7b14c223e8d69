"""Fixtures for the AppTest suite: a fresh store per test and the runtime the pages share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console.services import get_runtime, get_settings
from engine.service.runtime import EmbeddedRuntime

FLEET_SIZE = 12


@pytest.fixture
def console_env(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh store, a small fleet with two hours of history, no background ticking."""
    monkeypatch.setenv("SELFHEAL_LIVE", "false")
    monkeypatch.setenv("SELFHEAL_BACKFILL_MINUTES", "120")
    monkeypatch.setenv("SELFHEAL_FLEET_SIZE", str(FLEET_SIZE))
    yield isolated_env
    get_runtime.clear()  # stops and forgets this test's runtime (on_release)


@pytest.fixture
def runtime(console_env: Path) -> EmbeddedRuntime:
    """The same cached runtime the pages get."""
    return get_runtime(get_settings())
