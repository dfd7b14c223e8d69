"""App test for the Agent page: empty store, then a trained table with an open incident and its choice."""

from datetime import UTC, datetime
from pathlib import Path

from streamlit.testing.v1 import AppTest

from engine.decision.qlearning import QLearningPolicy
from engine.feedback import memory, training
from engine.feedback.training import train
from engine.service.runtime import EmbeddedRuntime

ROOT = Path(__file__).resolve().parents[2]
AGENT = str(ROOT / "pages" / "agent.py")
APP = str(ROOT / "console" / "app.py")


def _run(path: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=60).run()
    assert not at.exception
    return at


def test_without_a_q_table_the_page_says_how_to_train(runtime: EmbeddedRuntime):
    at = _run(AGENT)
    assert at.title[0].value.endswith("Agent")
    assert any("selfheal train" in i.value for i in at.info)
    assert {m.label: m.value for m in at.metric}["Q-values learned"] == "0"


def test_trained_table_curve_transitions_and_the_choice_for_an_open_incident(runtime: EmbeddedRuntime, monkeypatch):
    monkeypatch.setattr(training, "POOR_SCORE", 0.0)  # every run counts as poor: trained twice, the better kept
    agent = QLearningPolicy()
    run = train(agent, episodes=20, seed=1, batch_size=10, checkpoints=(10, 20), validation_episodes=4, restarts=1)
    assert [a.seed for a in run.attempts] == [1, 2]
    with runtime.store.transaction() as conn:
        memory.record_training(conn, agent, run, seed=1, keep=30, now=datetime.now(UTC))
    runtime.inject_fault("orders", "transform", "schema_drift")
    runtime.advance(5)
    at = _run(AGENT)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Q-values learned"]) == len(agent.table) and metrics["Episodes trained"] == "20"
    assert len(at.get("plotly_chart")) == 2  # heatmap and learning curve
    expanders = [e.label for e in at.expander]
    assert any(label.startswith("#") and "orders" in label and "→" in label for label in expanders)
    frames = [d.value for d in at.dataframe]
    options = next(f for f in frames if "Q" in f.columns)
    assert {"action", "Q"} <= set(options.columns) and len(options) >= 2  # the alternatives and their values
    recent = next(f for f in frames if "state" in f.columns)
    assert len(recent) == min(30, len(run.learned))
    scored = next(f for f in frames if "kept" in f.columns)
    assert scored["episodes"].tolist() == [10, 20] and scored["kept"].sum() == 1
    assert scored.loc[scored["kept"], "score"].item() == min(c.score for c in run.checkpoints)
    kept, poor = sorted(run.attempts, key=lambda a: not a.kept)
    note = next(c.value for c in at.caption if c.value.startswith("Trained 2 times"))
    assert f"seed {poor.seed} scored {poor.score:.3f}" in note and f"kept seed {kept.seed} ({kept.score:.3f})" in note


def test_two_learners_each_ones_checkpoints_and_the_averaged_tables_score(runtime: EmbeddedRuntime):
    agent = QLearningPolicy()
    run = train(agent, episodes=20, seed=2, batch_size=10, checkpoints=(10, 20), validation_episodes=4, members=2)
    assert run.fallback == 0  # 20 episodes: the mean scores poorly and worse than learner 0's table
    with runtime.store.transaction() as conn:
        memory.record_training(conn, agent, run, seed=2, keep=30, now=datetime.now(UTC))
    at = _run(AGENT)
    scored = next(d.value for d in at.dataframe if "kept" in d.value.columns)
    assert scored["learner"].tolist() == ["0", "0", "1", "1", "mean"]
    assert scored["score"].tolist() == [c.score for c in run.checkpoints] + [run.ensemble.score]
    assert scored.groupby("learner")["kept"].sum().to_dict() == {"0": 1, "1": 1, "mean": 0}
    assert any("20 episodes × 2 learners (learner 0's table kept) in" in c.value for c in at.caption)
    note = next(c.value for c in at.caption if c.value.startswith("2 learners trained side by side"))
    assert f"scored {run.ensemble.score:.3f} (above 1.1, poor), so the table in use is learner 0's" in note


def test_the_router_lists_the_agent_page(runtime: EmbeddedRuntime):
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("../pages/agent.py")
    at.run()
    assert not at.exception
    assert at.title[0].value.endswith("Agent")
