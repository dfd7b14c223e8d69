"""The `selfheal` command line. Errors print one clear line and exit with status 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.cli_exec import register as register_exec
from engine.cli_users import app as users_app
from engine.cli_watch import register as register_watch
from engine.errors import SelfhealError

app = typer.Typer(help="selfheal: an operations console for self-healing data pipelines.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
register_exec(app)  # worker, proposals, policy, audit
register_watch(app)  # watch (AWS CloudWatch)
err = Console(stderr=True, soft_wrap=True)
out = Console()


def _fail(e: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", highlight=False)
    return typer.Exit(code=2)


def _writable(path: Path | None) -> None:
    """Refuse an output file that cannot be written before the work starts, not after it is done (nothing is
    created here but its directory: a run refused later leaves no empty file behind)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        if not os.access(path if path.exists() else path.parent, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as e:
        raise _fail(SelfhealError(f"cannot write {path}: {e.strerror or e}")) from e


def _write(path: Path, text: str, what: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise _fail(SelfhealError(f"{what}; cannot write {path}: {e.strerror or e}")) from e


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def console(port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
            address: Annotated[str, typer.Option(help="Address to bind.")] = "0.0.0.0") -> None:
    """Start the web console (embedded twin + store from SELFHEAL_* settings)."""
    from engine.settings import load_settings

    try:
        settings = load_settings()
    except SelfhealError as e:
        raise _fail(e) from e
    app_path = Path(__file__).resolve().parent.parent / "console" / "app.py"
    if not app_path.exists():
        raise _fail(SelfhealError(f"console entry point not found at {app_path}; install with `pip install -e .`"))
    out.print(f"selfheal console on http://localhost:{port}  (store: {settings.store_url})")
    args = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    os.execv(sys.executable, args)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario JSON file (format in DESIGN.md).")],
    policy: Annotated[str, typer.Option(help="Recovery policy: none, qlearning (the trained table), rules, manual, "
                                        "oracle.")] = "none",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON here.")] = None,
    store: Annotated[str, typer.Option(help="Keep the run in this (empty) database URL; default in memory.")]
    = "sqlite://",
    agent_store: Annotated[str | None, typer.Option(help="Store holding the trained Q-table (default: configured).")]
    = None,
) -> None:
    """Run a scenario to the end as fast as possible and report SLO, incidents, MTTD and MTTR."""
    from engine.service.simulate import run_scenario
    from engine.sim.scenario import load_scenario

    _writable(json_out)
    try:
        sc = load_scenario(scenario)
        agent = None
        if policy == "qlearning":
            from engine.feedback.memory import load_policy
            from engine.settings import load_settings
            from engine.store.db import Store

            agent = load_policy(Store.open(agent_store or load_settings().store_url), learning=False)
        with Progress(TextColumn("simulating {task.description}"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total} min"), TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task(sc.name, total=sc.duration_minutes)
            report = run_scenario(sc, store_url=store, policy=policy, agent=agent,
                                  progress=lambda done, _total: bar.update(task, completed=done))
    except SelfhealError as e:
        raise _fail(e) from e
    if json_out is not None:
        _write(json_out, json.dumps(report, indent=2, sort_keys=True) + "\n", "the run finished")
    _print_report(report)


def _print_report(report: dict) -> None:
    t = Table(title=f"{report['scenario']} (seed {report['seed']}, policy {report['policy']})")
    for col in ("pipeline", "SLO", "incidents", "MTTD min", "MTTR min"):
        t.add_column(col, justify="left" if col == "pipeline" else "right")
    fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
    for p in report["pipelines"]:
        t.add_row(p["id"], fmt(p["slo_attainment"]), str(len(p["incidents"])), fmt(p["mttd_minutes_mean"]),
                  fmt(p["mttr_minutes_mean"]))
    out.print(t)
    s = report["summary"]
    out.print(f"fleet SLO {fmt(s['slo_attainment'])}; faults {s['faults']} (detected {s['detected']}, "
              f"recovered {s['recovered']}); false incidents {s['false_incidents']}; "
              f"MTTD mean {fmt(s['mttd_minutes_mean'])} min; MTTR mean {fmt(s['mttr_minutes_mean'])} min, "
              f"p95 {fmt(s['mttr_minutes_p95'])} min")


@app.command()
def detect(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="CSV with columns timestamp,value.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write: timestamp,value,anomaly_score.")],
    method: Annotated[str, typer.Option(help="likelihood (default) or iforest.")] = "likelihood",
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Random seed (used by iforest).")] = 0,
) -> None:
    """Score a metric series: anomaly_score in [0, 1] per row, from that row and the rows before it."""
    from engine.detection.detect import detect_file

    try:
        rows = detect_file(input_path, output, method=method, seed=seed)
    except SelfhealError as e:
        raise _fail(e) from e
    err.print(f"scored {rows} rows into {output}", highlight=False)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question in plain words (quote it).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the answer, tool calls and any proposal as JSON.")]
    = False,
    store: Annotated[str | None, typer.Option(help="Database URL to ask about (default: the configured store).")]
    = None,
    backend: Annotated[str | None, typer.Option(help="offline | openai (default: SELFHEAL_ASSISTANT_BACKEND).")]
    = None,
) -> None:
    """Ask the assistant about the store. Fix requests only queue a proposal for an operator; nothing runs."""
    from engine.assistant import ask as answer_question
    from engine.assistant import load_assistant_config, make_backend
    from engine.settings import load_settings
    from engine.store.db import Store

    try:
        url = store or load_settings().store_url
        answer = answer_question(make_backend(Store.open(url), load_assistant_config(backend=backend), actor="cli"),
                                 question)
    except SelfhealError as e:
        raise _fail(e) from e
    if json_out:
        sys.stdout.write(json.dumps({"question": question, **answer.to_dict()}, indent=2, default=str) + "\n")
    else:
        out.print(answer.text, markup=False, highlight=False)
    if answer.error:
        raise typer.Exit(code=2)


@app.command()
def agent(
    interval: Annotated[float | None, typer.Option(help="Real seconds between ticks (SELFHEAL_TICK_SECONDS).")] = None,
    speed: Annotated[float | None, typer.Option(help="Simulated minutes per real second (SELFHEAL_SIM_SPEED).")]
    = None,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks (default: run until stopped).")]
    = None,
    policy: Annotated[str | None, typer.Option(help="Decide on open incidents and propose fixes: auto (the stored "
                                               "Q-table once trained, else rules), qlearning (learning live), rules, "
                                               "manual, none (default: SELFHEAL_AGENT_POLICY, auto).")] = None,
    *,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Execute approved actions in this process "
                                         "too; --no-worker leaves them to `selfheal worker` processes (this "
                                         "process still hosts the twin they act on).")] = True,
    fleet_size: Annotated[int | None, typer.Option(help="Pipelines in the twin (SELFHEAL_FLEET_SIZE).")] = None,
) -> None:
    """Run the loop as a worker: tick the configured source into the store until stopped (Ctrl-C / SIGTERM)."""
    from engine.service.runtime import EmbeddedRuntime, SimClock
    from engine.settings import load_settings

    try:
        overrides: dict[str, object] = {"live": False}
        if interval is not None:
            overrides["tick_seconds"] = interval
        if speed is not None:
            overrides["sim_speed"] = speed
        if fleet_size is not None:
            overrides["fleet_size"] = fleet_size
        settings = load_settings(**overrides)
        if not settings.twin:
            raise SelfhealError("selfheal agent runs the simulated fleet, and SELFHEAL_TWIN=false turns it off; "
                                "for real pipelines use `selfheal watch --fleet FILE`")
        runtime = EmbeddedRuntime(settings, policy=policy, worker=None if worker else False)
        runtime.backfill()
    except SelfhealError as e:
        raise _fail(e) from e
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    clock = SimClock(runtime.twin.now, settings.sim_speed)
    err.print(f"agent: {len(runtime.twin.pipelines)} pipelines from the simulator into {settings.store_url}; "
              f"tick every {settings.tick_seconds:g}s at {settings.sim_speed:g} sim-min/s")
    done = 0
    while (ticks is None or done < ticks) and not stop.wait(settings.tick_seconds):
        try:
            r = runtime.advance_to(clock.now())
        except SelfhealError as e:
            err.print(f"[yellow]tick failed:[/] {e}")
            continue
        done += 1
        err.print(f"tick {done}: up to {r.end.isoformat()} ({r.minutes} min, {r.samples} samples, "
                  f"{len(r.opened)} opened, {len(r.closed)} closed)", highlight=False)
    runtime.stop()  # hands the staging twin back at once (another host may start without waiting for the lease)
    err.print(f"agent: stopped after {done} tick(s)")


bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _averaged(members: int, average: int | None) -> int:
    """How many learners' tables to average: `--average`, else the default for `members`; more than `members` is
    an error."""
    from engine.feedback.training import default_averaged

    if average is not None and average > members:
        raise typer.BadParameter(f"cannot average {average} of {members} learners", param_hint="--average")
    return default_averaged(members, average)


@app.command()
def train(
    episodes: Annotated[int, typer.Option(min=1, max=1_000_000, help="Training episodes (one incident each) in the "
                                                                      "twin.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, max=2**62, help="Seed of the generated training scenarios and the "
                                                             "agent.")] = 0,
    store: Annotated[str | None, typer.Option(help="Database URL to keep the Q-table in (default: configured).")]
    = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the learning curve (per episode) here.")]
    = None,
    *,
    fresh: Annotated[bool, typer.Option(help="Start from an empty Q-table instead of the stored one.")] = False,
    select: Annotated[bool, typer.Option(help="Score the greedy policy at 60-100 % of the episodes on training-side "
                                              "validation episodes and keep the best table (runs of 200+ episodes)."
                                         )] = True,
    jobs: Annotated[int | None, typer.Option(min=1, help="Processes: the learners are dealt out over them (one "
                                                         "learner: 2 scores checkpoints beside training); the same "
                                                         "result, faster; default 2 where there are two cores.")]
    = None,
    restarts: Annotated[int, typer.Option(min=0, help="Train a learner again with the next seed (at most this many "
                                                      "times) while its kept checkpoint scores above 1.1 × the "
                                                      "oracle; its best run is kept (needs --select). Off by "
                                                      "default: the learners left out of --average do that job.")]
    = 0,
    members: Annotated[int, typer.Option(min=1, help="Learners trained side by side on their own scenario streams "
                                                     "(--episodes each): a table that depends less on the seed. "
                                                     "1: one learner.")] = 4,
    average: Annotated[int | None, typer.Option(min=1, help="Average the tables of this many learners, those whose "
                                                            "kept checkpoints score best (default 3, at most "
                                                            "--members).")] = None,
) -> None:
    """Train the Q-learning policy in the twin on generated scenarios; the table is saved in the store."""
    from datetime import UTC, datetime

    from engine.feedback import memory
    from engine.feedback.summaries import attempt_lines, checkpoint_lines, curve_lines, learners_phrase, restart_line
    from engine.feedback.training import default_checkpoints, default_jobs
    from engine.feedback.training import train as run_training
    from engine.settings import load_settings

    _writable(json_out)
    from engine.store.db import Store

    averaged = _averaged(members, average)
    try:
        db = Store.open(store or load_settings().store_url)
        agent = memory.load_policy(db, explore=True)
        if fresh:
            agent = type(agent)(params=agent.params)
        with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("train", total=episodes * members)
            run = run_training(agent, episodes=episodes, seed=seed,
                               checkpoints=default_checkpoints(episodes) if select else (),
                               progress=lambda done, _total: bar.update(task, completed=done),
                               jobs=jobs or default_jobs(), restarts=restarts, members=members,
                               averaged=averaged,
                               on_restart=lambda a: err.print(restart_line(a), highlight=False))
        with db.transaction() as conn:
            memory.record_training(conn, agent, run, seed=seed, now=datetime.now(UTC))
    except SelfhealError as e:
        raise _fail(e) from e
    if json_out is not None:
        _write(json_out, json.dumps(run.summary(seed=seed, episodes_total=agent.episodes), indent=1) + "\n",
               "the Q-table was trained and saved")
    runs = learners_phrase(members, run.fallback, run.averaged) or (f" × {len(run.attempts)} runs"
                                                                    if len(run.attempts) > 1 else "")
    each = " each" if members > 1 else ""
    out.print(f"trained {len(run.records)} episodes{runs} in {run.seconds:.1f} s ({run.batches} batches{each}); "
              f"{len(agent.table.values)} states, {len(agent.table)} state-action values; epsilon now "
              f"{agent.epsilon:.3f}", soft_wrap=True)
    if len(run.attempts) > 1:
        out.print("\n".join(attempt_lines(run.attempts, run.averaged)), highlight=False, markup=False)
    if run.checkpoints:
        out.print("checkpoints (greedy policy on training-side validation episodes):", highlight=False)
        out.print("\n".join(checkpoint_lines(run.checkpoints, run.ensemble)), highlight=False, markup=False)
    out.print("learning curve, all episodes" + (" (learner 0)" if members > 1 else "") + ":", highlight=False)
    out.print("\n".join(curve_lines(run.records)), highlight=False, markup=False)
    out.print("learning curve, credentials_expired (no runbook rule):", highlight=False)
    out.print("\n".join(curve_lines(run.records, kind="credentials_expired")), highlight=False, markup=False)


@bench_app.command("rl")
def bench_rl(
    scenarios: Annotated[Path, typer.Option(help="Directory of held-out scenario JSON files to score on.")],
    episodes: Annotated[int, typer.Option(min=1, max=1_000_000, help="Training episodes on generated scenarios "
                                                                      "(never DIR).")] = 1000,
    seed: Annotated[int, typer.Option(min=0, max=2**62, help="Seed of training and of the policies' "
                                                             "tie-breaking.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the per-policy results here.")] = None,
    *,
    jobs: Annotated[int | None, typer.Option(min=1, help="Processes for training (as `selfheal train --jobs`).")]
    = None,
    restarts: Annotated[int, typer.Option(min=0, help="Training restarts after a poor run (as `selfheal train "
                                                      "--restarts`).")] = 0,
    members: Annotated[int, typer.Option(min=1, help="Learners trained (as `selfheal train --members`).")] = 4,
    average: Annotated[int | None, typer.Option(min=1, help="Learners averaged, the best-scoring ones (as "
                                                            "`selfheal train --average`).")] = None,
) -> None:
    """Train Q-learning in the twin, then run qlearning, rules, manual, oracle (and none) on every file in DIR."""
    from engine.feedback.bench import bench
    from engine.feedback.summaries import bench_lines, learners_phrase
    from engine.feedback.training import default_jobs

    _writable(json_out)

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      console=err, transient=True) as bar:
            tasks: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)  # type: ignore[arg-type]

            result = bench(scenarios, episodes=episodes, seed=seed, progress=progress, jobs=jobs or default_jobs(),
                           restarts=restarts, members=members, averaged=_averaged(members, average))
    except SelfhealError as e:
        raise _fail(e) from e
    if json_out is not None:
        _write(json_out, json.dumps(result, indent=2, sort_keys=True) + "\n", "the benchmark finished")
    if "training" in result:
        t = result["training"]
        runs = f" ({len(t['attempts'])} runs: poor ones trained again)" if len(t["attempts"]) > members else ""
        each = learners_phrase(members, t["fallback"], t["averaged"])
        out.print(f"trained {t['episodes']} episodes{each} in {t['seconds']:g} s on generated scenarios{runs}")
    out.print(f"{result['files']} held-out scenario(s) in {result['scenarios']}")
    out.print("\n".join(bench_lines(result)), highlight=False, markup=False, soft_wrap=True)


@bench_app.command("scenarios")
def bench_scenarios(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write one sub-directory per family into.")],
    count: Annotated[int, typer.Option(min=1, max=100_000, help="Scenarios per family (sparse: a third as many, "
                                                                "each two days).")] = 30,
    seed: Annotated[int, typer.Option(min=0, max=2**62, help="Held-out seed (training never draws from this "
                                                             "stream).")] = 1000,
) -> None:
    """Write held-out scenario sets: single, mixed, ambiguous, novel (credentials_expired), sparse."""
    from engine.feedback.curriculum import write_sets

    try:
        written = write_sets(out_dir, count=count, seed=seed)
    except OSError as e:
        raise _fail(SelfhealError(f"cannot write scenarios into {out_dir}: {e.strerror or e}")) from e
    for family, d in written.items():
        out.print(f"{family:<10} {len(list(d.glob('*.json'))):>3} scenario(s) in {d}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema of the configured store to the newest migration."""
    from engine.settings import load_settings
    from engine.store.db import Store

    try:
        s = Store.open(load_settings().store_url, migrate=True)
        out.print(f"store at revision {s.revision()} (head {Store.head()})")
    except SelfhealError as e:
        raise _fail(e) from e


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the configured store (without migrating)."""
    from engine.settings import load_settings
    from engine.store.db import Store

    try:
        s = Store.open(load_settings().store_url, migrate=False)
        out.print(f"store at revision {s.revision() or 'none (empty database)'} (head {Store.head()})")
    except SelfhealError as e:
        raise _fail(e) from e


def main() -> None:
    app()


if __name__ == "__main__":
    main()
