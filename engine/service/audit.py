"""The append-only audit log: who did what, when and why. Data, not logging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert

from engine.store.db import Store
from engine.store.tables import AuditEntryRow


def append(conn: Connection, *, actor: str, kind: str, subject: str, detail: dict[str, Any] | None = None,
           at: datetime | None = None) -> None:
    """Append one audit entry inside the caller's transaction, so it lands with the change it records."""
    conn.execute(insert(AuditEntryRow.__table__).values(ts=at or datetime.now(UTC), actor=actor, kind=kind,
                                                        subject=subject, detail=detail or {}))


def record(store: Store, *, actor: str, kind: str, subject: str, detail: dict[str, Any] | None = None,
           at: datetime | None = None) -> None:
    """Append one audit entry in its own transaction (for events with nothing else to write)."""
    with store.transaction() as conn:
        append(conn, actor=actor, kind=kind, subject=subject, detail=detail, at=at)
