"""Training the Q-learning policy in the twin, on scenarios the curriculum generates (never benchmark files).

Episodes run in batches: one twin with `batch_size` pipelines, each carrying one episode's faults, so the
twin and the analysis layer work on arrays instead of one pipeline at a time. Each pipeline's episode ends
when its incident closes (or after `HORIZON` minutes). Deterministic for a seed.

Checkpoint selection: a tabular learner's greedy policy swings from one batch to the next (a few noisy
updates reorder near-equal Q-values), and an unlucky swing late in training can leave a policy that loops on
the wrong fix. With `checkpoints`, training scores the greedy policy at those episode counts on a fixed
validation set drawn from the training side (its own seed stream, every family equally, never a benchmark
file) and keeps the table that scored best: MTTR relative to the oracle on the same episodes, averaged over
the families so that no family's scale dominates. With `jobs` > 1 the checkpoints are scored in a separate
process while training goes on (the same scores and the same table as in one process: validation is seeded).

Restarts: the kept checkpoint's score says whether the run went well. Measured across 40 training seeds
(`bench/rl_seeds.py`, 120 training seed × held-out set cells), tables whose kept checkpoint scored above
`POOR_SCORE` met every MTTR check on 3 of 33 held-out sets, the others on 59 of 87. With `restarts`, such a run is
repeated from the same starting table with the next training seed (validated on the same episodes), up to
`restarts` times, and the best-scoring run is kept.

Members: what a tabular learner ends with depends on its seed (near-equal Q-values reordered by a few unlucky
updates). With `members`, that many learners train the same number of episodes each from the same starting
table on their own scenario streams (member 0 on the seed's own, so its table is a lone run's), each with its
own checkpoints (and restarts, if asked for), and the policy ends with the mean (`mean_table`) of the kept tables
of the `averaged` learners whose kept checkpoints scored best (all of them by default; `selfheal train` averages
the best 3 of 4): the noise of independent estimates averages out, a real difference between two actions does
not, and a poor run is left out instead of trained again (which made the training time depend on luck). The mean
is scored on the same validation episodes; should it score above `POOR_SCORE` and worse than a learner's kept
table, the best learner's table is used instead (`fallback`). `selfheal train` uses `DEFAULT_MEMBERS` and
`DEFAULT_AVERAGED`; measured in `README.md` (Decision).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from queue import Empty
from typing import Any

import numpy as np

from engine.decision.policy import Policy
from engine.decision.qlearning import QLearningPolicy, QParams, QTable, mean_table
from engine.feedback.arena import Arena
from engine.feedback.curriculum import HORIZON, TRAINING_MIX, training_batch
from engine.feedback.evaluate import recovery_minutes
from engine.feedback.loop import Learned
from engine.feedback.reward import RewardWeights
from engine.sim.faults import Fault
from engine.sim.twin import Twin


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One training episode: what hit the pipeline and how the policy did."""

    episode: int
    family: str
    kind: str  # the first fault's kind (ground truth, for the learning curve only)
    stage: str
    reward: float
    mttr_minutes: float | None  # onset → pipeline healthy again; None: not recovered within the horizon
    actions: int
    cost: float
    first_action: str | None
    epsilon: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The greedy policy scored on the validation set after `episodes` training episodes."""

    episodes: int
    score: float  # mean over families of (policy MTTR / oracle MTTR) on the validation episodes; lower is better
    mttr: dict[str, float]  # per family, the policy's mean MTTR (minutes; an unrecovered episode counts HORIZON)
    chosen: bool = False
    member: int = 0  # the learner it belongs to (see Members); the averaged table's score: `TrainingRun.ensemble`

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TrainingRun:
    records: list[EpisodeRecord]
    seconds: float
    batches: int
    learned: list[Learned]  # the newest learning steps (at most KEEP_LEARNED), for the console
    checkpoints: list[Checkpoint] = field(default_factory=list)
    seed: int | None = None  # the training seed of this run (the next seeds for restarts)
    attempts: list[Attempt] = field(default_factory=list)  # every run trained, the kept one marked
    member: int = 0  # the learner it belongs to (see Members)
    ensemble: Checkpoint | None = None  # with members: the averaged table's validation score (chosen: in use)
    fallback: int | None = None  # with members: the learner whose table is used because the mean scored poorly
    averaged: tuple[int, ...] = ()  # with members: the learners whose kept tables were averaged

    @property
    def chosen(self) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.chosen), None)

    def summary(self, *, seed: int, episodes_total: int) -> dict:
        """What the store keeps of a run: the learning curve, the checkpoints scored and how long it took."""
        return {"seed": seed if self.seed is None else self.seed, "episodes": len(self.records),
                "episodes_total": episodes_total, "seconds": round(self.seconds, 2), "batches": self.batches,
                "curve": [r.to_dict() for r in self.records],
                "checkpoints": [c.to_dict() for c in self.checkpoints],
                "attempts": [a.to_dict() for a in self.attempts],
                "members": 1 + max((a.member for a in self.attempts), default=0),
                "ensemble": None if self.ensemble is None else self.ensemble.to_dict(), "fallback": self.fallback,
                "averaged": list(self.averaged)}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One training run of a `train` call with restarts: its seed, its kept checkpoint's score, its time."""

    seed: int
    score: float | None
    seconds: float
    kept: bool = False  # the run its learner kept
    member: int = 0  # the learner (see Members)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, run: TrainingRun, *, kept: bool = False) -> Attempt:
        return cls(run.seed if run.seed is not None else 0, None if run.chosen is None else run.chosen.score,
                   round(run.seconds, 2), kept, run.member)


KEEP_LEARNED = 2000
DEFAULT_RESTARTS = 0  # `selfheal train`'s and the bench's: a poor run is left out (see Members), not trained again
DEFAULT_MEMBERS = 4  # `selfheal train`'s and the bench's: four learners, ...
DEFAULT_AVERAGED = 3  # ... the best three averaged (see Members)
POOR_SCORE = 1.1  # a kept checkpoint scoring above this (MTTR × the oracle's) marks a poor run: see Restarts
VALIDATION_FAMILIES = ("single", "mixed", "ambiguous", "novel")
VALIDATION_EPISODES = 120  # spread equally over VALIDATION_FAMILIES


def default_checkpoints(episodes: int) -> tuple[int, ...]:
    """Where `selfheal train` and the bench score the policy: after 60, 70, 80, 90 and 100 % of the episodes
    (none for runs under 200 episodes, too short for the late swings this guards against)."""
    if episodes < 200:
        return ()
    return tuple(sorted({round(episodes * k / 10) for k in (6, 7, 8, 9, 10)}))


class Validation:
    """A fixed set of training-side episodes on which checkpoints are compared (the same twin seed each
    time, so checkpoints meet identical faults); the oracle's MTTR on them is the yardstick.

    A pipeline stops being analysed once its episode has ended (`Arena.retire`): its aftermath decides nothing,
    and the few slow episodes at the end no longer drag 120 pipelines along (a score takes ~0.9 s instead of
    ~3.5 s). The twin still simulates it; only what acting on its aftermath drew from the twin's shared random
    streams (action delays and outcomes) no longer reaches the other episodes, so scores differ from those of
    earlier versions by that noise, not in expectation."""

    def __init__(self, seed: int, episodes: int = VALIDATION_EPISODES) -> None:
        rng = np.random.default_rng([seed, 0xA11D])
        families = [VALIDATION_FAMILIES[k % len(VALIDATION_FAMILIES)] for k in range(episodes)]
        self.scenario, self.families = training_batch(rng, episodes, -1, families=families)
        self.seed = seed
        # The minutes before the first fault are the same under every policy: simulated once, then forked (unless
        # an incident opened in them, which a policy would have acted on).
        warm = Arena(Twin.from_scenario(self.scenario), None)
        warm.run_until(min(f.start for f in warm.twin.faults))
        self._warm = None if warm.incidents else warm
        self.oracle = self._mttr(None)

    def _mttr(self, table_policy: QLearningPolicy | None) -> dict[str, float]:
        from engine.feedback.bench import make_policy  # bench imports this module

        holder: list[Arena] = []
        policy = (make_policy("oracle", lambda: holder[0], None) if table_policy is None
                  else QLearningPolicy(table_policy.table, table_policy.params, explore=False, learning=False))
        rng = np.random.default_rng([self.seed, 0xA11D])
        arena = (self._warm.fork(policy, rng=rng) if self._warm is not None
                 else Arena(Twin.from_scenario(self.scenario), policy, rng=rng))
        holder.append(arena)
        by: dict[str, list[float]] = {}
        for r in _run_batch(arena, self.scenario.duration_minutes, self.families, policy, 0, retire=True):
            by.setdefault(r.family, []).append(HORIZON if r.mttr_minutes is None else r.mttr_minutes)
        return {f: float(np.mean(v)) for f, v in sorted(by.items())}

    def score(self, policy: QLearningPolicy, episodes: int) -> Checkpoint:
        mttr = self._mttr(policy)
        ratio = [mttr[f] / max(self.oracle[f], 1.0) for f in mttr]
        return Checkpoint(episodes, round(float(np.mean(ratio)), 4), {f: round(v, 2) for f, v in mttr.items()})


def default_averaged(members: int, asked: int | None = None) -> int:
    """How many of `members` learners `selfheal train` averages: `asked` (e.g. `--average`) if given, else
    `DEFAULT_AVERAGED`, or all of fewer."""
    return min(DEFAULT_AVERAGED, members) if asked is None else asked


def default_jobs() -> int:
    """Processes `selfheal train` uses: training plus one scoring checkpoints, where there are two cores."""
    return min(2, os.cpu_count() or 1)


_VALIDATIONS: dict[tuple[int, int], Validation] = {}  # per process: built once, reused per checkpoint and learner


def _validation(seed: int, validation_episodes: int) -> Validation:
    """This process's validation set of a training seed: built once, shared by every learner trained here."""
    key = (seed, validation_episodes)
    validation = _VALIDATIONS.get(key)
    if validation is None:  # two trainings at once in one process may build one each: only time is lost
        validation = Validation(seed, validation_episodes)
        _VALIDATIONS.clear()  # one at a time: a long-lived process (the console) trains with many seeds
        _VALIDATIONS[key] = validation
    return validation


def _score_in_worker(seed: int, validation_episodes: int, table: QTable, params: QParams, episodes: int
                     ) -> Checkpoint:
    return _validation(seed, validation_episodes).score(QLearningPolicy(table, params, explore=False,
                                                                        learning=False), episodes)


def train(policy: QLearningPolicy, *, episodes: int, seed: int = 0, batch_size: int = 10,
          mix: dict[str, float] | None = None, weights: RewardWeights | None = None,
          progress: Callable[[int, int], None] | None = None,
          checkpoints: Sequence[int] = (), validation_episodes: int = VALIDATION_EPISODES,
          jobs: int = 1, restarts: int = 0, on_restart: Callable[[Attempt], None] | None = None,
          members: int = 1, averaged: int | None = None) -> TrainingRun:
    """Train `policy` for `episodes` episodes (its table is updated in place). With `checkpoints` (episode
    counts, e.g. `default_checkpoints(episodes)`), the policy ends with the table of the best-scoring one;
    with `jobs` > 1 they are scored in another process while training continues (identical results). With
    `restarts` (and checkpoints), a run whose kept checkpoint scores above `POOR_SCORE` is trained again from
    the same starting table with the next seed, at most `restarts` times; the best run is kept (`on_restart`
    hears of each poor run before the next starts). The returned run's `seconds` add up every attempt.

    With `members` > 1 (see Members), that many learners train `episodes` episodes each from the same starting
    table, member 0 on `seed`'s stream (a lone run's), each with its own checkpoints and restarts, and the
    policy ends with the mean of the kept tables of the `averaged` (default: all) whose kept checkpoints scored
    best (ties: the lower learner; without checkpoints the first ones), scored on the validation episodes
    (`ensemble`), or with the best learner's table where the mean scores poorly (`fallback`, see Members). The run
    returned is member 0's, with every member's attempts and checkpoints; `seconds` is the wall time. With
    `jobs` > 1 the members are dealt out over `jobs` processes, this one and spawned ones (`progress` counts every
    member's episodes)."""
    averaged = members if averaged is None else averaged
    if episodes < 1 or batch_size < 1 or jobs < 1 or restarts < 0 or members < 1 or not 1 <= averaged <= members:
        raise ValueError("episodes, batch_size, jobs and members must be at least 1, restarts at least 0, and the "
                         "learners averaged between 1 and members")
    spec = _Spec(episodes, seed, batch_size, mix, weights, tuple(checkpoints), validation_episodes, restarts)
    if members == 1:
        scorer = spec.scorer(jobs)
        try:
            return _train_member(policy, spec, 0, scorer, progress=progress, on_restart=on_restart)
        finally:
            if scorer is not None:
                scorer.close()
    crew = _Crew(members, episodes, jobs, progress, on_restart)
    try:
        return _train_members(policy, spec, members, averaged, crew)
    finally:
        crew.close()


@dataclass(frozen=True, slots=True)
class _Spec:
    """What every member of one `train` call shares."""

    episodes: int
    seed: int
    batch_size: int
    mix: dict[str, float] | None
    weights: RewardWeights | None
    checkpoints: tuple[int, ...]
    validation_episodes: int
    restarts: int

    def scorer(self, jobs: int) -> _Scorer | None:
        if not any(0 < c <= self.episodes for c in self.checkpoints):
            return None
        return _Scorer(self.seed, self.validation_episodes, jobs)


def _train_member(policy: QLearningPolicy, spec: _Spec, member: int, scorer: _Scorer | None, *,
                  progress: Callable[[int, int], None] | None,
                  on_restart: Callable[[Attempt], None] | None = None) -> TrainingRun:
    """One learner: a run, trained again while poor (`spec.restarts`), the best run kept."""
    start_table, start_episodes = policy.table.copy(), policy.episodes
    runs: list[tuple[TrainingRun, QTable, int]] = []
    for attempt in range(spec.restarts + 1):
        if attempt:
            policy.table, policy.episodes = start_table.copy(), start_episodes
        run = _train_once(policy, episodes=spec.episodes, seed=spec.seed + attempt, batch_size=spec.batch_size,
                          mix=spec.mix, weights=spec.weights, progress=progress, checkpoints=spec.checkpoints,
                          scorer=scorer, member=member)
        runs.append((run, policy.table, policy.episodes))
        if run.chosen is None or run.chosen.score <= POOR_SCORE:
            break
        if attempt < spec.restarts and on_restart is not None:
            on_restart(Attempt.of(run))
    best = min(range(len(runs)), key=lambda k: _kept_score(runs[k][0]))  # the earliest of equal scores
    run, policy.table, policy.episodes = runs[best]
    attempts = [Attempt.of(r, kept=k == best) for k, (r, _t, _e) in enumerate(runs)]
    return replace(run, seconds=sum(r.seconds for r, _t, _e in runs), attempts=attempts)


def _train_members(policy: QLearningPolicy, spec: _Spec, members: int, averaged: int, crew: _Crew) -> TrainingRun:
    """`members` learners from the policy's table, the best `averaged` averaged (see Members), dealt out over the
    crew's processes: learner m trains in process m % jobs (0: here, the others spawned), each scoring its own
    checkpoints; with `jobs` 1 all of them here, one after another."""
    t0 = time.perf_counter()
    start_table, start_episodes = policy.table.copy(), policy.episodes
    here = [m for m in range(members) if crew.pool is None or m % crew.jobs == 0]
    futures = {m: crew.pool.submit(_member_in_worker, spec, m, start_table, policy.params, start_episodes)
               for m in range(members) if m not in here} if crew.pool is not None else {}
    # Learners score their checkpoints in their own process: a scoring process of its own for the learners here would
    # only add a process to the cores' share and a validation set to build. With restarts they keep one (once the
    # others are done, a restart here then uses both cores).
    scorer = spec.scorer(crew.jobs if spec.restarts else 1)

    def train_here(m: int) -> tuple[TrainingRun, QTable]:
        learner = policy if m == 0 else QLearningPolicy(start_table.copy(), policy.params, episodes=start_episodes)
        run = _train_member(learner, spec, m, scorer, progress=crew.report(m), on_restart=crew.on_restart)
        return run, learner.table

    try:
        results = {m: train_here(m) for m in here}
        results |= crew.wait(futures)
        for m in sorted(set(range(members)) - set(results)):  # its process died: train it here
            results[m] = train_here(m)
        ranked = sorted(range(members), key=lambda m: (_kept_score(results[m][0]), m))  # best kept score first
        chosen = tuple(sorted(ranked[:averaged]))
        policy.table = mean_table([results[m][1] for m in chosen])
        policy.episodes = start_episodes + spec.episodes
        ensemble, fallback = None, None
        if scorer is not None:
            job, point = scorer.submit(policy, spec.episodes)
            ensemble = _result(point, job)
            best = ranked[0]
            if ensemble.score > POOR_SCORE and _kept_score(results[best][0]) < ensemble.score:
                policy.table, fallback = results[best][1], best  # a poor mean: the best learner's table instead
            ensemble = replace(ensemble, chosen=fallback is None)
    finally:
        if scorer is not None:
            scorer.close()
    runs = [results[m][0] for m in range(members)]
    return replace(runs[0], seconds=time.perf_counter() - t0, attempts=[a for r in runs for a in r.attempts],
                   checkpoints=[c for r in runs for c in r.checkpoints], ensemble=ensemble, fallback=fallback,
                   averaged=chosen)


class _Crew:
    """The processes training the other members of one `train` call (none with `jobs` 1), and what every member
    reports: episodes done (summed for `progress`) and poor runs trained again (`on_restart`)."""

    def __init__(self, members: int, episodes: int, jobs: int, progress: Callable[[int, int], None] | None,
                 on_restart: Callable[[Attempt], None] | None) -> None:
        self.done, self.total, self.jobs = [0] * members, episodes * members, jobs
        self.progress, self.on_restart = progress, on_restart
        self.pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            ctx = get_context("spawn")
            self.queue = ctx.Queue()
            # `jobs` processes in all (this one and jobs - 1 spawned), each training its share of the learners one
            # after another: four processes on two cores took ~1.5 times the CPU per learner that two did.
            self.pool = ProcessPoolExecutor(max_workers=min(jobs, members) - 1, mp_context=ctx,
                                            initializer=_worker_reports_to, initargs=(self.queue,))

    def report(self, member: int) -> Callable[[int, int], None]:
        def episodes_done(done: int, _total: int) -> None:
            self.heard(member, done)
            self.drain()
        return episodes_done

    def heard(self, member: int, what: int | Attempt) -> None:
        if isinstance(what, Attempt):
            if self.on_restart is not None:
                self.on_restart(what)
            return
        self.done[member] = what
        if self.progress:
            self.progress(sum(self.done), self.total)

    def drain(self, timeout: float | None = None) -> None:
        """Hear what the other processes reported (waiting up to `timeout` for the first word)."""
        if self.pool is None:
            return
        try:
            while True:
                self.heard(*(self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()))
                timeout = None
        except Empty:
            pass

    def wait(self, futures: dict[int, Future]) -> dict[int, tuple[TrainingRun, QTable]]:
        """The results of the members trained in other processes, reporting their progress while they finish;
        a member whose process died is left out (the caller trains it); any other error is raised."""
        while not all(f.done() for f in futures.values()):
            self.drain(timeout=0.5)
        self.drain()
        return {m: f.result() for m, f in futures.items() if not isinstance(f.exception(), BrokenProcessPool)}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


_WORKER: dict[str, Any] = {}  # in a member's process: the queue it reports progress and restarts on


def _worker_reports_to(queue: Any) -> None:
    exit_with_parent()
    _WORKER["queue"] = queue


PARENT_POLL_S = 1.0


def exit_with_parent() -> None:
    """In a worker process (a learners' or scoring process, a benchmark's pool; as its pool's initializer): exit once
    the process that started it is gone. Killed outright (`kill -9`, the OOM killer), `selfheal train` cannot shut its
    pool down, and the worker would train its learners for no one, then wait on its queue for good."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _member_in_worker(spec: _Spec, member: int, table: QTable, params: QParams, episodes: int
                      ) -> tuple[TrainingRun, QTable]:
    learner = QLearningPolicy(table, params, episodes=episodes)
    queue = _WORKER["queue"]
    run = _train_member(learner, spec, member, spec.scorer(1), progress=lambda d, _t: queue.put((member, d)),
                        on_restart=lambda a: queue.put((member, a)))
    return replace(run, learned=[]), learner.table  # the console keeps member 0's transitions


def _kept_score(run: TrainingRun) -> float:
    return float("inf") if run.chosen is None else run.chosen.score


class _Scorer:
    """Scores checkpoints on the validation set of one `train` call: in a spawned process while training goes
    on (`jobs` > 1), else here. Restarts share it, and so the scoring process and its validation set."""

    def __init__(self, seed: int, episodes: int, jobs: int) -> None:
        self.args = (seed, episodes)
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                        initializer=exit_with_parent) if jobs > 1 else None

    def submit(self, policy: QLearningPolicy, mark: int) -> tuple[tuple, Future[Checkpoint] | Checkpoint]:
        """The scoring job's arguments and its score (or the future of it)."""
        job = (*self.args, policy.table.copy(), policy.params, mark)
        if self.pool is not None:
            try:
                return job, self.pool.submit(_score_in_worker, *job)
            except BrokenProcessPool:
                pass  # the scoring process died earlier: score here from now on
        return job, _validation(*self.args).score(policy, mark)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _train_once(policy: QLearningPolicy, *, episodes: int, seed: int, batch_size: int,
                mix: dict[str, float] | None, weights: RewardWeights | None,
                progress: Callable[[int, int], None] | None, checkpoints: Sequence[int],
                scorer: _Scorer | None, member: int = 0) -> TrainingRun:
    marks = sorted({c for c in checkpoints if 0 < c <= episodes}) if scorer is not None else []
    pending: list[tuple[tuple, Future[Checkpoint] | Checkpoint]] = []  # (scoring job's arguments, its score)
    rng = np.random.default_rng(_stream(member, seed, 0x7EA1))
    records: list[EpisodeRecord] = []
    learned: list[Learned] = []
    t0 = time.perf_counter()
    batches = 0
    while len(records) < episodes:
        size = min(batch_size, episodes - len(records))
        scenario, families = training_batch(rng, size, batches, mix or TRAINING_MIX)
        arena = Arena(Twin.from_scenario(scenario), policy, weights=weights or RewardWeights(),
                      rng=np.random.default_rng(_stream(member, seed, 1, batches)))
        records.extend(_run_batch(arena, scenario.duration_minutes, families, policy, len(records)))
        learned = (learned + arena.log.learned)[-KEEP_LEARNED:]
        batches += 1
        while scorer is not None and marks and len(records) >= marks[0]:
            pending.append(scorer.submit(policy, marks.pop(0)))
        if progress:
            progress(len(records), episodes)
    scored = [replace(_result(point, job), member=member) for job, point in pending]
    if scored:
        best = min(range(len(scored)), key=lambda k: scored[k].score)  # the earliest of equal scores
        _seed, _episodes, policy.table, _params, _mark = pending[best][0]  # the scored table
        scored[best] = replace(scored[best], chosen=True)
    return TrainingRun(records[:episodes], time.perf_counter() - t0, batches, learned, scored, seed=seed,
                       member=member)


def _stream(member: int, *entropy: int) -> list[int]:
    """A random stream of one member: member 0's is a lone run's, every other member's its own."""
    return list(entropy) if member == 0 else [*entropy, 0xE45E, member]


def _result(point: Future[Checkpoint] | Checkpoint, job: tuple) -> Checkpoint:
    """A checkpoint's score; scored here after all if the scoring process died (same result, only slower)."""
    if isinstance(point, Checkpoint):
        return point
    try:
        return point.result()
    except BrokenProcessPool:
        return _score_in_worker(*job)


def _run_batch(arena: Arena, duration: int, families: list[str], policy: Policy,
               first_episode: int, *, retire: bool = False) -> list[EpisodeRecord]:
    """Run a batch until every pipeline's episode ended (or `duration`). `retire`: stop analysing a pipeline once
    its episode ended (scoring: nothing learns from its aftermath, and it is much faster). Otherwise (training) a
    pipeline is retired once it is quiet (`_quiet`): its episode ended, no incident is open on it and every one of
    its faults is over; what it still does until the batch ends could only teach the table about noise."""
    twin = arena.twin
    faults_of: dict[str, list[Fault]] = {}
    for f in twin.faults:
        faults_of.setdefault(f.pipeline, []).append(f)
    onset = {pid: faults[0] for pid, faults in faults_of.items()}
    done: dict[str, EpisodeRecord] = {}
    first_action: dict[str, str] = {}
    seen_decisions = 0
    while twin.minute < duration and len(done) < len(onset):
        arena.minute()
        for d in arena.log.decisions[seen_decisions:]:
            first_action.setdefault(d.pipeline_id, d.choice.action.value)
        seen_decisions = len(arena.log.decisions)
        for end in arena.log.ended:
            f = onset.get(end.pipeline_id)
            if f is None or end.pipeline_id in done or end.closed_at is None:
                continue
            closed = round((end.closed_at - twin.start).total_seconds() / 60)
            if closed <= f.start:
                continue  # a false incident before the fault
            slo = arena.slo[end.pipeline_id]
            mttr = recovery_minutes(f.start, closed, lambda m, slo=slo: m >= len(slo) or slo[m])
            done[end.pipeline_id] = EpisodeRecord(
                first_episode + len(done), families[twin.index_of(end.pipeline_id)], f.kind.value, f.stage.value,
                round(end.reward, 3), mttr, end.actions, round(end.cost, 3),
                first_action.get(end.pipeline_id), round(getattr(policy, 'epsilon', 0.0), 4))
            if retire:
                arena.retire(end.pipeline_id)
        arena.log.ended.clear()
        for pid in done:
            if pid not in arena.retired and _quiet(arena, faults_of[pid]):
                arena.retire(pid)
    # Episodes cut off by the horizon: no recovery reward, and they count for the exploration schedule.
    for pid, f in onset.items():
        if pid not in done:
            ep = arena.healer.episodes.get(pid) if arena.healer else None
            policy.end_episode()
            done[pid] = EpisodeRecord(
                first_episode + len(done), families[twin.index_of(pid)], f.kind.value, f.stage.value,
                round(ep.reward if ep else 0.0, 3), None, ep.attempts if ep else 0, round(ep.cost if ep else 0.0, 3),
                first_action.get(pid), round(getattr(policy, 'epsilon', 0.0), 4))
    return sorted(done.values(), key=lambda r: r.episode)


def _quiet(arena: Arena, faults: list[Fault]) -> bool:
    """Whether a pipeline whose episode has ended can be left alone for the rest of its batch: no incident is open
    on it and none of its faults is active or still to start (a fault kind that persists until fixed never ends by
    itself). Measured in `README.md` (session 18): with that session's speed-ups, `selfheal train` took 14 % less time,
    and 90 benchmark cells showed no difference in what the learner achieves."""
    minute = arena.twin.minute
    return (faults[0].pipeline not in arena.open
            and not any(f.active(minute) or f.start > minute for f in faults))
