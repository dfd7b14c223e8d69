"""The processes training spawns do not outlive a `selfheal train` that was killed outright."""

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
