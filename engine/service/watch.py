"""Watching real pipelines: tick a CloudWatch source into the store (scores, health, incidents), resumably.

`selfheal watch` runs this: the console's pages show the pipelines, their anomaly scores and incidents with their
suspected cause. With a policy (`--policy rules`, `qlearning`, `auto`) it also decides on open incidents, as the
simulated fleet's loop does: each fix becomes a proposal that the execution policy file auto-approves or an
operator approves, and `selfheal worker --executor aws` carries it out. Without one (the default) it only detects.

Nothing is lost across a crash or a failed AWS call: every tick commits its minutes together with the
source's watermark (`watermark:cloudwatch`), a restart resumes after it (replaying the stored recent past into
the anomaly scorer first), and a failed pull consumes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from engine.detection.stage_scores import StageScorer
from engine.errors import SelfhealError
from engine.model import floor_minute
from engine.service.healing import PolicyFile, live_healer, resolve_policy
from engine.service.tick import TickResult, register, tick, warm_scorer
from engine.store import repo
from engine.store.db import Store
from engine.telemetry.cloudwatch.fleet import Fleet
from engine.telemetry.cloudwatch.source import AwsClients, CloudWatchSource

log = logging.getLogger(__name__)
FRESHNESS_KEY = "cloudwatch:freshness"


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where a watcher starts: after the stored watermark, or `backfill` minutes before now on a new store."""

    start: datetime
    from_watermark: bool


class Watcher:
    """A CloudWatch source, an anomaly scorer and the store, ticked together."""

    def __init__(self, store: Store, fleet: Fleet, clients: AwsClients, *, now: datetime, backfill_minutes: int = 120,
                 delay_minutes: int = 2, seed: int = 0, policy: str = "none",
                 policy_file: Path | None = None) -> None:
        self.store = store
        self.resumed = self._resume(store, now, backfill_minutes)
        self.source = CloudWatchSource(fleet, clients, start=self.resumed.start, delay_minutes=delay_minutes)
        self.scorer = StageScorer(seed=seed)
        self.policy_name = resolve_policy(store, policy)
        self.healer = live_healer(store, self.policy_name, PolicyFile(policy_file), seed=seed,
                                  on_capacity_change=self.scorer.rebaseline)  # refuses a bad policy before any write
        register(store, self.source)
        if self.resumed.from_watermark:
            warm_scorer(store, self.scorer, self.resumed.start - timedelta(minutes=1),
                        pipeline_ids=[p.id for p in fleet.specs])
            with store.read() as conn:
                self.source.restore_freshness(repo.get_value(conn, FRESHNESS_KEY) or {})

    @staticmethod
    def _resume(store: Store, now: datetime, backfill_minutes: int) -> Resumed:
        with store.read() as conn:
            mark = repo.get_value(conn, f"watermark:{CloudWatchSource.name}")
        if mark and mark.get("end"):
            return Resumed(datetime.fromisoformat(mark["end"]), True)
        return Resumed(floor_minute(now) - timedelta(minutes=backfill_minutes), False)

    def tick(self, now: datetime) -> TickResult:
        """Read and analyse the complete minutes up to `now` (a long gap: the first `MAX_WINDOW` of it)."""
        mark = self.source.mark()
        try:
            result = tick(self.store, self.source, now, self.scorer, self.healer)
        except SelfhealError:  # pulled but not stored (the store failed): read those minutes again next time
            self.source.rewind(mark)
            raise
        # The last freshness readings, so a restart carries them on instead of an SLO miss until the next one.
        # Kept after the tick's own transaction: lost on a crash in between, the older reading is used (older
        # is staler, so the SLO is never flattered).
        with self.store.transaction() as conn:
            repo.set_value(conn, FRESHNESS_KEY, self.source.freshness_state())
        return result

    def catch_up(self, now: datetime, stop: Callable[[], bool] = lambda: False) -> Iterator[TickResult]:
        """Tick until every complete minute before `now` is read (a long gap takes several windows), yielding each
        read as it commits; `stop()` ends it between windows (each one is committed: nothing is lost)."""
        result = self.tick(now)
        yield result
        while self.source.behind(now) and result.minutes > 0 and not stop():
            result = self.tick(now)
            yield result
