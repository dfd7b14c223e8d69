"""The agent's memory in the store: its Q-table survives restarts, and every learning step is recorded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection

from engine.decision.qlearning import QLearningPolicy, QParams, QTable
from engine.decision.state import upgrade_key
from engine.feedback.loop import Learned
from engine.feedback.training import TrainingRun
from engine.model import ActionKind
from engine.store import decision_repo
from engine.store.db import Store

POLICY = "qlearning"


def table_from_rows(rows: Iterable[tuple[str, str, float, int]]) -> QTable:
    """The Q-table stored as (state, action, value, visits) rows. Rows under a state key of an older encoding
    (`upgrade_key`) are merged into the current key, visit-weighted, unless a row under the current key exists:
    that one was learned since and stands. Rows for actions the catalog no longer has are skipped."""
    rows = list(rows)
    current = {(s, a) for s, a, _, _ in rows if upgrade_key(s) == s}
    merged: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for state, action, value, visits in rows:
        key = (upgrade_key(state), action)
        if key[0] == state or key not in current:
            merged.setdefault(key, []).append((value, visits))
    table = QTable()
    for (state, action), values in merged.items():
        value = values[0][0]  # one row: exactly as stored
        if len(values) > 1:
            value = sum(v * max(n, 1) for v, n in values) / sum(max(n, 1) for _, n in values)
        try:
            table.set(state, ActionKind(action), value, sum(n for _, n in values))
        except ValueError:
            continue  # an action the catalog no longer has
    return table


def load_table(conn: Connection, policy: str = POLICY) -> QTable:
    return table_from_rows(decision_repo.load_q_values(conn, policy))


def load_policy(store: Store, *, params: QParams | None = None, explore: bool = False,
                learning: bool = True, policy: str = POLICY) -> QLearningPolicy:
    """The learned policy as the store holds it (an empty table when nothing was trained yet)."""
    with store.read() as conn:
        table = load_table(conn, policy)
        training = decision_repo.load_training(conn, policy) or {}
    return QLearningPolicy(table, params, explore=explore, learning=learning,
                           episodes=int(training.get("episodes_total", 0)))


def save_table(conn: Connection, table: QTable, *, policy: str = POLICY, now: datetime | None = None) -> int:
    rows = [(s, a.value, v, n) for s, a, v, n in table.items()]
    return decision_repo.replace_q_values(conn, policy, rows, now or datetime.now(UTC))


def records_of(learned: Sequence[Learned], *, policy: str = POLICY, source: str = "live"
               ) -> list[decision_repo.TransitionRecord]:
    return [decision_repo.TransitionRecord(
        policy, x.transition.ts, x.transition.pipeline_id, x.transition.incident_id, x.transition.state,
        x.transition.action.value, round(x.transition.reward, 4), x.transition.next_state, x.transition.done,
        x.transition.minutes, x.status.value, None if x.update is None else round(x.update.q_before, 4),
        None if x.update is None else round(x.update.q_after, 4), source) for x in learned]


def persist_learning(conn: Connection, table: QTable, learned: Sequence[Learned], *, policy: str = POLICY,
                     now: datetime | None = None, source: str = "live") -> None:
    """Record transitions and write the Q-values they moved (one transaction: the caller's)."""
    if not learned:
        return
    decision_repo.insert_transitions(conn, records_of(learned, policy=policy, source=source))
    touched = {(x.transition.state, x.transition.action) for x in learned if x.update is not None}
    rows = [(s, a.value, table.q(s, a), table.visits.get(s, {}).get(a, 0)) for s, a in sorted(touched)]
    decision_repo.upsert_q_values(conn, policy, rows, now or datetime.now(UTC))


def record_training(conn: Connection, agent: QLearningPolicy, run: TrainingRun, *, seed: int, keep: int = 500,
                    now: datetime | None = None) -> None:
    """Store what a training run leaves: the table it ended with (after checkpoint selection, the kept one,
    replacing the stored table), its newest `keep` transitions as history, and its summary (learning curve,
    checkpoints) for the Agent page. The caller's transaction."""
    now = now or datetime.now(UTC)
    save_table(conn, agent.table, now=now)
    decision_repo.insert_transitions(conn, records_of(run.learned[-keep:] if keep else [], source="training"))
    decision_repo.save_training(conn, POLICY, run.summary(seed=seed, episodes_total=agent.episodes))
