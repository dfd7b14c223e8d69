"""The audit log is append-only in the database itself (triggers from migration 0004), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, text, update

from engine.errors import StoreError
from engine.service.audit import record
from engine.store.db import Store
from engine.store.tables import AuditEntryRow

A = AuditEntryRow.__table__


def test_the_database_refuses_to_change_or_delete_audit_entries(db_url: str) -> None:
    store = Store.open(db_url)
    record(store, actor="olga", kind="proposal_approved", subject="proposal:1", detail={"reason": "go"})
    for statement in (update(A).values(actor="mallory"), delete(A), text("DELETE FROM audit_entries")):
        with pytest.raises(StoreError, match="append-only"), store.transaction() as conn:
            conn.execute(statement)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(A)).scalar_one() == 1
        assert conn.execute(select(A.c.actor)).scalar_one() == "olga"
    record(store, actor="system", kind="proposal_expired", subject="proposal:2")  # appending still works
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(A)).scalar_one() == 2
    store.dispose()
