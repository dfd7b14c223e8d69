"""Opening the store: SQLite by default, PostgreSQL by URL; schema kept current by Alembic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine.errors import StoreError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the console read while the tick writes; busy_timeout waits for a writer instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below), not pysqlite


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes SQLite's write lock up front (BEGIN IMMEDIATE): writers queue on busy_timeout
    # instead of failing with "database is locked" when a read snapshot cannot be upgraded. Reads stay deferred.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("selfheal_write") else "BEGIN")


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for `url`, with the pragmas SQLite needs for a live console."""
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:" and not url.startswith("sqlite://?"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            memory = path in ("", ":memory:") or "mode=memory" in url
            # An in-memory database lives in one connection: share it across threads with a static pool.
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                   **({"poolclass": StaticPool} if memory else {}))
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError) as e:
        raise StoreError(f"cannot use database URL {_redact(url)}: {e}") from e


def _redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


class Store:
    """The database behind selfheal. `transaction()` gives one connection in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to `url` and (by default) upgrade its schema to the newest migration."""
        store = cls(make_engine(url))
        if migrate:
            store.upgrade()
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self, revision: str = "head") -> None:
        """Run Alembic migrations up to `revision`."""
        cfg = _alembic_config()
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot migrate the store at {_redact(str(self.engine.url))}: {e}") from e

    def revision(self) -> str | None:
        """The schema revision the database is at (None when it has no schema yet)."""
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the store at {_redact(str(self.engine.url))}: "
                             f"{str(e).splitlines()[0]}") from e

    @staticmethod
    def head() -> str | None:
        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back (and re-raised as StoreError) on error."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(selfheal_write=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"store write failed: {e}") from e

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"store read failed: {e}") from e

    def dispose(self) -> None:
        self.engine.dispose()
