"""`selfheal train`, `selfheal bench rl|scenarios` and `selfheal simulate --policy` end to end (subprocesses)."""

import json
import subprocess
import sys

import pytest

from engine.feedback import memory
from engine.feedback.training import DEFAULT_AVERAGED, DEFAULT_MEMBERS
from engine.settings import load_settings
from engine.store import decision_repo
from engine.store.db import Store


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.slow
def test_train_then_simulate_with_the_stored_table(isolated_env, tmp_path):
    trained = _cli("train", "--episodes", "30", "--seed", "3", "--json", str(tmp_path / "curve.json"))
    assert trained.returncode == 0, trained.stderr
    assert "trained 30 episodes" in trained.stdout and "credentials_expired" in trained.stdout
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["episodes"] == 30 and len(curve["curve"]) == 30
    store = Store.open(load_settings().store_url)
    with store.read() as conn:
        assert decision_repo.load_q_values(conn, memory.POLICY)
        assert decision_repo.count_transitions(conn, memory.POLICY) > 0
        assert decision_repo.load_training(conn, memory.POLICY)["seed"] == 3
    sets = _cli("bench", "scenarios", "--out", str(tmp_path / "sets"), "--count", "1", "--seed", "77")
    assert sets.returncode == 0 and "novel" in sets.stdout
    scenario = next((tmp_path / "sets" / "single").glob("*.json"))
    sim = _cli("simulate", "--scenario", str(scenario), "--policy", "qlearning", "--json", str(tmp_path / "q.json"))
    assert sim.returncode == 0, sim.stderr
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["policy"] == "qlearning" and report["decisions"]["actions"] >= 1
    bad = _cli("simulate", "--scenario", str(scenario), "--policy", "magic")
    assert bad.returncode == 2 and "unknown policy 'magic'" in bad.stderr


@pytest.mark.slow
def test_bench_rl_scores_every_policy_and_is_deterministic(tmp_path):
    assert _cli("bench", "scenarios", "--out", str(tmp_path / "sets"), "--count", "2", "--seed", "5").returncode == 0
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        res = _cli("bench", "rl", "--scenarios", str(tmp_path / "sets" / "ambiguous"), "--episodes", "20",
                   "--seed", "1", "--json", str(out))
        assert res.returncode == 0, res.stderr
        data = json.loads(out.read_text())
        data["training"].pop("seconds")
        for attempt in data["training"]["attempts"]:
            attempt.pop("seconds")
        runs.append(data)
    assert runs[0] == runs[1]
    # 20 episodes: no checkpoints, so nothing to judge the learners by: the first three of four are averaged.
    assert runs[0]["training"]["attempts"] == [{"seed": 1, "score": None, "kept": True, "member": m}
                                               for m in range(DEFAULT_MEMBERS)]
    assert runs[0]["training"]["members"] == DEFAULT_MEMBERS == 4 and runs[0]["training"]["ensemble"] is None
    assert runs[0]["training"]["averaged"] == list(range(DEFAULT_AVERAGED)) == [0, 1, 2]
    assert runs[0]["training"]["fallback"] is None
    policies = runs[0]["policies"]
    assert set(policies) == {"qlearning", "rules", "manual", "oracle", "none"}
    for row in policies.values():
        assert {"mttr_minutes_mean", "mttr_minutes_p95", "mttd_minutes_mean", "slo_attainment",
                "auto_resolved_share", "actions_per_incident", "cost"} <= set(row)
    assert policies["oracle"]["mttr_minutes_mean"] <= policies["manual"]["mttr_minutes_mean"]
    too_many = _cli("bench", "rl", "--scenarios", str(tmp_path / "sets" / "ambiguous"), "--members", "2",
                    "--average", "3")
    assert too_many.returncode == 2 and "cannot average 3 of 2 learners" in too_many.stderr
    (tmp_path / "empty").mkdir()
    empty = _cli("bench", "rl", "--scenarios", str(tmp_path / "empty"), "--episodes", "5")
    assert empty.returncode == 2 and "no scenario files" in empty.stderr
