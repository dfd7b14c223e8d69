"""Repositories of the decision layer: the Q-table (q_values) and every learning step (transitions).

Plain values in and out (state and action names, numbers); the decision layer builds its own types on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select, update

from engine.store.repo import get_value, set_value
from engine.store.tables import QValueRow, TransitionRow


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    policy: str
    ts: datetime
    pipeline_id: str
    incident_id: int | None
    state: str
    action: str
    reward: float
    next_state: str | None
    done: bool
    minutes: int
    outcome: str
    q_before: float | None
    q_after: float | None
    source: str = "live"


def load_q_values(conn: Connection, policy: str) -> list[tuple[str, str, float, int]]:
    """(state, action, value, visits) of a policy, sorted by state and action."""
    t = QValueRow.__table__
    rows = conn.execute(select(t.c.state, t.c.action, t.c.value, t.c.visits).where(t.c.policy == policy)
                        .order_by(t.c.state, t.c.action))
    return [(r.state, r.action, float(r.value), int(r.visits)) for r in rows]


def replace_q_values(conn: Connection, policy: str, values: Iterable[tuple[str, str, float, int]],
                     now: datetime) -> int:
    """Replace a policy's whole table (after training); returns the number of rows written."""
    t = QValueRow.__table__
    conn.execute(delete(t).where(t.c.policy == policy))
    rows = [{"policy": policy, "state": s, "action": a, "value": v, "visits": n, "updated_at": now}
            for s, a, v, n in values]
    if rows:
        conn.execute(insert(t), rows)
    return len(rows)


def upsert_q_values(conn: Connection, policy: str, values: Iterable[tuple[str, str, float, int]],
                    now: datetime) -> None:
    """Write some (state, action) values of a policy (live learning), inserting the new ones."""
    t = QValueRow.__table__
    for s, a, v, n in values:
        where = (t.c.policy == policy) & (t.c.state == s) & (t.c.action == a)
        if conn.execute(update(t).where(where).values(value=v, visits=n, updated_at=now)).rowcount == 0:
            conn.execute(insert(t).values(policy=policy, state=s, action=a, value=v, visits=n, updated_at=now))


def insert_transitions(conn: Connection, records: Sequence[TransitionRecord]) -> None:
    if records:
        conn.execute(insert(TransitionRow.__table__), [
            {"policy": r.policy, "ts": r.ts, "pipeline_id": r.pipeline_id, "incident_id": r.incident_id,
             "state": r.state, "action": r.action, "reward": r.reward, "next_state": r.next_state, "done": r.done,
             "minutes": r.minutes, "outcome": r.outcome, "q_before": r.q_before, "q_after": r.q_after,
             "source": r.source} for r in records])


def recent_transitions(conn: Connection, policy: str, limit: int = 50) -> pd.DataFrame:
    """The newest transitions of a policy, newest first."""
    t = TransitionRow.__table__
    cols = [t.c.id, t.c.ts, t.c.source, t.c.pipeline_id, t.c.incident_id, t.c.state, t.c.action, t.c.reward,
            t.c.next_state, t.c.done, t.c.minutes, t.c.outcome, t.c.q_before, t.c.q_after]
    rows = conn.execute(select(*cols).where(t.c.policy == policy).order_by(t.c.id.desc()).limit(limit)).all()
    return pd.DataFrame(rows, columns=[c.name for c in cols])


def count_transitions(conn: Connection, policy: str) -> int:
    t = TransitionRow.__table__
    return int(conn.scalar(select(func.count()).select_from(t).where(t.c.policy == policy)) or 0)


def _curve_key(policy: str) -> str:
    return f"training:{policy}"


def save_training(conn: Connection, policy: str, summary: dict[str, Any]) -> None:
    """Keep the last training run's summary and learning curve (episode records) for the console."""
    set_value(conn, _curve_key(policy), summary)


def load_training(conn: Connection, policy: str) -> dict[str, Any] | None:
    return get_value(conn, _curve_key(policy))
