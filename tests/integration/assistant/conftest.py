"""Fixtures for the assistant's unit tests: a seeded store built once, copied per test."""

from tests.support.assistant_store import empty_store, scenario_db, store  # noqa: F401 (fixtures)
