"""The append-only audit log: who did what, when and why. Data, not logging.

Writes go through `append`/`record` only (the database refuses updates and deletes); reads for the console and
exports are below.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, insert, select

from engine.store.db import Store
from engine.store.tables import ActionRunRow, AuditEntryRow

A = AuditEntryRow.__table__
R = ActionRunRow.__table__


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


# -- reads for the Audit log page and exports ---------------------------------------------------------------------

COLUMNS = ["id", "ts", "actor", "kind", "subject", "detail"]


def _frame(rows: Sequence[Any]) -> pd.DataFrame:
    return pd.DataFrame([r._asdict() for r in rows], columns=COLUMNS)


def entries(conn: Connection, *, actors: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
            subject: str | None = None, start: datetime | None = None, end: datetime | None = None,
            limit: int = 5000) -> pd.DataFrame:
    """Audit entries newest first: id, ts (UTC), actor, kind, subject, detail (a dict).

    `subject` matches as a case-insensitive substring; `start` is inclusive, `end` exclusive.
    """
    q = select(A).order_by(A.c.id.desc()).limit(limit)
    if actors:
        q = q.where(A.c.actor.in_(list(actors)))
    if kinds:
        q = q.where(A.c.kind.in_(list(kinds)))
    if subject and subject.strip():
        q = q.where(func.lower(A.c.subject).contains(subject.strip().lower(), autoescape=True))
    if start is not None:
        q = q.where(A.c.ts >= start)
    if end is not None:
        q = q.where(A.c.ts < end)
    return _frame(conn.execute(q).all())


def facets(conn: Connection) -> tuple[list[str], list[str]]:
    """The distinct actors and kinds in the log (for filter choices), sorted."""
    actors = sorted(r[0] for r in conn.execute(select(A.c.actor).distinct()))
    kinds = sorted(r[0] for r in conn.execute(select(A.c.kind).distinct()))
    return actors, kinds


def chain(conn: Connection, proposal_id: int) -> pd.DataFrame:
    """Every entry about one proposal and its run(s), oldest first: created, edited, decided, started, finished."""
    runs = [r[0] for r in conn.execute(select(R.c.id).where(R.c.proposal_id == proposal_id))]
    subjects = [f"proposal:{proposal_id}", *(f"run:{r}" for r in runs)]
    return _frame(conn.execute(select(A).where(A.c.subject.in_(subjects)).order_by(A.c.ts, A.c.id)).all())


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of audit entries; `detail` as compact JSON with sorted keys, times in ISO 8601 UTC."""
    out = frame.copy()
    if "detail" in out:
        out["detail"] = [json.dumps(d, sort_keys=True, default=str, separators=(",", ":")) for d in out["detail"]]
    if "ts" in out:
        out["ts"] = [pd.Timestamp(t).isoformat() if pd.notna(t) else "" for t in out["ts"]]
    return out.to_csv(index=False).encode("utf-8")
