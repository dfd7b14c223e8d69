"""The feedback loop: act, verify, reward and learn in the twin; the store path equals the training path;
persistence of the Q-table and transitions; determinism by seed; the new fault kinds."""

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from engine.decision.policy import Choice
from engine.decision.qlearning import QLearningPolicy, QTable, mean_table
from engine.detection.stage_scores import StageScorer
from engine.errors import SelfhealError
from engine.execution.catalog import CATALOG
from engine.feedback import memory, training
from engine.feedback.arena import Arena
from engine.feedback.bench import run_policy
from engine.feedback.curriculum import held_out, training_batch
from engine.feedback.loop import Healer
from engine.feedback.training import VALIDATION_FAMILIES, Validation, default_checkpoints, train
from engine.model import ActionKind, Stage
from engine.service.simulate import run_scenario
from engine.sim.scenario import parse_scenario
from engine.sim.twin import Twin
from engine.store import decision_repo
from engine.store.db import Store

A = ActionKind
DRIFT = {"name": "drift", "seed": 4, "duration_minutes": 150, "pipelines": [{"id": "orders"}],
         "faults": [{"pipeline": "orders", "stage": "transform", "kind": "schema_drift", "at_minute": 70,
                     "severity": 0.8}]}


class _Always:
    """A scripted policy: `action` whenever the catalog allows it, else wait."""

    def __init__(self, action: ActionKind) -> None:
        self.action, self.name = action, f"always-{action.value}"

    def choose(self, obs, allowed, rng) -> Choice:
        return Choice(self.action if self.action in allowed else A.WAIT, "scripted")

    def learn(self, t) -> None:
        return None

    def end_episode(self) -> None:
        return None


def _arena(data: dict, policy, *, parallel: bool = True) -> Arena:
    sc = parse_scenario(data)
    arena = Arena(Twin.from_scenario(sc), policy, rng=np.random.default_rng(0), parallel=parallel)
    arena.run_until(sc.duration_minutes)
    return arena


def test_the_loop_acts_verifies_and_learns_a_recovery():
    from engine.decision.baselines import RulesPolicy

    arena = _arena(DRIFT, RulesPolicy())
    (decision, *_) = arena.log.decisions
    assert decision.choice.action is A.REMAP_SCHEMA and decision.execution.request.stage is Stage.TRANSFORM
    assert arena.twin.faults[0].fixed_at is not None  # the remap landed
    last = arena.log.learned[-1].transition
    assert last.done and last.next_state is None and last.reward > 0  # recovery outweighs time and cost
    (end,) = arena.log.ended
    assert end.recovered and end.actions == 1 and not end.escalated


def test_two_faults_on_two_stages_are_worked_on_side_by_side():
    from engine.decision.baselines import RulesPolicy

    both = dict(DRIFT, duration_minutes=160, faults=[
        {"pipeline": "orders", "stage": "source", "kind": "cdc_stopped", "at_minute": 70, "severity": 0.8},
        {"pipeline": "orders", "stage": "transform", "kind": "schema_drift", "at_minute": 70, "severity": 0.8}])

    def healthy_again(arena: Arena) -> int:
        slo = arena.slo["orders"]
        return max(m for m in range(70, len(slo)) if not slo[m]) + 1

    side = _arena(both, RulesPolicy())
    first, second, *_ = side.log.decisions
    assert (first.choice.action, first.execution.request.stage) == (A.RESTART_CDC_TASK, Stage.SOURCE)
    assert (second.choice.action, second.execution.request.stage) == (A.REMAP_SCHEMA, Stage.TRANSFORM)
    first_judged = next(x.transition.ts for x in side.log.learned if x.transition.action is A.RESTART_CDC_TASK)
    assert second.ts < first_judged  # decided while the CDC restart was still being verified
    assert second.state.startswith("schema_drift|")  # observed from the drifted stage, not the root
    assert second.execution.request.evidence["beside_another_step"] is True
    one_at_a_time = _arena(both, RulesPolicy(), parallel=False)
    assert one_at_a_time.log.decisions[1].ts >= first_judged
    assert all(f.fixed_at is not None for f in side.twin.faults)
    assert healthy_again(side) - 70 == 7 and healthy_again(one_at_a_time) - 70 == 14
    # A wait taken beside a running step never holds off the incident's own next decision (the manual
    # policy's page after its delay starved behind alternating waits on two stages).
    from engine.decision.baselines import PAGING_DELAY_MINUTES, ManualPolicy

    manual = _arena(both, ManualPolicy())
    *waits, page = manual.log.decisions
    assert {d.choice.action for d in waits} == {A.WAIT} and page.choice.action is A.ESCALATE_TO_HUMAN
    assert {d.execution.request.stage for d in waits} == {Stage.SOURCE, Stage.TRANSFORM}
    assert (page.ts - waits[0].ts).total_seconds() / 60 <= PAGING_DELAY_MINUTES + 2


def test_a_learner_updates_its_table_from_the_loop():
    agent = QLearningPolicy(explore=False)
    arena = _arena(DRIFT, agent)
    assert len(agent.table) >= 1
    assert all(x.update is not None for x in arena.log.learned)
    x = arena.log.learned[0]
    assert agent.table.visits[x.transition.state][x.transition.action] >= 1


def test_store_path_and_training_path_see_the_same_state_and_make_the_same_moves():
    sc = held_out("mixed", 1, 3)[0]
    memory_run = run_policy(sc, "rules")
    store_run = run_scenario(sc, policy="rules")
    assert [f["mttr_minutes"] for f in memory_run["faults"]] == [f["mttr_minutes"] for f in store_run["faults"]]
    assert memory_run["decisions"]["by_action"] == store_run["decisions"]["by_action"]
    assert memory_run["summary"]["slo_attainment"] == store_run["summary"]["slo_attainment"]


def test_simulate_needs_a_trained_table_for_qlearning():
    with pytest.raises(SelfhealError, match="selfheal train"):
        run_scenario(parse_scenario(DRIFT), policy="qlearning")


def test_training_is_deterministic_by_seed():
    a, b, c = QLearningPolicy(), QLearningPolicy(), QLearningPolicy()
    ra = train(a, episodes=12, seed=5, batch_size=6)
    rb = train(b, episodes=12, seed=5, batch_size=6)
    rc = train(c, episodes=12, seed=6, batch_size=6)
    assert ra.records == rb.records and a.table.values == b.table.values
    assert ra.records != rc.records
    assert len(ra.records) == 12 and [r.episode for r in ra.records] == list(range(12))


def test_checkpoint_selection_keeps_the_best_scoring_table_and_is_deterministic():
    runs = []
    for jobs in (1, 2):  # 2: checkpoints scored in another process while training goes on; the same result
        training._VALIDATIONS.clear()  # jobs 1 keeps its validation set here for the next learner or run
        agent = QLearningPolicy()
        run = train(agent, episodes=30, seed=3, batch_size=10, checkpoints=(10, 20, 30), validation_episodes=8,
                    jobs=jobs)
        runs.append((run, agent))
    (run, agent), (again, twin_agent) = runs
    assert [c.episodes for c in run.checkpoints] == [10, 20, 30]
    chosen = [c for c in run.checkpoints if c.chosen]
    assert len(chosen) == 1 and chosen[0] is run.chosen
    assert run.chosen.score == min(c.score for c in run.checkpoints)
    # The policy ends with the chosen checkpoint's table: scoring it again gives the chosen score.
    assert Validation(3, episodes=8).score(agent, 30).score == run.chosen.score
    assert run.checkpoints == again.checkpoints and agent.table.values == twin_agent.table.values
    assert not training._VALIDATIONS  # the second run's scores came from the scoring process, not a fallback here
    assert set(run.chosen.mttr) == set(VALIDATION_FAMILIES)
    assert default_checkpoints(100) == () and default_checkpoints(1000) == (600, 700, 800, 900, 1000)


def test_a_poor_run_is_trained_again_with_the_next_seed_and_the_best_run_is_kept(monkeypatch):
    start = QTable()
    start.set("network_failure|any|q-normal", ActionKind.RETRY_WITH_BACKOFF, 12.0, visits=40)  # a stored table
    kwargs = dict(episodes=20, batch_size=10, checkpoints=(10, 20), validation_episodes=8)

    def from_start() -> QLearningPolicy:
        return QLearningPolicy(start.copy(), episodes=100)

    # No run is poor: one run, the same table as without restarts.
    monkeypatch.setattr(training, "POOR_SCORE", float("inf"))
    plain, one = from_start(), from_start()
    train(plain, seed=4, **kwargs)
    run = train(one, seed=4, restarts=2, **kwargs)
    assert [(a.seed, a.kept) for a in run.attempts] == [(4, True)] and one.table.values == plain.table.values

    # Every run is poor: three runs, seeds 4, 5, 6, each from the same starting table, all validated on seed 4's
    # episodes; the best-scoring one is kept, with its curve, checkpoints and table.
    monkeypatch.setattr(training, "POOR_SCORE", 0.0)
    heard: list[training.Attempt] = []
    agent = from_start()
    run = train(agent, seed=4, restarts=2, on_restart=heard.append, **kwargs)
    assert [a.seed for a in run.attempts] == [4, 5, 6] and [a.seed for a in heard] == [4, 5]
    scores = [a.score for a in run.attempts]
    kept = scores.index(min(scores))
    assert [a.kept for a in run.attempts] == [k == kept for k in range(3)]
    assert run.seed == 4 + kept and run.chosen.score == min(scores)
    assert run.seconds == pytest.approx(sum(a.seconds for a in run.attempts), abs=0.05)
    alone = from_start()
    alone_run = training._train_once(alone, episodes=20, seed=4 + kept, batch_size=10, mix=None, weights=None,
                                     progress=None, checkpoints=(10, 20), scorer=training._Scorer(4, 8, jobs=1))
    assert alone_run.checkpoints == run.checkpoints and alone.table.values == agent.table.values
    assert alone.episodes == agent.episodes < 100 + 2 * 20  # the kept run's episode count, not three runs'
    assert Validation(4, episodes=8).score(agent, 20).score == run.chosen.score
    # Scored in one spawned process shared by the three runs: the same runs, scores and kept table.
    beside = from_start()
    shared = train(beside, seed=4, restarts=2, jobs=2, **kwargs)
    assert [(a.seed, a.score, a.kept) for a in shared.attempts] == [(a.seed, a.score, a.kept) for a in run.attempts]
    assert beside.table.values == agent.table.values
    with pytest.raises(ValueError, match="restarts"):
        train(from_start(), seed=4, restarts=-1, **kwargs)


def test_three_learners_train_on_their_own_streams_and_the_policy_keeps_the_mean_of_their_tables(monkeypatch):
    monkeypatch.setattr(training, "POOR_SCORE", float("inf"))  # 20 episodes score poorly: no restart, no fallback
    start = QTable()
    start.set("network_failure|any|q-normal", ActionKind.RETRY_WITH_BACKOFF, 12.0, visits=40)  # a stored table
    kwargs = dict(episodes=20, batch_size=10, checkpoints=(10, 20), validation_episodes=8)
    lone = QLearningPolicy(start.copy(), episodes=100)
    train(lone, seed=4, **kwargs)
    runs, tables = [], []
    for jobs in (1, 2):  # 2: learner 1 trains in a process of its own, 0 and 2 here; the same result
        agent, heard = QLearningPolicy(start.copy(), episodes=100), []
        runs.append(train(agent, seed=4, members=3, jobs=jobs, progress=lambda d, t, heard=heard: heard.append((d, t)),
                          **kwargs))
        tables.append(agent.table.values)
        assert heard[-1] == (60, 60) and all(t == 60 for _d, t in heard)  # every learner's episodes counted
        assert agent.episodes == 120
    run = runs[0]
    assert tables[0] == tables[1] and [a.to_dict() | {"seconds": 0} for a in run.attempts] == \
        [a.to_dict() | {"seconds": 0} for a in runs[1].attempts] and run.ensemble == runs[1].ensemble
    assert [(a.member, a.seed, a.kept) for a in run.attempts] == [(0, 4, True), (1, 4, True), (2, 4, True)]
    assert [c.member for c in run.checkpoints] == [0, 0, 1, 1, 2, 2]
    # Learner 0 is a lone run of the seed; the others train on their own streams from the same starting table;
    # the policy ends with the mean of the kept tables, and the averaged table's validation score is reported.
    others = []
    for member in (1, 2):
        other = QLearningPolicy(start.copy(), episodes=100)
        spec = training._Spec(20, 4, 10, None, None, (10, 20), 8, 0)
        alone = training._train_member(other, spec, member, training._Scorer(4, 8, jobs=1), progress=None)
        assert alone.records != run.records and alone.checkpoints == run.checkpoints[2 * member:2 * member + 2]
        others.append(other.table)
    assert mean_table([lone.table, *others]).values == tables[0]
    agent = QLearningPolicy(mean_table([lone.table, *others]))
    assert run.ensemble == replace(Validation(4, episodes=8).score(agent, 20), chosen=True)  # the table in use
    assert run.summary(seed=4, episodes_total=120)["members"] == 3 and run.fallback is None and run.ensemble.chosen
    assert run.averaged == (0, 1, 2)
    # Averaging only the best two: the learners whose kept checkpoints scored lowest (the same runs as above).
    best_two = QLearningPolicy(start.copy(), episodes=100)
    two = train(best_two, seed=4, members=3, averaged=2, **kwargs)
    kept = {a.member: a.score for a in run.attempts}
    assert two.averaged == tuple(sorted(sorted(kept, key=lambda m: (kept[m], m))[:2]))
    assert best_two.table.values == mean_table([[lone.table, *others][m] for m in two.averaged]).values
    assert two.summary(seed=4, episodes_total=120)["averaged"] == list(two.averaged)
    for bad in (dict(members=0), dict(members=2, averaged=3), dict(members=2, averaged=0)):
        with pytest.raises(ValueError, match="members"):
            train(QLearningPolicy(), seed=4, **bad, **kwargs)


def test_the_runs_list_and_the_agent_note_name_the_learners_left_out_of_the_mean():
    from engine.feedback.agent_view import attempts_note
    from engine.feedback.summaries import attempt_lines, learners_phrase
    from engine.feedback.training import Attempt

    attempts = [Attempt(7, score, 30.0, kept=True, member=m) for m, score in enumerate((1.3, 0.98, 1.02, 1.05))]
    assert learners_phrase(4, None, (1, 2, 3)) == " × 4 learners, the best 3 averaged"
    assert learners_phrase(2, None, (0, 1)) == " × 2 learners, averaged"
    assert learners_phrase(4, 1, (1, 2, 3)) == " × 4 learners (learner 1's table kept)"
    lines = attempt_lines(attempts, (1, 2, 3))
    assert lines[0] == "4 training runs by 4 learners; the 3 best-scoring learners' tables averaged:"
    assert lines[1].endswith("← kept, left out of the mean") and all(x.endswith("← kept") for x in lines[2:])
    note = attempts_note({"attempts": [a.to_dict() for a in attempts], "averaged": [1, 2, 3], "fallback": None,
                          "ensemble": {"score": 0.97}})
    assert note == ("4 learners trained side by side on their own scenario streams; the table in use is the mean of "
                    "the kept tables of the 3 that scored best, learners 1, 2, 3 (it scores 0.970).")


def test_a_poorly_scoring_mean_gives_way_to_the_best_learners_table(monkeypatch):
    kwargs = dict(episodes=20, batch_size=10, checkpoints=(10, 20), validation_episodes=8, seed=3, members=2)
    monkeypatch.setattr(training, "POOR_SCORE", float("inf"))  # no run and no mean is poor: the mean is kept
    averaged = QLearningPolicy()
    mean_run = train(averaged, **kwargs)
    learners = [c for c in mean_run.checkpoints if c.chosen]
    best = min(learners, key=lambda c: c.score)
    assert best.score < mean_run.ensemble.score  # this seed's mean scores worse than its better learner
    monkeypatch.setattr(training, "POOR_SCORE", mean_run.ensemble.score - 1e-6)  # so the mean counts as poor
    agent = QLearningPolicy()
    run = train(agent, **kwargs)
    assert run.fallback == best.member and not run.ensemble.chosen
    assert Validation(3, episodes=8).score(agent, 20).score == best.score  # the table in use is that learner's
    assert agent.table.values != averaged.table.values and agent.episodes == averaged.episodes == 20
    # A mean scoring no worse than the poor bar is kept whatever the learners scored.
    monkeypatch.setattr(training, "POOR_SCORE", mean_run.ensemble.score)
    kept = QLearningPolicy()
    assert train(kept, **kwargs).fallback is None and kept.table.values == averaged.table.values


def test_training_and_held_out_scenarios_never_share_a_twin_seed():
    rng = np.random.default_rng([0, 0x7EA1])
    train_seeds = {training_batch(rng, 4, k)[0].seed for k in range(20)}
    held = {sc.seed for fam in ("single", "mixed", "novel") for sc in held_out(fam, 10, 1000)}
    assert all(s % 2 == 0 for s in train_seeds) and all(s % 2 == 1 for s in held)


def test_a_forked_warm_up_runs_exactly_as_a_fresh_arena_and_a_retired_pipeline_is_no_longer_analysed():
    from engine.decision.baselines import RulesPolicy

    two = dict(DRIFT, pipelines=[{"id": "orders"}, {"id": "users"}], faults=[
        *DRIFT["faults"], {"pipeline": "users", "stage": "source", "kind": "cdc_stopped", "at_minute": 75,
                           "severity": 0.8}])
    fresh = _arena(two, RulesPolicy())
    warm = Arena(Twin.from_scenario(parse_scenario(two)), None)
    warm.run_until(70)  # the minutes before the first fault: no incident, nothing to act on
    assert not warm.incidents
    forked = warm.fork(RulesPolicy(), rng=np.random.default_rng(0))
    forked.run_until(150)
    assert warm.twin.minute == 70  # the warm-up itself is untouched
    assert [(d.ts, d.pipeline_id, d.choice.action) for d in forked.log.decisions] == \
        [(d.ts, d.pipeline_id, d.choice.action) for d in fresh.log.decisions]
    assert forked.slo == fresh.slo and forked.log.ended == fresh.log.ended
    with pytest.raises(ValueError, match="only an arena without a policy"):
        fresh.fork(RulesPolicy())

    # Retired once its incident is over: "users" is still simulated but no longer scored, assessed or acted on;
    # "orders" runs on exactly as before (nothing acted on "users" after its incident in the fresh run).
    arena = Arena(Twin.from_scenario(parse_scenario(two)), RulesPolicy(), rng=np.random.default_rng(0))
    while not any(e.pipeline_id == "users" for e in arena.log.ended):
        arena.minute()
    arena.retire("users")
    at = len(arena.slo["users"])
    arena.run_until(150)
    assert arena.twin.minute == 150 and len(arena.slo["users"]) == at
    assert all(d.pipeline_id == "orders" for d in arena.log.decisions if d.ts >= arena.twin.time_of(at))
    assert arena.slo["orders"] == fresh.slo["orders"]
    assert [d.choice.action for d in arena.log.decisions if d.pipeline_id == "orders"] == \
        [d.choice.action for d in fresh.log.decisions if d.pipeline_id == "orders"]


def test_training_stops_analysing_a_pipeline_once_its_episode_and_its_faults_are_over():
    # "orders": a network failure that passes by itself; "users": expired credentials, which only a human fixes.
    data = {"name": "quiet", "seed": 4, "duration_minutes": 200, "pipelines": [{"id": "orders"}, {"id": "users"}],
            "faults": [{"pipeline": "orders", "stage": "source", "kind": "network_failure", "at_minute": 70,
                        "duration_minutes": 15, "severity": 0.8},
                       {"pipeline": "users", "stage": "warehouse", "kind": "credentials_expired", "at_minute": 70,
                        "severity": 0.8}]}
    sc = parse_scenario(data)

    def arena() -> Arena:
        return Arena(Twin.from_scenario(sc), _Always(A.WAIT), rng=np.random.default_rng(0))

    watched = arena()
    orders = [f for f in watched.twin.faults if f.pipeline == "orders"]
    assert not training._quiet(watched, orders)  # its fault is still to come
    watched.run_until(86)  # the failure is over, the pipeline still recovering
    assert "orders" in watched.open and not training._quiet(watched, orders)

    trained = arena()
    records = training._run_batch(trained, sc.duration_minutes, ["single", "novel"], _Always(A.WAIT), 0)
    assert [(r.kind, r.mttr_minutes is not None) for r in records] == [("network_failure", True),
                                                                         ("credentials_expired", False)]
    assert trained.retired == {"orders"}  # "users" never recovered: analysed to the end
    assert len(trained.slo["orders"]) < len(trained.slo["users"]) == 200
    assert training._quiet(trained, orders)
    # Nothing else changes: the pipeline still in trouble is seen and acted on as when nothing is retired.
    plain = arena()
    plain.run_until(200)
    assert [(d.ts, d.choice.action) for d in trained.log.decisions if d.pipeline_id == "users"] == \
        [(d.ts, d.choice.action) for d in plain.log.decisions if d.pipeline_id == "users"]
    assert trained.slo["users"] == plain.slo["users"]
    assert trained.slo["orders"] == plain.slo["orders"][:len(trained.slo["orders"])]


def test_rebaseline_restarts_a_stage_stream_after_a_deliberate_change():
    scorer = StageScorer()
    assert not scorer.rebaseline("orders", Stage.TRANSFORM)
    twin = Twin.from_scenario(parse_scenario(dict(DRIFT, faults=[])))
    arena = Arena(twin, None, scorer=scorer)
    arena.run_until(70)
    i = scorer.streams_[("orders", Stage.TRANSFORM)]
    assert scorer.seen_[i] == 70
    assert scorer.rebaseline("orders", Stage.TRANSFORM)
    assert scorer.seen_[i] == 0 and scorer.seen_[scorer.streams_[("orders", Stage.SOURCE)]] == 70


def test_a_scale_up_that_lands_after_its_incident_closed_still_rebaselines_the_stage():
    # A brief contention: the runbook scales the orchestrator's workers, the incident closes while the scale-up
    # is still under way. When it lands, the scorer must learn the new worker count; before, the stage stayed
    # "anomalous" (workers far above the old baseline), a second incident stayed open 25 minutes and the
    # runbook scaled up again for nothing (on two-day runs such an incident never closed and swallowed later
    # faults).
    from engine.decision.baselines import RulesPolicy

    blip = dict(DRIFT, seed=1, duration_minutes=160, faults=[
        {"pipeline": "orders", "stage": "orchestrator", "kind": "resource_contention", "at_minute": 70,
         "duration_minutes": 2, "severity": 0.8}])
    arena = _arena(blip, RulesPolicy())
    scale_ups = [d for d in arena.log.decisions if d.choice.action is A.SCALE_WORKERS]
    assert len(scale_ups) == 1 and scale_ups[0].execution.request.stage is Stage.ORCHESTRATOR
    assert not arena.open and not arena.healer.landing
    lasted = [(i.closed_at - i.opened_at).total_seconds() / 60 for i in arena.incidents.values()]
    assert max(lasted) <= 5, lasted


def test_the_next_incident_on_a_pipeline_sits_out_the_cooldown_of_the_last_ones_resize():
    # Two brief network failures at the warehouse, fifteen minutes apart, each its own incident. A policy that
    # resizes the warehouse whenever it may does so once: the 30-minute cooldown guards the warehouse, not the
    # incident (before, every new incident on a flickering stage got its own resize, minutes apart).
    twice = dict(DRIFT, seed=1, duration_minutes=170, faults=[
        {"pipeline": "orders", "stage": "warehouse", "kind": "network_failure", "at_minute": at,
         "duration_minutes": lasts, "severity": 0.9} for at, lasts in ((70, 4), (85, 6))])
    arena = _arena(twice, _Always(A.SCALE_WAREHOUSE))
    assert len(arena.incidents) == 2 and not arena.open
    resized = [d.incident_id for d in arena.log.decisions if d.choice.action is A.SCALE_WAREHOUSE]
    assert resized == [1]
    assert {d.choice.action for d in arena.log.decisions if d.incident_id == 2} == {A.WAIT}


def test_a_rejection_is_a_negative_lesson():
    from engine.execution.executor import TwinExecutor
    from tests.unit.test_decision import obs

    agent = QLearningPolicy()
    healer = Healer(agent, TwinExecutor(Twin.from_scenario(parse_scenario(DRIFT))), rng=np.random.default_rng(0))
    learned = healer.reject(obs(), A.SCALE_WORKERS, (A.SCALE_WORKERS, A.WAIT))
    assert learned.status.value == "rejected" and learned.transition.reward < 0
    assert agent.table.q(learned.transition.state, A.SCALE_WORKERS) < 0


def test_q_table_and_transitions_survive_a_restart(db_url):
    agent = QLearningPolicy(explore=False)
    arena = _arena(DRIFT, agent)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    store = Store.open(db_url)
    with store.transaction() as conn:
        assert memory.save_table(conn, agent.table, now=now) == len(agent.table)
        memory.persist_learning(conn, agent.table, arena.log.learned, now=now, source="training")
    store.dispose()
    reopened = Store.open(db_url)
    loaded = memory.load_policy(reopened)
    assert loaded.table.values == agent.table.values  # doubles round-trip exactly
    assert loaded.table.visits == agent.table.visits
    with reopened.read() as conn:
        frame = decision_repo.recent_transitions(conn, memory.POLICY, limit=100)
        assert decision_repo.count_transitions(conn, memory.POLICY) == len(arena.log.learned)
    assert list(frame["action"])[::-1] == [x.transition.action.value for x in arena.log.learned]
    assert bool(frame["done"].iloc[0]) is True and frame["q_after"].notna().all()
    # Live learning upserts only what moved.
    agent.table.set("brand|new|state", A.WAIT, -1.5)
    with reopened.transaction() as conn:
        decision_repo.upsert_q_values(conn, memory.POLICY, [("brand|new|state", "wait", -1.5, 1)], now)
    assert memory.load_policy(reopened).table.q("brand|new|state", A.WAIT) == -1.5
    reopened.dispose()


def test_table_rows_for_unknown_actions_are_skipped():
    table = memory.table_from_rows([("s", "wait", 1.0, 2), ("s", "reboot_the_cloud", 9.0, 1)])
    assert isinstance(table, QTable) and table.values == {"s": {A.WAIT: 1.0}}


def test_a_table_stored_under_the_older_state_keys_is_upgraded_on_load():
    # Before diagnosed signatures pooled failing and slow, a drift had two rows: merged visit-weighted.
    table = memory.table_from_rows([
        ("schema_drift|failing|q-normal", "remap_schema", 30.0, 3),
        ("schema_drift|slow|q-normal", "remap_schema", 10.0, 1),
        ("schema_drift|slow|q-normal", "wait", -4.0, 2),
        # A row learned under the current key since the upgrade stands; the older one for it is dropped.
        ("cdc_stopped|any|q-high", "restart_cdc_task", 12.0, 5),
        ("cdc_stopped|failing|q-high", "restart_cdc_task", 99.0, 9),
        # Undiagnosed and throttled keys keep failing vs slow.
        ("unknown|failing|q-normal", "wait", -1.0, 1), ("throttled|slow|q-raised", "wait", 2.0, 1)])
    assert table.q("schema_drift|any|q-normal", A.REMAP_SCHEMA) == pytest.approx(25.0)
    assert table.visits["schema_drift|any|q-normal"] == {A.REMAP_SCHEMA: 4, A.WAIT: 2}
    assert table.q("schema_drift|any|q-normal", A.WAIT) == -4.0
    assert table.q("cdc_stopped|any|q-high", A.RESTART_CDC_TASK) == 12.0
    assert table.visits["cdc_stopped|any|q-high"][A.RESTART_CDC_TASK] == 5
    assert set(table.values) == {"schema_drift|any|q-normal", "cdc_stopped|any|q-high", "unknown|failing|q-normal",
                                 "throttled|slow|q-raised"}


def test_credentials_expire_until_a_human_rotates_them_and_saturation_looks_like_contention():
    cred = dict(DRIFT, faults=[{"pipeline": "orders", "stage": "source", "kind": "credentials_expired",
                                "at_minute": 70}])
    from engine.decision.baselines import RulesPolicy

    rules = _arena(cred, RulesPolicy())
    assert [d.choice.action for d in rules.log.decisions if d.choice.action is not A.WAIT] == [A.ESCALATE_TO_HUMAN]
    assert all(d.state.startswith("unknown|failing") for d in rules.log.decisions)  # no runbook rule knows it
    sat = dict(DRIFT, duration_minutes=100, faults=[{"pipeline": "orders", "stage": "warehouse",
                                                     "kind": "warehouse_saturation", "at_minute": 70}])
    arena = _arena(sat, RulesPolicy())
    first = arena.log.decisions[0]
    assert first.state.startswith("resource_contention") and first.choice.action is A.SCALE_WORKERS
    assert arena.twin.faults[0].fixed_at is None  # scaling the transform does not relieve the warehouse


def test_the_embedded_runtime_heals_live_through_the_policy_and_records_the_chain(tmp_path):
    from sqlalchemy import select

    from engine.service.runtime import EmbeddedRuntime
    from engine.settings import load_settings
    from engine.store.tables import AuditEntryRow

    (tmp_path / "policy.toml").write_text('[[auto]]\nname = "remaps"\nactions = ["remap_schema"]\n'
                                          'max_risk = "medium"\nmin_confidence = 0.0\n')
    settings = load_settings(data_dir=tmp_path, fleet_size=3, backfill_minutes=70, live=False, seed=3)
    runtime = EmbeddedRuntime(settings, policy="rules")
    runtime.backfill()
    runtime.inject_fault("orders", "transform", "schema_drift")
    results = [runtime.advance(1) for _ in range(25)]
    acted = [d for r in results for d in r.decisions]
    assert [d.choice.action for d in acted][:1] == [A.REMAP_SCHEMA]
    assert acted[0].execution.ref.startswith("proposal:")
    assert any(r.closed for r in results)  # healed within 25 minutes, through proposal → policy → worker → twin
    with runtime.store.read() as conn:
        kinds = [r.kind for r in conn.execute(select(AuditEntryRow.__table__.c.kind).order_by(
            AuditEntryRow.__table__.c.id))]
        assert decision_repo.count_transitions(conn, "rules") >= 1
    chain = ["proposal_created", "proposal_approved", "action_started", "action_finished", "agent_feedback"]
    assert [k for k in kinds if k in chain][:5] == chain
    runtime.stop()


def test_a_page_is_credited_with_the_recovery_only_if_the_humans_work_ended_the_incident():
    """Paging is a hands-off step that lasts until the incident closes. If it closes on its own while the human
    is still on the way (a short surge), the page was a false one: learned without the recovery bonus. If the
    human's fix is what closed it (expired credentials), the bonus counts. (A page whose human's work fails no
    longer lasts until the close: see the next test.)"""
    from engine.feedback.reward import RewardWeights

    w = RewardWeights()

    def page_of(fault: dict) -> tuple[float, int]:
        """The first incident's page: its recovery bonus (its reward less time, SLO misses and cost) and the close
        minute less the minute the human's work ended."""
        arena = _arena(dict(DRIFT, duration_minutes=200, faults=[fault]), _Always(A.ESCALATE_TO_HUMAN))
        (page,) = [x.transition for x in arena.log.learned  # the first incident's one page
                   if x.transition.action is A.ESCALATE_TO_HUMAN and x.transition.incident_id == 1]
        assert page.done and page.next_state is None
        end = round((page.ts - arena.twin.start).total_seconds() / 60)
        unhealthy = sum(not ok for ok in arena.slo["orders"][end - page.minutes + 1:end + 1])
        cost = CATALOG[A.ESCALATE_TO_HUMAN].cost
        bonus = page.reward + w.minute * page.minutes + w.unhealthy * unhealthy + w.cost * cost
        human = next(a for a in arena.twin.actions if a.action is A.ESCALATE_TO_HUMAN)
        return bonus, end - human.completes

    surge, early = page_of({"pipeline": "orders", "stage": "transform", "kind": "resource_contention",
                            "at_minute": 70, "duration_minutes": 6, "severity": 0.9})
    assert early < 0 and surge == pytest.approx(0.0)  # closed before the human got to it: a false page
    rotated, late = page_of({"pipeline": "orders", "stage": "transform", "kind": "credentials_expired",
                             "at_minute": 70, "severity": 0.8})
    assert late >= 0 and rotated == pytest.approx(w.recovery)  # the human's rotation ended it


def test_a_page_that_fails_hands_the_incident_back_to_the_loop():
    """A page hands the incident to a human until it closes, unless the page fails: in this twin (seed 56) the
    human's rotation of the expired credentials fails. The loop then decides again at once (paging again waits
    for the page's cooldown; here it pages again once it may, and the second rotation works). The failed page is
    dropped unlearned, as before (it was never learned: its incident sat with nobody on it until the run ended)."""
    fault = {"pipeline": "orders", "stage": "transform", "kind": "credentials_expired", "at_minute": 70,
             "severity": 0.8}
    arena = _arena(dict(DRIFT, seed=56, duration_minutes=300, faults=[fault]), _Always(A.ESCALATE_TO_HUMAN))
    pages = [a for a in arena.twin.actions if a.action is A.ESCALATE_TO_HUMAN]
    first, second = pages[:2]
    assert first.outcome == "failed" and second.outcome == "succeeded"
    at = [(round((d.ts - arena.twin.start).total_seconds() / 60), d.choice.action) for d in arena.log.decisions]
    assert (first.completes, A.WAIT) in at  # the loop is back on the incident the minute the page failed
    paged = [m for m, action in at if action is A.ESCALATE_TO_HUMAN]
    cooldown, wait = CATALOG[A.ESCALATE_TO_HUMAN].cooldown_minutes, CATALOG[A.WAIT].verify_minutes
    assert cooldown <= paged[1] - paged[0] <= cooldown + wait  # paged again once the cooldown allowed it
    learned = [x.transition for x in arena.log.learned
               if x.transition.action is A.ESCALATE_TO_HUMAN and x.transition.incident_id == 1]
    assert len(learned) == 1 and learned[0].done  # only the page that worked
    assert arena.twin.faults[0].fixed_at == second.completes
