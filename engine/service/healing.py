"""The live decision loop, shared by every process that runs one: the console and `selfheal agent` on the staging
twin, and `selfheal watch --policy` on real pipelines. Its actions become proposals: the execution policy file
auto-approves what it allows, the rest waits for an operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from engine.decision.qlearning import QParams
from engine.errors import SelfhealError
from engine.execution import policy as policy_mod
from engine.execution.gateway import ProposalGateway
from engine.feedback import memory
from engine.feedback.bench import make_policy
from engine.feedback.loop import Healer
from engine.model import Stage
from engine.security.roles import agent as agent_principal
from engine.store.db import Store

log = logging.getLogger(__name__)
LIVE_POLICIES = ("qlearning", "rules", "manual", "none")  # what may decide live ("auto" resolves to one of them)


class PolicyFile:
    """The execution policy file's current content: re-read when it changes, the default while it does not exist.

    An invalid file keeps the last good policy in force and logs why (a broken edit must not open the gates);
    `selfheal policy check` and the Approvals page refuse to save an invalid one in the first place."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._cache: tuple[float | None, policy_mod.Policy] | None = None

    def __call__(self) -> policy_mod.Policy:
        try:
            mtime = self.path.stat().st_mtime if self.path is not None and self.path.exists() else None
        except OSError:
            mtime = None
        if self._cache is not None and self._cache[0] == mtime:
            return self._cache[1]
        try:
            current = policy_mod.load(self.path)
        except SelfhealError as e:
            log.error("keeping the previous execution policy: %s", e)
            current = self._cache[1] if self._cache else policy_mod.NO_AUTO
        self._cache = (mtime, current)
        return current


def resolve_policy(store: Store, policy: str) -> str:
    """"auto": the learned policy once a Q-table was trained into this store, else the runbook."""
    if policy != "auto":
        return policy
    return "qlearning" if memory.load_policy(store).table.values else "rules"


def live_healer(store: Store, policy: str, execution_policy: Callable[[], policy_mod.Policy], *, seed: int,
                on_capacity_change: Callable[[str, Stage], None] | None) -> Healer | None:
    """The decision loop for `policy` ("none": detection only), proposing through the approval queue.

    The learned policy starts from the store's Q-table and keeps learning live; it explores a little (ε at its
    floor), which stays within what the execution policy lets through."""
    if policy not in LIVE_POLICIES:
        raise SelfhealError(f"unknown live policy {policy!r}; one of auto, {', '.join(LIVE_POLICIES)} (the "
                            "oracle reads the twin's truth: benchmarks only)")
    if policy == "none":
        return None
    if policy == "qlearning":
        # ε at its floor and no systematic try of every untried action: exploration stays small on live data.
        agent = memory.load_policy(store, params=QParams(min_tries=0), explore=True, learning=True)
        if not agent.table.values:
            raise SelfhealError("the qlearning policy needs a trained table: run `selfheal train` first "
                                "(or use the policy auto, which uses the runbook until then)")
        agent.episodes = max(agent.episodes, 10_000)
        chosen = agent  # learns from every outcome and every rejection, persisted each tick
    else:
        chosen = make_policy(policy, _NoTruth, None)
    return Healer(chosen, ProposalGateway(execution_policy, agent_principal(policy)),
                  rng=np.random.default_rng([seed, 5]), on_capacity_change=on_capacity_change)


class _NoTruth:
    """A live loop offers no oracle: only benchmarks may read the twin's truth."""

    def truth(self, pipeline_id: str, ts: datetime) -> list:
        raise SelfhealError("the oracle policy is for benchmarks only")
