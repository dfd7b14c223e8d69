"""The healer: for each open incident choose an action, run it, verify the outcome, reward it and learn.

One `Healer` serves a fleet. Each minute (or tick) the caller hands it the analysis of the newest minute
(`MinuteView`s) and the incidents that are open or closed now; `observe` accounts the minutes, polls running
actions, turns finished steps into transitions and learns from them; `decide` chooses and submits the next
action for every incident that is ready. The tick and the in-memory arena call exactly this code.

Two faults at once are worked on side by side: while a step acts on one stage, a second stage in real trouble
(failing, or over a static limit) that no running step touches gets its own decision, from an observation
focused on it and among the actions that land on it (`parallel`; at most one step per stage). Before, the
second fault waited until the first fix had been verified. A human owning the incident stops all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from engine.decision.policy import Choice, Policy, Transition, Update
from engine.decision.state import ANOMALY_PREFIX, MinuteView, Observation, encode, held_back, observe, root_stage
from engine.errors import SelfhealError
from engine.execution.catalog import CATALOG, ActionSpec, available
from engine.execution.executor import ActionRequest, ExecStatus, Execution, Executor
from engine.feedback.reward import RewardWeights, rejection_reward, step_reward
from engine.model import EPOCH, ActionKind, Health, Incident, Stage

log = logging.getLogger(__name__)
SETTLE_MINUTES = 20  # how long past an action's completion the loop keeps watching a pipeline that is recovering
EXPLORING_CONFIDENCE = 0.3  # an exploratory choice is never more confident than this (policies read it)


def _forget_last(history: list[tuple[ActionKind, int, Stage]], action: ActionKind) -> None:
    for k in range(len(history) - 1, -1, -1):
        if history[k][0] is action:
            del history[k]
            return


def minute_of(ts: datetime) -> int:
    return round((ts - EPOCH).total_seconds() / 60)


@dataclass(slots=True)
class _Step:
    """An action taken and not yet judged."""

    state: str
    choice: Choice
    execution: Execution
    cost: float
    verify_until: int | None = None
    completed: int | None = None
    hands_off: bool = False  # a human owns the incident: the step lasts until it closes (or the page fails)
    concurrent: bool = False  # taken beside another running step
    freshness: float | None = None  # freshness at the last check while settling
    minutes: int = 0
    unhealthy: int = 0


@dataclass(slots=True)
class _Episode:
    """The healer's memory of one incident."""

    incident_id: int | None
    opened_at: datetime
    attempts: int = 0
    steps: int = 0
    last_action: ActionKind | None = None
    history: list[tuple[ActionKind, int, Stage]] = field(default_factory=list)  # (action, start minute, stage)
    running: list[_Step] = field(default_factory=list)  # steps taken and not yet judged (one per stage, waits aside)
    reward: float = 0.0
    cost: float = 0.0
    escalated: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    pipeline_id: str
    incident_id: int | None
    ts: datetime
    state: str
    choice: Choice
    execution: Execution


@dataclass(frozen=True, slots=True)
class Learned:
    """A transition and what learning from it changed (None for baselines)."""

    transition: Transition
    update: Update | None
    status: ExecStatus
    ref: str | None = None  # the execution (e.g. "proposal:12") whose outcome this was


@dataclass(frozen=True, slots=True)
class EpisodeEnd:
    pipeline_id: str
    incident_id: int | None
    opened_at: datetime
    closed_at: datetime | None
    actions: int  # actions other than waiting
    cost: float
    reward: float
    escalated: bool
    recovered: bool


@dataclass(slots=True)
class StepResult:
    decisions: list[Decision] = field(default_factory=list)
    learned: list[Learned] = field(default_factory=list)
    ended: list[EpisodeEnd] = field(default_factory=list)


class Healer:
    """Decision and feedback for every incident of a fleet; see the module docstring."""

    def __init__(self, policy: Policy, executor: Executor, *, rng: np.random.Generator,
                 weights: RewardWeights | None = None, catalog: Mapping[ActionKind, ActionSpec] = CATALOG,
                 on_capacity_change: Callable[[str, Stage], None] | None = None, parallel: bool = True) -> None:
        self.policy = policy
        self.parallel = parallel
        self.executor = executor
        self.rng = rng
        self.weights = weights or RewardWeights()
        self.catalog = catalog
        self.on_capacity_change = on_capacity_change
        self.episodes: dict[str, _Episode] = {}
        # Capacity changes still under way when their incident ended: (pipeline, execution ref). Polled until
        # they land, so the scorer still learns the new level (see `_watch_landings`).
        self.landing: list[tuple[str, str]] = []
        # Action starts for incidents that have ended, per pipeline, while their cooldown may still run: a
        # cooldown guards a component, not an incident (see `_remember`).
        self.recent: dict[str, list[tuple[ActionKind, int, Stage]]] = {}

    # -- phase 1: account, verify, reward, learn ------------------------------------------------
    def observe(self, ts: datetime, views: Mapping[str, MinuteView], open_incidents: Mapping[str, Incident],
                closed: Mapping[str, Incident], elapsed: Mapping[str, tuple[int, int]] | None = None) -> StepResult:
        """Account the minutes up to `ts` for every incident; learn from every step that ended.

        `elapsed` gives per pipeline (minutes, SLO-unhealthy minutes) since the last call (default: one minute,
        judged by the view of `ts`).
        """
        out = StepResult()
        now = minute_of(ts)
        self._watch_landings()
        for pid, inc in closed.items():
            ep = self.episodes.pop(pid, None)
            if ep is not None and ep.incident_id == inc.id:
                self._account(ep, pid, views, elapsed)
                self._finish(ep, pid, ts, inc, out)
                self._remember(pid, ep, now)
        for pid, inc in open_incidents.items():
            ep = self.episodes.get(pid)
            if ep is None or ep.incident_id != inc.id:
                if ep is not None:
                    self._remember(pid, ep, now)  # replaced by a newer incident without a close we saw
                ep = self.episodes[pid] = _Episode(inc.id, inc.opened_at)
            view = views.get(pid)
            if not ep.running or view is None:
                continue
            self._account(ep, pid, views, elapsed)
            for step in list(ep.running):
                self._poll(ep, step, pid, now)
                if step.execution.status in (ExecStatus.REJECTED, ExecStatus.CANCELLED):
                    self._declined(ep, step, pid, ts, out)
                    continue
                if step.verify_until is not None and now >= step.verify_until:
                    if self._improving(step, view, now):
                        step.verify_until = now + 1
                        continue
                    obs = self._observation(view, inc, ep)
                    allowed = self._allowed(obs, ep, now)
                    self._learn(ep, step, pid, ts, obs, allowed=allowed, recovered=False, out=out)
        for pid in [p for p in self.episodes if p not in open_incidents]:
            ep = self.episodes.pop(pid)  # it vanished without a close we saw (e.g. a restart)
            self._keep_landing(pid, ep)
            self._remember(pid, ep, now)
        return out

    def _remember(self, pid: str, ep: _Episode, now: int) -> None:
        """Keep an ended incident's action starts whose cooldown may still run, so the next incident on the
        pipeline sits them out too (without it, a stage flickering in and out of trouble after a fix gets the
        same warehouse resize once per incident, minutes apart). Paging a human is per incident."""
        mine = [e for e in ep.history if not self.catalog[e[0]].hands_off]
        kept = [e for e in (*self.recent.get(pid, ()), *mine) if now - e[1] < self.catalog[e[0]].cooldown_minutes]
        if kept:
            self.recent[pid] = kept
        else:
            self.recent.pop(pid, None)

    def _keep_landing(self, pid: str, ep: _Episode) -> None:
        """Hand the episode's capacity changes that have not landed yet to `_watch_landings`."""
        self.landing.extend((pid, step.execution.ref) for step in ep.running
                            if not step.execution.status.finished and not step.hands_off
                            and self.catalog[step.choice.action].changes_capacity)

    def _watch_landings(self) -> None:
        """Poll capacity changes whose incident ended before they landed; rebaseline each one that succeeds.

        An incident can close while a scale-up it asked for is still under way (the pipeline recovered anyway).
        Unless the scorer learns the stage's new level once it lands, the stage looks anomalous for good:
        a new incident opens that never closes, and every later fault on the pipeline falls into it."""
        pending = []
        for pid, ref in self.landing:
            exe = self.executor.poll(ref)
            if not exe.status.finished:
                pending.append((pid, ref))
            elif exe.status is ExecStatus.SUCCEEDED and self.on_capacity_change:
                self.on_capacity_change(pid, exe.request.stage)
        self.landing = pending

    # -- phase 2: choose and act ----------------------------------------------------------------
    def decide(self, ts: datetime, views: Mapping[str, MinuteView], open_incidents: Mapping[str, Incident],
               out: StepResult | None = None) -> StepResult:
        """Choose and submit an action for every open incident that has no step in progress, and (`parallel`)
        for a second troubled stage of one whose steps act elsewhere; at most one decision per incident."""
        out = out or StepResult()
        now = minute_of(ts)
        for pid, inc in open_incidents.items():
            ep = self.episodes.get(pid)
            view = views.get(pid)
            if ep is None or view is None:
                continue
            if self.pending_decision(pid):
                obs = self._observation(view, inc, ep)
                allowed = self._allowed(obs, ep, now)
            elif self.parallel and not any(s.hands_off for s in ep.running):
                focus = self._second_focus(view, ep, now)
                if focus is None:
                    continue
                obs = self._observation(view, inc, ep, focus=focus)
                allowed = self._allowed_beside(obs, ep, now)
                if allowed == (ActionKind.WAIT,):
                    continue
            else:
                continue
            choice = self.policy.choose(obs, allowed, self.rng)
            self._act(ep, pid, ts, obs, choice=choice, out=out)
        return out

    def step(self, ts: datetime, views: Mapping[str, MinuteView], open_incidents: Mapping[str, Incident],
             closed: Mapping[str, Incident], elapsed: Mapping[str, tuple[int, int]] | None = None) -> StepResult:
        """`observe` then `decide`, for one minute (or one tick)."""
        return self.decide(ts, views, open_incidents, self.observe(ts, views, open_incidents, closed, elapsed))

    def candidates(self, view: MinuteView, incident: Incident) -> tuple[Observation, tuple[ActionKind, ...]]:
        """The observation of an open incident and the actions the catalog allows for it now."""
        ep = self.episodes.get(view.pipeline_id) or _Episode(incident.id, incident.opened_at)
        obs = self._observation(view, incident, ep)
        return obs, self._allowed(obs, ep, minute_of(view.ts))

    def pending_decision(self, pipeline_id: str) -> bool:
        """Whether the incident on `pipeline_id` waits for its own decision (no step in progress that holds it off)."""
        ep = self.episodes.get(pipeline_id)
        return ep is not None and not any(self._holds(s) for s in ep.running)

    def reject(self, obs: Observation, action: ActionKind, allowed: tuple[ActionKind, ...] = ()) -> Learned:
        """An operator rejected `action` for `obs`: learn a negative reward (the state does not change)."""
        state = encode(obs)
        t = Transition(obs.pipeline_id, obs.incident_id, obs.ts, state, action, rejection_reward(self.weights),
                       state, False, 0, allowed)
        return Learned(t, self.policy.learn(t), ExecStatus.REJECTED)

    # -- internals --------------------------------------------------------------------------------
    def _observation(self, view: MinuteView, inc: Incident, ep: _Episode, focus: Stage | None = None) -> Observation:
        return observe(view, inc, attempts=ep.attempts, last_action=ep.last_action, steps=ep.steps,
                       throttled=self._throttled(ep, minute_of(view.ts)), focus=focus)

    @staticmethod
    def _holds(step: _Step) -> bool:
        """Whether a running step holds off the incident's own next decision: any step but a wait taken beside
        another (alternating waits on two stages would otherwise starve it, e.g. a page after its delay)."""
        return not (step.concurrent and step.choice.action is ActionKind.WAIT)

    def _second_focus(self, view: MinuteView, ep: _Episode, now: int) -> Stage | None:
        """A stage in real trouble (failing, or over a static limit) that no running step is acting on."""
        busy = {s.execution.request.stage for s in ep.running}
        throttled = self._throttled(ep, now)
        free = [h for h in view.stages if h.status is not Health.HEALTHY and h.stage not in busy
                and (h.status is Health.FAILED or (not h.reason.startswith(ANOMALY_PREFIX)
                                                   and not (throttled and held_back(h))))]
        root = root_stage(free, throttled=throttled)
        return None if root is None else root.stage

    def _allowed_beside(self, obs: Observation, ep: _Episode, now: int) -> tuple[ActionKind, ...]:
        """What may run beside the running steps: allowed actions that land on the focused stage (a free one,
        see `_second_focus`), never handing the incident to a human (that waits for the incident's own decision)."""
        out = tuple(a for a in self._allowed(obs, ep, now)
                    if not self.catalog[a].hands_off and self.catalog[a].target(obs.stage) == obs.stage)
        return out or (ActionKind.WAIT,)

    def _throttled(self, ep: _Episode, now: int) -> bool:
        """Whether this incident's back pressure may still hold rows at the source: applied and not failed,
        within its cooldown (the throttle adapts and lifts itself as lag falls; the loop does not see when)."""
        window = self.catalog[ActionKind.APPLY_BACK_PRESSURE].cooldown_minutes
        return any(kind is ActionKind.APPLY_BACK_PRESSURE and now - at < window for kind, at, _ in ep.history)

    def _allowed(self, obs: Observation, ep: _Episode, now: int) -> tuple[ActionKind, ...]:
        return available(obs.stage, ep.history, now, self.catalog, failing=obs.stage_status is Health.FAILED,
                         troubled=obs.troubled, earlier=self.recent.get(obs.pipeline_id, ()))

    def _account(self, ep: _Episode, pid: str, views: Mapping[str, MinuteView],
                 elapsed: Mapping[str, tuple[int, int]] | None) -> None:
        if not ep.running:
            return
        if elapsed is not None and pid in elapsed:
            minutes, unhealthy = elapsed[pid]
        else:
            view = views.get(pid)
            minutes, unhealthy = 1, int(not (view and view.health and view.health.slo_healthy))
        for step in ep.running:
            step.minutes += minutes
            step.unhealthy += min(unhealthy, minutes)

    def _improving(self, step: _Step, view: MinuteView, now: int) -> bool:
        """Whether to keep watching a step that worked: it succeeded, no stage is failing, and the backlog drains
        (freshness improving) or the pipeline meets its SLO with no stage in real distress (over a static limit
        or warning; stages only statistically unusual are the aftermath); at most `SETTLE_MINUTES` past
        completion. Acting again while a fix drains would only disturb it, but a second fault that keeps a stage
        hot while freshness still meets its target must not be watched idly."""
        if step.execution.status is not ExecStatus.SUCCEEDED or step.completed is None or view.health is None:
            return False
        fresh, before = view.health.freshness_minutes, step.freshness
        step.freshness = fresh
        if now - step.completed >= SETTLE_MINUTES or any(h.status is Health.FAILED for h in view.stages):
            return False
        distress = any(h.status is Health.DEGRADED and not h.reason.startswith(ANOMALY_PREFIX) for h in view.stages)
        return (before is not None and fresh < before) or (view.health.slo_healthy and not distress)

    def _poll(self, ep: _Episode, step: _Step, pid: str, now: int) -> None:
        if step.verify_until is not None:
            return
        try:
            exe = self.executor.poll(step.execution.ref) if not step.execution.status.finished else step.execution
        except SelfhealError as e:
            self._lost(ep, step, e)
            return
        step.execution = exe
        if exe.status in (ExecStatus.REJECTED, ExecStatus.CANCELLED):
            return  # it never ran: nothing to verify (observe handles it; a page too, which an operator may refuse)
        if step.hands_off:
            if exe.status in (ExecStatus.FAILED, ExecStatus.TIMED_OUT):
                self._page_failed(ep, step)
            return  # a page holds the incident until it closes
        if exe.status.finished:
            spec = self.catalog[exe.request.action]
            step.completed = now
            step.verify_until = now + spec.verify_minutes
            if exe.status is ExecStatus.FAILED:
                _forget_last(ep.history, exe.request.action)  # it never took effect: no cooldown to sit out
            if exe.status is ExecStatus.SUCCEEDED and spec.changes_capacity and self.on_capacity_change:
                self.on_capacity_change(pid, exe.request.stage)

    def _lost(self, ep: _Episode, step: _Step, error: SelfhealError) -> None:
        """The executor no longer knows a step's execution (live: its proposal row was deleted, say by a purge or a
        restore from an older backup). Whether it ran is unknown, so nothing is learned from it and its cooldown
        stands; the loop stops waiting for it and decides the incident again, instead of failing every tick."""
        log.warning("lost track of %s for incident %s (%s): the loop decides again", step.execution.ref,
                    ep.incident_id, error)
        ep.running.remove(step)

    def _page_failed(self, ep: _Episode, step: _Step) -> None:
        """A page failed (the human's work failed; live, the page could not go out): nobody owns the incident any
        more, so the loop takes it back and decides again at once. Paging again waits for the page's cooldown.
        The failed page is dropped unlearned: learning it as a step that did not recover was measured to slow how
        soon a fault only a human fixes is learned (README, session 16)."""
        log.info("page %s for incident %s failed: the loop takes the incident back", step.execution.ref,
                 ep.incident_id)
        ep.running.remove(step)

    def _act(self, ep: _Episode, pid: str, ts: datetime, obs: Observation, *, choice: Choice, out: StepResult) -> None:
        spec = self.catalog[choice.action]
        request = ActionRequest(pid, choice.action, choice.stage or spec.target(obs.stage), dict(spec.params),
                                obs.incident_id, choice.reason, self._evidence(obs, choice, ts),
                                min(obs.confidence, EXPLORING_CONFIDENCE) if choice.explored else obs.confidence)
        exe = self.executor.submit(request)
        now = minute_of(ts)
        ep.history.append((choice.action, now, request.stage))
        ep.steps += 1
        if choice.action is not ActionKind.WAIT:
            ep.attempts += 1
            ep.last_action = choice.action
            ep.cost += spec.cost
        ep.escalated |= choice.action is ActionKind.ESCALATE_TO_HUMAN
        step = _Step(encode(obs), choice, exe, spec.cost, hands_off=spec.hands_off, concurrent=obs.concurrent)
        ep.running.append(step)
        if exe.status.finished and not spec.hands_off:
            step.completed = now
            step.verify_until = now + spec.verify_minutes
        out.decisions.append(Decision(pid, obs.incident_id, ts, step.state, choice, exe))

    def _evidence(self, obs: Observation, choice: Choice, ts: datetime) -> dict:
        """Why the loop wants this action, for whoever approves it."""
        if choice.action is ActionKind.WAIT:
            return {}
        return {"policy": self.policy.name, "state": encode(obs), "explored": choice.explored,
                "q_values": {a.value: round(float(q), 3) for a, q in choice.q_values.items()},
                "diagnosis": {"error_type": obs.error_type, "stage": obs.stage.value if obs.stage else None,
                              "status": obs.stage_status.value, "confidence": round(obs.confidence, 3)},
                "attempts": obs.attempts, "minutes_open": obs.minutes_open, "sim_time": ts.isoformat(),
                "beside_another_step": obs.concurrent}

    def _declined(self, ep: _Episode, step: _Step, pid: str, ts: datetime, out: StepResult) -> None:
        """The proposal never ran: an operator's rejection is a penalty learned for (state, action); an expired
        one teaches nothing. Either way the loop decides again (the action's cooldown still applies)."""
        if step.execution.status is ExecStatus.REJECTED:
            t = Transition(pid, ep.incident_id, ts, step.state, step.choice.action, rejection_reward(self.weights),
                           step.state, False, step.minutes, ())
            out.learned.append(Learned(t, self.policy.learn(t), ExecStatus.REJECTED, step.execution.ref))
            ep.reward += t.reward
        ep.running.remove(step)

    def _learn(self, ep: _Episode, step: _Step, pid: str, ts: datetime, obs: Observation | None, *,
               allowed: tuple[ActionKind, ...], recovered: bool, out: StepResult,
               credited: bool = True) -> None:  # credited: see `_page_landed`
        reward = step_reward(minutes=step.minutes, unhealthy_minutes=step.unhealthy, action_cost=step.cost,
                             recovered=recovered, weights=self.weights, credited=credited)
        t = Transition(pid, ep.incident_id, ts, step.state, step.choice.action, reward,
                       None if obs is None else encode(obs), recovered, step.minutes, allowed)
        out.learned.append(Learned(t, self.policy.learn(t), step.execution.status, step.execution.ref))
        ep.reward += reward
        ep.running.remove(step)

    def _page_landed(self, step: _Step) -> bool:
        """Whether a page (a hands-off step) had landed when its incident closed: in the twin, the human's work
        succeeded; live, the page went out. Only then is it credited with the recovery. An incident that closed on
        its own while the human was on the way (or the minute the human's work failed, see `_page_failed`) was a
        false page, learned without the recovery reward: before, a page in a slowdown that ends by itself earned
        it, and tables paged on-call for such slowdowns (the default execution policy approves pages
        automatically)."""
        try:
            return self.executor.poll(step.execution.ref).status is ExecStatus.SUCCEEDED
        except SelfhealError as e:  # e.g. the proposal is gone from the store: no evidence the page went out
            log.warning("page %s: %s", step.execution.ref, e)
            return False

    def _finish(self, ep: _Episode, pid: str, ts: datetime, inc: Incident, out: StepResult) -> None:
        self._keep_landing(pid, ep)
        for step in list(ep.running):
            credited = not step.hands_off or self._page_landed(step)
            self._learn(ep, step, pid, ts, None, allowed=(), recovered=True, out=out, credited=credited)
        self.policy.end_episode()
        out.ended.append(EpisodeEnd(pid, inc.id, ep.opened_at, inc.closed_at, ep.attempts, ep.cost, ep.reward,
                                    ep.escalated, recovered=True))
