"""Fixtures shared by the whole suite: database URLs and an isolated environment.

Tests that need a real service (PostgreSQL, Chromium) skip when it is missing, except
when ``SELFHEAL_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then a missing service fails
the test, so CI cannot go green by skipping them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

TEST_DATABASE_ENV = "SELFHEAL_TEST_DATABASE_URL"


def require_services(reason: str) -> NoReturn:
    """Skip the current test because a service is missing, or fail it when services are required."""
    if os.environ.get("SELFHEAL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


SERVICE_MARKERS = ("postgres", "browser")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Write each test's service markers into junit.xml, where .ci/run checks none was skipped."""
    for item in items:
        for marker in SERVICE_MARKERS:
            if item.get_closest_marker(marker):
                item.user_properties.append(("marker", marker))


@contextmanager
def fresh_database(admin: Engine) -> Iterator[str]:
    """Create a uniquely named PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"selfheal_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the database named by SELFHEAL_TEST_DATABASE_URL, used to create/drop."""
    raw = os.environ.get(TEST_DATABASE_ENV)
    if not raw:
        require_services(
            f"{TEST_DATABASE_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    url = make_url(raw)
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        engine.dispose()
        require_services(f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable: {e}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """URL of a fresh PostgreSQL database shared by the whole session."""
    with fresh_database(pg_admin) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file in this test's tmp dir."""
    return f"sqlite:///{tmp_path}/selfheal.db"


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once on SQLite and once on a fresh PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    with fresh_database(request.getfixturevalue("pg_admin")) as url:
        yield url


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SELFHEAL_DATA_DIR and SELFHEAL_DATABASE_URL at a fresh tmp dir; return that dir."""
    data_dir = tmp_path / "selfheal-data"
    data_dir.mkdir()
    monkeypatch.setenv("SELFHEAL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SELFHEAL_DATABASE_URL", f"sqlite:///{data_dir}/selfheal.db")
    return data_dir
