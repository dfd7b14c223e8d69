"""Decision layer: Q-update arithmetic, exploration, state encoding, the catalog's preconditions, reward shaping
and the baselines' behaviour, on hand-made cases."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.decision.baselines import PAGING_DELAY_MINUTES, ManualPolicy, OraclePolicy, RulesPolicy
from engine.decision.policy import Transition
from engine.decision.qlearning import QLearningPolicy, QParams, QTable, mean_table, q_update
from engine.decision.state import MinuteView, Observation, coarse, encode, minute_views, observe, root_stage
from engine.execution.catalog import ACTIONS, CATALOG, available
from engine.feedback.reward import RewardWeights, rejection_reward, step_reward
from engine.model import (
    ActionKind,
    FaultKind,
    Health,
    Incident,
    IncidentStatus,
    PipelineHealth,
    Stage,
    StageHealth,
    StageSample,
)

T0 = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
A = ActionKind


def obs(error_type="schema_drift", stage=Stage.TRANSFORM, status=Health.FAILED, *, queue=3.0, attempts=0,
        minutes_open=0, hot=False, last=None) -> Observation:
    return Observation("orders", T0, 1, error_type, stage, status, 0.6, hot, queue, 0.5, False, attempts, last,
                       minutes_open)


def transition(*, state="s", action=A.REMAP_SCHEMA, reward=-10.0, next_state="s2", done=False, minutes=1,
               allowed_next=()) -> Transition:
    return Transition("orders", 1, T0, state, action, reward, next_state, done, minutes, allowed_next)


# -- Q-learning arithmetic ------------------------------------------------------------------------
def test_q_update_by_hand():
    assert q_update(0.0, -10.0, 5.0, alpha=0.5, gamma=0.9, done=False) == pytest.approx(0.5 * (-10 + 0.9 * 5))
    assert q_update(2.0, -10.0, 5.0, alpha=0.5, gamma=0.9, done=True) == pytest.approx(2 + 0.5 * (-10 - 2))
    # A step that lasted three minutes is discounted three times.
    assert q_update(0.0, -1.0, 10.0, alpha=1.0, gamma=0.9, done=False, minutes=3) == pytest.approx(-1 + 0.729 * 10)


def test_mean_table_averages_each_pair_over_the_tables_that_tried_it():
    one, two, three = QTable(), QTable(), QTable()
    one.set("s", A.RETRY_WITH_BACKOFF, 10.0, visits=3)
    one.set("s", A.WAIT, 4.0, visits=1)
    two.set("s", A.RETRY_WITH_BACKOFF, 20.0, visits=1)
    two.set("t", A.RESTART_TASK, -2.0, visits=2)
    three.set("s", A.RETRY_WITH_BACKOFF, 30.0, visits=0)  # stored but never tried (an upgraded row): no estimate
    mean = mean_table([one, two, three])
    # Values: the mean of the tables that tried the pair. Visits: a learner's, the mean over all three, rounded.
    assert mean.q("s", A.RETRY_WITH_BACKOFF) == pytest.approx(15.0) and mean.n("s", A.RETRY_WITH_BACKOFF) == 1
    assert (mean.q("s", A.WAIT), mean.n("s", A.WAIT)) == (4.0, 0)  # one table's estimate, not divided by a 0
    assert (mean.q("t", A.RESTART_TASK), mean.n("t", A.RESTART_TASK)) == (-2.0, 1)
    assert mean_table([one]).values == one.values and len(mean) == 3
    assert mean_table([three]).q("s", A.RETRY_WITH_BACKOFF) == 30.0  # nobody tried it: the stored value stands
    with pytest.raises(ValueError, match="no tables"):
        mean_table([])


def test_learning_rate_is_a_running_mean_then_the_floor():
    agent = QLearningPolicy(params=QParams(alpha=0.1, gamma=0.5))
    agent.table.set("s2", A.WAIT, 4.0, visits=3)
    first = agent.learn(transition(reward=-10.0, allowed_next=(A.WAIT, A.RETRY_WITH_BACKOFF)))
    assert (first.q_before, first.q_after) == (0.0, pytest.approx(-10 + 0.5 * 4))  # α = 1 on the first visit
    second = agent.learn(transition(reward=-20.0, allowed_next=(A.WAIT,)))
    assert second.q_after == pytest.approx(-8 + 0.5 * (-20 + 2 + 8))  # α = 1/2 on the second
    for _ in range(20):
        agent.learn(transition(reward=-20.0, allowed_next=(A.WAIT,)))
    assert agent.table.visits["s"][A.REMAP_SCHEMA] == 22
    before = agent.table.q("s", A.REMAP_SCHEMA)
    after = agent.learn(transition(reward=0.0, done=True, next_state=None)).q_after
    assert after == pytest.approx(before + 0.1 * (0.0 - before))  # floor α = 0.1, no bootstrap at the end


def test_frozen_agent_does_not_learn_and_greedy_respects_allowed_actions():
    table = QTable()
    table.set("schema_drift|any|q-normal", A.REMAP_SCHEMA, -5.0)
    table.set("schema_drift|any|q-normal", A.SCALE_WAREHOUSE, 50.0)
    agent = QLearningPolicy(table, explore=False, learning=False)
    assert agent.learn(transition()) is None
    rng = np.random.default_rng(0)
    allowed = (A.REMAP_SCHEMA, A.WAIT)  # the catalog does not allow scaling here
    choice = agent.choose(obs(), allowed, rng)
    assert choice.action is A.WAIT  # untried (0) beats -5, the disallowed 50 is never considered
    assert set(choice.q_values) == set(allowed) and not choice.explored


def test_exploration_decays_per_episode_and_stays_within_allowed():
    agent = QLearningPolicy(params=QParams(epsilon=1.0, epsilon_min=0.1, epsilon_decay=0.5))
    assert agent.epsilon == 1.0
    rng = np.random.default_rng(1)
    picks = {agent.choose(obs(), (A.WAIT, A.ESCALATE_TO_HUMAN), rng).action for _ in range(50)}
    assert picks == {A.WAIT, A.ESCALATE_TO_HUMAN}
    agent.end_episode()
    agent.end_episode()
    assert agent.epsilon == pytest.approx(0.25)
    for _ in range(10):
        agent.end_episode()
    assert agent.epsilon == 0.1
    with pytest.raises(ValueError, match="out of range"):
        QParams(alpha=0)


@given(st.lists(st.tuples(st.floats(-500, 500), st.booleans(), st.integers(1, 90)), min_size=1, max_size=40))
def test_q_values_stay_finite_and_bounded_by_the_rewards(steps):
    agent = QLearningPolicy()
    for reward, done, minutes in steps:
        agent.learn(transition(state="s", next_state="s", reward=reward, done=done, minutes=minutes,
                               allowed_next=(A.REMAP_SCHEMA,)))
    q = agent.table.q("s", A.REMAP_SCHEMA)
    bound = max(abs(r) for r, _, _ in steps) / (1 - agent.params.gamma)
    assert np.isfinite(q) and abs(q) <= bound + 1e-6


def test_while_exploring_an_untried_action_gets_its_one_try_before_a_tried_one_that_merely_worked():
    o = obs("resource_contention", status=Health.FAILED, queue=30.0)
    state = encode(o)
    table = QTable()
    table.set(state, A.SCALE_WAREHOUSE, 15.0)  # worked, slowly: above the untried actions' 0
    allowed = (A.SCALE_WAREHOUSE, A.RESCHEDULE, A.WAIT)
    rng = np.random.default_rng(0)
    learner = QLearningPolicy(table, QParams(epsilon=0.0, epsilon_min=0.0, backoff_visits=0))
    tried = {learner.choose(o, allowed, rng).action for _ in range(20)}
    assert tried == {A.RESCHEDULE, A.WAIT}  # only the untried ones, each a marked exploration
    assert learner.choose(o, allowed, rng).explored
    greedy = QLearningPolicy(table, QParams(backoff_visits=0), explore=False)
    assert {greedy.choose(o, allowed, rng).action for _ in range(5)} == {A.SCALE_WAREHOUSE}
    off = QLearningPolicy(table, QParams(epsilon=0.0, epsilon_min=0.0, backoff_visits=0, min_tries=0))
    assert off.choose(o, allowed, rng).action is A.SCALE_WAREHOUSE


# -- state ----------------------------------------------------------------------------------------
def test_root_stage_prefers_failing_then_real_limits_over_anomalies_then_upstream():
    h = lambda stage, status, reason="": StageHealth("orders", stage, T0, status, reason)  # noqa: E731
    assert root_stage([h(Stage.SOURCE, Health.DEGRADED, "cpu_pct=95 ≥ 90"),
                       h(Stage.WAREHOUSE, Health.FAILED, "ERROR")]).stage is Stage.WAREHOUSE
    assert root_stage([h(Stage.ORCHESTRATOR, Health.DEGRADED, "anomalous (score 1.0): throughput_rows_s z=-9"),
                       h(Stage.TRANSFORM, Health.DEGRADED, "cpu_pct=97 ≥ 90")]).stage is Stage.TRANSFORM
    assert root_stage([h(Stage.TRANSFORM, Health.DEGRADED, "x"), h(Stage.SOURCE, Health.DEGRADED, "y")]).stage \
        is Stage.SOURCE
    assert root_stage([h(Stage.SOURCE, Health.HEALTHY)]) is None
    # A stage over several limits (hot, and slow because of it) before a neighbour only slow from its queue.
    assert root_stage([h(Stage.SOURCE, Health.DEGRADED, "latency_s=214 ≥ 15"),
                       h(Stage.TRANSFORM, Health.DEGRADED, "cpu_pct=100 ≥ 90; memory_pct=99 ≥ 90; latency_s=617 ≥ 300")
                       ]).stage is Stage.TRANSFORM


def test_a_source_lagging_behind_the_loops_own_back_pressure_is_not_taken_for_a_stopped_cdc_task():
    lagging = StageHealth("orders", Stage.SOURCE, T0, Health.DEGRADED, "cdc_lag_s=900 ≥ 300; latency_s=40 ≥ 15")
    hot = StageHealth("orders", Stage.TRANSFORM, T0, Health.DEGRADED, "cpu_pct=97 ≥ 90")
    inc = Incident(7, "orders", IncidentStatus.OPEN, T0, T0, Stage.TRANSFORM, "resource_contention", 0.6, {})

    def seen(*stages, throttled):
        view = MinuteView("orders", T0, PipelineHealth("orders", T0, Health.DEGRADED, 30.0, {}, False), stages,
                          {Stage.TRANSFORM: {"cpu_pct": 97.0}}, 15.0)
        return observe(view, inc, throttled=throttled)

    # Unthrottled, the source over two limits is the suspect; under the loop's own throttle its lag is expected.
    assert (seen(lagging, hot, throttled=False).error_type, seen(lagging, hot, throttled=False).stage) == \
        ("cdc_stopped", Stage.SOURCE)
    o = seen(lagging, hot, throttled=True)
    assert (o.error_type, o.stage, o.throttled) == ("resource_contention", Stage.TRANSFORM, True)
    # Nothing else wrong: the state says the pipeline waits on its throttle, not that CDC stopped.
    assert encode(seen(lagging, throttled=True)).startswith("throttled|slow|")
    # A source that logs an error or has failed is never excused by the throttle.
    erring = StageHealth("orders", Stage.SOURCE, T0, Health.DEGRADED, "cdc_lag_s=900 ≥ 300; error_count=3")
    assert seen(erring, hot, throttled=True).stage is Stage.SOURCE


def test_observe_and_encode_use_only_the_analysis_output():
    stages = (StageHealth("orders", Stage.TRANSFORM, T0, Health.FAILED,
                          "java.lang.OutOfMemoryError: GC overhead limit exceeded"),
              StageHealth("orders", Stage.WAREHOUSE, T0, Health.DEGRADED, "anomalous (score 0.9): queue_wait_s z=+9"))
    view = MinuteView("orders", T0, PipelineHealth("orders", T0, Health.FAILED, 20.0, {}, False), stages,
                      {Stage.TRANSFORM: {"cpu_pct": 40.0}, Stage.WAREHOUSE: {"queue_wait_s": 35.0}}, 15.0)
    inc = Incident(7, "orders", IncidentStatus.OPEN, T0 - timedelta(minutes=4), T0 - timedelta(minutes=4),
                   Stage.WAREHOUSE, "unknown", 0.5, {})
    o = observe(view, inc, attempts=1, last_action=A.SCALE_WORKERS)
    assert (o.error_type, o.stage, o.stage_status, o.minutes_open) == ("resource_contention", Stage.TRANSFORM,
                                                                      Health.FAILED, 4)
    assert o.queue_bucket == "q-raised" and o.fresh_bucket == "stale" and not o.slo_healthy
    assert encode(o) == "resource_contention|any|q-raised"  # a diagnosed signature: failing and slow pooled
    # Undiagnosed, a failing stage and a slow one are different situations, so the key keeps them apart.
    unknown = replace(o, error_type="unknown")
    assert encode(unknown) == "unknown|failing|q-raised"
    assert encode(replace(unknown, stage_status=Health.DEGRADED)) == "unknown|slow|q-raised"
    assert encode(replace(o, stage_status=Health.DEGRADED)) == encode(o)


def test_a_stage_observed_beside_the_root_never_borrows_the_incidents_diagnosis():
    drifted = StageHealth("orders", Stage.SOURCE, T0, Health.FAILED, "column 'amount' not found in target")
    slow = StageHealth("orders", Stage.WAREHOUSE, T0, Health.DEGRADED, "latency_s=400 ≥ 240")
    hot = StageHealth("orders", Stage.TRANSFORM, T0, Health.DEGRADED, "cpu_pct=97 ≥ 90")
    view = MinuteView("orders", T0, PipelineHealth("orders", T0, Health.FAILED, 20.0, {}, False),
                      (drifted, slow, hot), {Stage.WAREHOUSE: {"queue_wait_s": 3.0}}, 15.0)
    inc = Incident(7, "orders", IncidentStatus.OPEN, T0, T0, Stage.SOURCE, "schema_drift", 0.6, {})
    assert observe(view, inc).error_type == "schema_drift"
    assert observe(view, inc).troubled == {Stage.SOURCE, Stage.WAREHOUSE, Stage.TRANSFORM}  # for preconditions
    # The warehouse only shows the backlog the drift builds: no signature of its own, so no schema drift there.
    beside = observe(view, inc, focus=Stage.WAREHOUSE)
    assert (beside.error_type, beside.stage, beside.concurrent) == ("unknown", Stage.WAREHOUSE, True)
    assert encode(beside) == "unknown|slow|q-normal"
    # A stage with a signature of its own is read as such.
    assert observe(view, inc, focus=Stage.TRANSFORM).error_type == "resource_contention"
    # Undiagnosable from the root stage's own reason, the incident's diagnosis still stands.
    vague = replace(drifted, reason="latency_s=900 ≥ 60")
    assert observe(replace(view, stages=(vague, slow)), inc).error_type == "schema_drift"



def test_minute_views_of_some_pipelines_are_exactly_those_of_all():
    samples = [StageSample(p, st, T0, {"cpu_pct": 10.0 + k}) for k, p in enumerate("abc") for st in Stage]
    stage_rows = [StageHealth(p, st, T0, Health.DEGRADED if st is Stage.WAREHOUSE else Health.HEALTHY,
                              "queue_wait_s=70 ≥ 60" if st is Stage.WAREHOUSE else "") for p in "abc" for st in Stage]
    pipe_rows = [PipelineHealth(p, T0, Health.DEGRADED, 5.0, {}, True) for p in "abc"]
    every = minute_views(samples, stage_rows, pipe_rows, {"a": 15.0, "b": 30.0, "c": 60.0})
    assert set(every) == {("a", T0), ("b", T0), ("c", T0)}
    some = minute_views(samples, stage_rows, pipe_rows, {"a": 15.0, "b": 30.0, "c": 60.0}, only={"b", "zz"})
    assert some == {("b", T0): every[("b", T0)]}
    assert some[("b", T0)].metrics[Stage.SOURCE] == {"cpu_pct": 11.0} and len(some[("b", T0)].stages) == len(Stage)

# -- catalog --------------------------------------------------------------------------------------
def test_catalog_covers_every_action_and_preconditions_hold():
    assert set(ACTIONS) == set(ActionKind) and all(CATALOG[a].kind is a for a in ACTIONS)
    allowed = available(Stage.WAREHOUSE, [], 0, failing=False)
    assert A.SCALE_WORKERS not in allowed  # the warehouse scales with scale_warehouse
    assert A.RESTART_TASK not in allowed and A.REMAP_SCHEMA not in allowed  # disruptive: only on a failing stage
    assert {A.SCALE_WAREHOUSE, A.WAIT, A.ESCALATE_TO_HUMAN} <= set(allowed)
    assert A.RESTART_TASK in available(Stage.TRANSFORM, [], 0, failing=True)
    cooled = available(Stage.TRANSFORM, [(A.SCALE_WORKERS, 10)], 20)
    assert A.SCALE_WORKERS not in cooled and A.SCALE_WORKERS in available(Stage.TRANSFORM, [(A.SCALE_WORKERS, 10)], 30)
    assert A.WAIT not in available(Stage.TRANSFORM, [(A.WAIT, 1), (A.WAIT, 3)], 5)  # no third wait in a row
    assert A.WAIT in available(Stage.TRANSFORM, [(A.WAIT, 1), (A.RETRY_WITH_BACKOFF, 3), (A.WAIT, 5)], 7)
    # A cooldown guards the component the action landed on; pipeline-wide actions cool down everywhere.
    retried = [(A.RETRY_WITH_BACKOFF, 10, Stage.ORCHESTRATOR)]
    assert A.RETRY_WITH_BACKOFF not in available(Stage.ORCHESTRATOR, retried, 12)
    assert A.RETRY_WITH_BACKOFF in available(Stage.WAREHOUSE, retried, 12)
    assert A.RESCHEDULE not in available(Stage.SOURCE, [(A.RESCHEDULE, 10, Stage.WAREHOUSE)], 12)
    assert CATALOG[A.RESCHEDULE].target(Stage.SOURCE) is Stage.WAREHOUSE  # pipeline-wide actions land where they act
    assert CATALOG[A.RETRY_WITH_BACKOFF].target(Stage.SOURCE) is Stage.SOURCE


def test_no_action_lands_on_a_healthy_component_except_to_relieve_load():
    # A warehouse overload: the source runs fine, so restarting its replication task or reloading its tables is
    # not offered; rescheduling and back pressure relieve load and may land anywhere.
    only_warehouse = {Stage.WAREHOUSE}
    allowed = available(Stage.WAREHOUSE, [], 0, failing=True, troubled=only_warehouse)
    assert A.RESTART_CDC_TASK not in allowed and A.RELOAD_TABLES not in allowed
    assert {A.RESCHEDULE, A.APPLY_BACK_PRESSURE, A.SCALE_WAREHOUSE, A.RETRY_WITH_BACKOFF} <= set(allowed)
    # A timeout on the orchestrator: an idle warehouse is not resized, the hung task is restarted.
    at_orchestrator = available(Stage.ORCHESTRATOR, [], 0, failing=True, troubled={Stage.ORCHESTRATOR})
    assert A.SCALE_WAREHOUSE not in at_orchestrator and A.RESTART_TASK in at_orchestrator
    # Once the component is in trouble too, the action is back; unknown health filters nothing.
    assert A.RESTART_CDC_TASK in available(Stage.WAREHOUSE, [], 0, failing=True,
                                           troubled={Stage.WAREHOUSE, Stage.SOURCE})
    assert A.RESTART_CDC_TASK in available(Stage.WAREHOUSE, [], 0, failing=True)
    assert {a for a in ACTIONS if CATALOG[a].relief} == {A.RESCHEDULE, A.APPLY_BACK_PRESSURE}


def test_an_ended_incidents_actions_still_cool_down_for_the_next_one():
    resized = [(A.SCALE_WAREHOUSE, 10, Stage.WAREHOUSE), (A.WAIT, 12, Stage.WAREHOUSE),
               (A.WAIT, 14, Stage.WAREHOUSE)]
    assert A.SCALE_WAREHOUSE not in available(Stage.WAREHOUSE, [], 20, earlier=resized)
    assert A.SCALE_WAREHOUSE in available(Stage.WAREHOUSE, [], 40, earlier=resized)
    # Earlier starts count for cooldowns only: two waits for the last incident do not end this one's streak.
    assert A.WAIT in available(Stage.WAREHOUSE, [], 20, earlier=resized)


# -- reward ---------------------------------------------------------------------------------------
def test_reward_shaping():
    w = RewardWeights(recovery=50, minute=1, unhealthy=1, still_unhealthy=0.5, cost=1)
    assert step_reward(minutes=5, unhealthy_minutes=5, action_cost=1.0, recovered=True, weights=w) == 50 - 10 - 1
    assert step_reward(minutes=5, unhealthy_minutes=0, action_cost=4.0, recovered=False, weights=w) == -5 - 4 - 0.5
    # A false page: the incident recovered, but before the human's work landed: time and cost, no recovery.
    assert step_reward(minutes=20, unhealthy_minutes=6, action_cost=8.0, recovered=True, weights=w,
                       credited=False) == -20 - 6 - 8
    slow = step_reward(minutes=40, unhealthy_minutes=40, action_cost=8.0, recovered=True, weights=w)
    fast = step_reward(minutes=5, unhealthy_minutes=5, action_cost=1.0, recovered=True, weights=w)
    assert fast > slow  # the faster, cheaper recovery is worth more
    assert rejection_reward(w) == -w.rejection < 0
    with pytest.raises(ValueError):
        step_reward(minutes=2, unhealthy_minutes=3, action_cost=0, recovered=False)


# -- baselines ------------------------------------------------------------------------------------
RNG = np.random.default_rng(0)
EVERYTHING = tuple(ActionKind)


@pytest.mark.parametrize(("error_type", "stage", "queue", "hot", "action"), [
    ("schema_drift", Stage.TRANSFORM, 3.0, False, A.REMAP_SCHEMA),
    ("cdc_stopped", Stage.SOURCE, 3.0, False, A.RESTART_CDC_TASK),
    ("timeout", Stage.ORCHESTRATOR, 3.0, False, A.RESTART_TASK),
    ("network_failure", Stage.WAREHOUSE, 3.0, False, A.RETRY_WITH_BACKOFF),
    ("unknown", Stage.WAREHOUSE, 300.0, False, A.SCALE_WAREHOUSE),  # queue wait high
    ("resource_contention", Stage.WAREHOUSE, 3.0, True, A.SCALE_WAREHOUSE),
    ("unknown", Stage.TRANSFORM, 3.0, True, A.SCALE_WORKERS),  # CPU > 90%
])
def test_rules_apply_the_runbook(error_type, stage, queue, hot, action):
    assert RulesPolicy().choose(obs(error_type, stage, queue=queue, hot=hot), EVERYTHING, RNG).action is action


def test_rules_page_a_human_when_no_rule_matches_or_the_runbook_failed_twice():
    rules = RulesPolicy()
    novel = obs("unknown", Stage.SOURCE, Health.FAILED)
    assert rules.choose(novel, EVERYTHING, RNG).action is A.WAIT
    paged = rules.choose(obs("unknown", Stage.SOURCE, minutes_open=PAGING_DELAY_MINUTES), EVERYTHING, RNG)
    assert paged.action is A.ESCALATE_TO_HUMAN and "no runbook rule" in paged.reason
    tired = obs("schema_drift", attempts=2, minutes_open=PAGING_DELAY_MINUTES, last=A.REMAP_SCHEMA)
    assert rules.choose(tired, EVERYTHING, RNG).action is A.ESCALATE_TO_HUMAN
    cooling = rules.choose(obs("schema_drift"), (A.WAIT, A.ESCALATE_TO_HUMAN), RNG)
    assert cooling.action is A.WAIT and "not allowed" in cooling.reason


def test_manual_waits_out_the_paging_delay_then_hands_over():
    manual = ManualPolicy()
    assert manual.choose(obs(minutes_open=PAGING_DELAY_MINUTES - 1), EVERYTHING, RNG).action is A.WAIT
    assert manual.choose(obs(minutes_open=PAGING_DELAY_MINUTES), EVERYTHING, RNG).action is A.ESCALATE_TO_HUMAN
    assert manual.learn(transition()) is None


def test_oracle_fixes_the_true_fault_on_its_stage():
    truth = {"orders": [(FaultKind.WAREHOUSE_SATURATION, Stage.WAREHOUSE)]}
    oracle = OraclePolicy(lambda pid, ts: truth.get(pid, []))
    # The signature says contention at the transform; the oracle knows better.
    choice = oracle.choose(obs("resource_contention", Stage.TRANSFORM, hot=True), EVERYTHING, RNG)
    assert (choice.action, choice.stage) == (A.RESCHEDULE, Stage.WAREHOUSE)
    truth["orders"] = [(FaultKind.CREDENTIALS_EXPIRED, Stage.SOURCE)]
    assert oracle.choose(obs("unknown"), EVERYTHING, RNG).action is A.ESCALATE_TO_HUMAN
    truth["orders"] = []
    assert oracle.choose(obs(), EVERYTHING, RNG).action is A.WAIT


def test_oracle_sees_to_the_second_fault_while_the_first_ones_fix_is_at_work():
    truth = {"orders": [(FaultKind.NETWORK_FAILURE, Stage.WAREHOUSE), (FaultKind.CDC_STOPPED, Stage.SOURCE)]}
    oracle = OraclePolicy(lambda pid, ts: truth.get(pid, []), {A.RETRY_WITH_BACKOFF: 10, A.RESTART_CDC_TASK: 5})
    first = oracle.choose(obs("network_failure", Stage.WAREHOUSE), EVERYTHING, RNG)
    assert (first.action, first.stage) == (A.RETRY_WITH_BACKOFF, Stage.WAREHOUSE)
    later = lambda minutes: replace(obs("network_failure", Stage.WAREHOUSE), ts=T0 + timedelta(minutes=minutes))  # noqa: E731
    # The outage stays "active" while the retry schedule absorbs it: the stopped CDC task is next, not a retry.
    assert oracle.choose(later(3), EVERYTHING, RNG).action is A.RESTART_CDC_TASK
    # Both fixes at work: the earliest fault's is repeated (as the oracle always did with one fault).
    assert oracle.choose(later(5), EVERYTHING, RNG).action is A.RETRY_WITH_BACKOFF
    assert oracle.choose(later(9), EVERYTHING, RNG).action is A.RESTART_CDC_TASK  # its cooldown is over
    # Asked about a second stage beside a step at work: that stage's fault, or nothing.
    beside = lambda stage: replace(obs("unknown", stage), concurrent=True)  # noqa: E731
    assert oracle.choose(beside(Stage.SOURCE), EVERYTHING, RNG).stage is Stage.SOURCE
    assert oracle.choose(beside(Stage.TRANSFORM), EVERYTHING, RNG).action is A.WAIT


def test_the_mean_of_tables_backs_off_to_the_coarse_state_where_each_learner_does():
    # Three learners each tried a rare state 6 times (< backoff_visits) and act on its coarse state; their noisy exact
    # values disagree. Their mean must stay rare (6 tries, not 18) and act on the pooled values as each learner does.
    rare, pooled = "cdc_stopped|any|q-high", "cdc_stopped|any|*"
    tables = []
    for wait_value in (40.0, -30.0, 35.0):
        t = QTable()
        t.set(rare, A.WAIT, wait_value, visits=3)
        t.set(rare, A.RESTART_CDC_TASK, 10.0, visits=3)
        t.set(pooled, A.WAIT, -5.0, visits=40)
        t.set(pooled, A.RESTART_CDC_TASK, 25.0, visits=60)
        tables.append(t)
    allowed = [A.WAIT, A.RESTART_CDC_TASK]
    for t in [*tables, mean_table(tables)]:
        greedy = QLearningPolicy(t, QParams(backoff_visits=10), explore=False)
        assert greedy.values(rare, allowed) == {A.WAIT: -5.0, A.RESTART_CDC_TASK: 25.0}
    assert sum(mean_table(tables).n(rare, a) for a in allowed) == 6


def test_a_rare_state_acts_on_its_coarse_state_until_it_has_been_tried_enough():
    assert coarse("cdc_stopped|any|q-high") == "cdc_stopped|any|*"
    assert coarse("cdc_stopped|any|*") is None and coarse("s") is None
    agent = QLearningPolicy(params=QParams(backoff_visits=3))
    normal, high = "cdc_stopped|any|q-normal", "cdc_stopped|any|q-high"
    for _ in range(4):  # learned where the warehouse queue is normal: restarting the task works
        agent.learn(transition(state=normal, action=A.RESTART_CDC_TASK, reward=20.0, done=True, next_state=None))
    agent.learn(transition(state=normal, action=A.WAIT, reward=-5.0, done=True, next_state=None))
    assert agent.table.q("cdc_stopped|any|*", A.RESTART_CDC_TASK) == pytest.approx(20.0)
    allowed = (A.RESTART_CDC_TASK, A.WAIT, A.REMAP_SCHEMA)
    rng = np.random.default_rng(0)
    greedy = QLearningPolicy(agent.table, agent.params, explore=False, learning=False)
    rare = obs("cdc_stopped", Stage.SOURCE, queue=200.0)
    assert encode(rare) == high and greedy.choose(rare, allowed, rng).action is A.RESTART_CDC_TASK
    # Once the exact state is known well enough its own values rule, even where they disagree.
    for _ in range(3):
        agent.learn(transition(state=high, action=A.REMAP_SCHEMA, reward=60.0, done=True, next_state=None))
    assert greedy.choose(rare, allowed, rng).action is A.REMAP_SCHEMA
