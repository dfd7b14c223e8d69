"""The append-only audit log: who did what, when and why. Data, not logging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from engine.store.db import Store
from engine.store.tables import AuditEntryRow


def record(store: Store, *, actor: str, kind: str, subject: str, detail: dict[str, Any] | None = None,
           at: datetime | None = None) -> None:
    """Append one audit entry in its own transaction."""
    with store.transaction() as conn:
        conn.execute(insert(AuditEntryRow.__table__).values(ts=at or datetime.now(UTC), actor=actor, kind=kind,
                                                            subject=subject, detail=detail or {}))
