"""The arena's array path (`Arena(fast=True)`, what training and the bench run) against the tick's steps over
samples (`fast=False`): the same incidents, SLO minutes, decisions and learning, minute for minute."""

import numpy as np
import pytest

from engine.decision.baselines import RulesPolicy
from engine.decision.qlearning import QLearningPolicy, QParams, QTable
from engine.detection.health import Limits, assess, calm_rows
from engine.feedback import training
from engine.feedback.arena import Arena
from engine.feedback.bench import make_policy
from engine.feedback.curriculum import held_out, training_batch
from engine.model import EPOCH, METRICS, STAGES, PipelineSpec, Stage, StageSample, TelemetryBatch
from engine.sim.scenario import parse_scenario
from engine.sim.twin import Twin


def _outcome(arena: Arena) -> dict:
    return {"incidents": {k: repr(v) for k, v in arena.incidents.items()},
            "slo": {pid: list(flags) for pid, flags in arena.slo.items()},
            "decisions": [repr(d) for d in arena.log.decisions],
            "learned": [repr(item) for item in arena.log.learned],
            "ended": [repr(e) for e in arena.log.ended]}


@pytest.mark.parametrize("family", ["single", "mixed", "ambiguous", "novel", "sparse"])
def test_the_array_path_decides_exactly_as_the_ticks_steps(family):
    """A learning, exploring agent, the runbook and the oracle on held-out scenarios of every family: any difference
    in what the analysis saw would show up in an incident, an SLO minute, a decision or a Q-value."""
    # Sparse days (two days of mostly calm minutes, where the array path does the most) under the learner only: the
    # baselines' runs of them took most of this test's time.
    names = ("qlearning", "rules", "oracle") if family != "sparse" else ("qlearning",)
    for scenario in held_out(family, 2 if family != "sparse" else 1, seed=31):
        runs = {}
        for fast in (True, False):
            for name in names:
                holder: list[Arena] = []
                policy = (QLearningPolicy(QTable(), QParams(epsilon=0.5)) if name == "qlearning"
                          else make_policy(name, lambda holder=holder: holder[0], None))
                arena = Arena(Twin.from_scenario(scenario), policy, rng=np.random.default_rng(7), fast=fast)
                holder.append(arena)
                arena.run_until(scenario.duration_minutes)
                runs[(fast, name)] = _outcome(arena) | (
                    {"table": sorted(policy.table.items())} if name == "qlearning" else {})
        for name in names:
            assert runs[(True, name)] == runs[(False, name)], (scenario.name, name)
        assert runs[(True, "qlearning")]["decisions"] and runs[(True, "qlearning")]["incidents"]


def test_a_training_batch_with_retiring_runs_the_same_on_both_paths():
    rng = np.random.default_rng(5)
    scenario, families = training_batch(rng, 10, 0)
    records, tables = {}, {}
    for fast in (True, False):
        policy = QLearningPolicy(QTable(), QParams())
        arena = Arena(Twin.from_scenario(scenario), policy, rng=np.random.default_rng(1), fast=fast)
        records[fast] = training._run_batch(arena, scenario.duration_minutes, families, policy, 0)
        tables[fast] = sorted(policy.table.items())
        assert arena.retired, "pipelines were retired along the way"
    assert records[True] == records[False]
    assert tables[True] == tables[False]


def test_a_healthy_fleet_is_analysed_as_arrays_only():
    """Before any fault, no pipeline needs samples, health rows or incidents; each still gets its SLO minute."""
    scenario = parse_scenario({"name": "calm", "seed": 3, "duration_minutes": 90,
                               "pipelines": [{"id": f"p{i}"} for i in range(6)]})
    arena = Arena(Twin.from_scenario(scenario), RulesPolicy(), rng=np.random.default_rng(0))
    analysed = [len(arena._analysed_minute()[2]) for _ in range(90)]
    assert analysed == [0] * 90
    assert {pid: len(flags) for pid, flags in arena.slo.items()} == {f"p{i}": 90 for i in range(6)}
    assert all(all(flags) for flags in arena.slo.values())


def _row(**values: float) -> np.ndarray:
    base = {"cpu_pct": 40.0, "memory_pct": 50.0, "latency_s": 10.0, "throughput_rows_s": 900.0, "error_count": 0.0,
            "workers": 4.0, "cdc_lag_s": np.nan, "queue_wait_s": 3.0, "freshness_s": np.nan}
    return np.array([[{**base, **values}[m] for m in METRICS]])


@pytest.mark.parametrize(("values", "calm"), [
    ({}, True),
    ({"cpu_pct": 90.0}, False),  # at the static limit
    ({"queue_wait_s": 75.0}, False),
    ({"latency_s": 61.0}, False),  # the orchestrator's latency limit is 60 s
    ({"error_count": 1.0}, False),
    ({"throughput_rows_s": 0.0}, False),  # might have stalled: `assess` decides
    ({"throughput_rows_s": np.nan}, False),
    ({"error_count": np.nan}, False),
])
def test_a_calm_row_is_one_assess_calls_healthy(values, calm):
    x = _row(**values)
    stage = STAGES.index(Stage.ORCHESTRATOR)
    assert bool(calm_rows(x, np.array([stage]))[0]) is calm
    if calm:
        sample = StageSample("p", Stage.ORCHESTRATOR, EPOCH,
                             {m: float(v) for m, v in zip(METRICS, x[0], strict=True) if not np.isnan(v)})
        rows, _pipes = assess(TelemetryBatch(EPOCH, EPOCH, [sample], []), [PipelineSpec("p")])
        assert [r.status.value for r in rows] == ["healthy"]


def test_limits_at_or_below_zero_make_an_absent_metric_count():
    """`assess` reads an absent metric as 0.0: with a limit of 0 it is reached, so the row cannot be calm."""
    x = _row()  # no cdc_lag_s on this stage
    stage = np.array([STAGES.index(Stage.ORCHESTRATOR)])
    assert calm_rows(x, stage, Limits(cdc_lag_s=0.0))[0] == np.False_
    assert calm_rows(x, stage, Limits())[0] == np.True_
