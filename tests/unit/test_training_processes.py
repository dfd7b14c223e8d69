"""The processes training spawns do not outlive a `selfheal train` that was killed outright, and a learner whose
process dies is trained again here."""

import os
import select
import subprocess
import sys
import textwrap

STARTER = textwrap.dedent("""
    import os
    import sys

    from engine.feedback import training

    if __name__ == "__main__":
        crew = training._Crew(members=4, episodes=1, jobs=2, progress=None, on_restart=None)  # a learners' process
        scorer = training._Scorer(0, 8, jobs=2)  # one learner's scoring process
        print(crew.pool.submit(os.getpid).result(), scorer.pool.submit(os.getpid).result(), flush=True)
        sys.stdin.read()  # until killed
""")


def test_the_learner_and_scoring_processes_exit_once_the_training_process_is_killed(tmp_path):
    starter = tmp_path / "starter.py"
    starter.write_text(STARTER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(starter)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and proc.pid not in workers
        exits = [os.pidfd_open(pid) for pid in workers]  # readable once that process has exited
        assert select.select(exits, [], [], 0)[0] == []  # both alive while training runs
    finally:
        proc.kill()  # as `kill -9` would: no chance to shut the pools down
        proc.wait()
    try:
        pending = list(exits)
        while pending:
            ready, _, _ = select.select(pending, [], [], 30)
            assert ready, "a training worker outlived the process that started it"
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in exits:
            os.close(fd)


def test_a_learner_whose_process_is_killed_is_trained_here_with_the_same_result(monkeypatch):
    import multiprocessing
    import signal

    from engine.decision.qlearning import QLearningPolicy
    from engine.feedback import training

    monkeypatch.setattr(training, "POOR_SCORE", float("inf"))  # 20 episodes score poorly: no fallback
    kwargs = dict(episodes=20, seed=4, batch_size=10, checkpoints=(10, 20), validation_episodes=8, members=2)
    alone = QLearningPolicy()
    training.train(alone, jobs=1, **kwargs)
    killed, heard = [], []

    def progress(done: int, total: int) -> None:  # learner 0 reports from here while learner 1 trains in its process
        heard.append((done, total))
        if not killed:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    agent = QLearningPolicy()
    run = training.train(agent, jobs=2, progress=progress, **kwargs)
    assert len(killed) == 1  # learner 1's process was there, and died mid-training
    assert agent.table.values == alone.table.values and run.averaged == (0, 1)
    assert [c.member for c in run.checkpoints] == [0, 0, 1, 1] and heard[-1] == (40, 40)
