"""`selfheal watch`: monitor real pipelines from AWS CloudWatch into the store (see engine/service/watch.py)."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.errors import SelfhealError

err = Console(stderr=True, soft_wrap=True)


def watch(
    fleet: Annotated[Path, typer.Option(help="Fleet file (TOML): the AWS resources of each pipeline; see "
                                             "examples/cloudwatch-fleet.toml.")],
    interval: Annotated[float, typer.Option(min=1, help="Seconds between reads.")] = 60.0,
    *,
    ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many reads (default: run until "
                                                          "stopped).")] = None,
    backfill: Annotated[int, typer.Option(min=0, max=60 * 24 * 14, help="Minutes of history to read first on a "
                                                                       "store that has none from CloudWatch.")] = 120,
    delay: Annotated[int, typer.Option(min=0, max=60, help="Minutes to leave CloudWatch before a minute is read "
                                                           "(its datapoints arrive late).")] = 2,
    endpoint_url: Annotated[str | None, typer.Option(help="AWS endpoint (e.g. a VPC endpoint or a moto server); "
                                                          "default: AWS_ENDPOINT_URL or AWS's own.")] = None,
    store: Annotated[str | None, typer.Option(help="Database URL (default: the configured store).")] = None,
    policy: Annotated[str, typer.Option(help="Decide on open incidents and propose fixes: rules (the runbook), "
                                             "qlearning (the trained table), auto (qlearning once trained, else "
                                             "rules), manual, or none: detect only.")] = "none",
) -> None:
    """Monitor real pipelines: read CloudWatch metrics, DMS task states, failed Glue runs and error logs every
    interval, and score, assess and open incidents in the store (the console shows them). Resumes after the last
    minute read. With --policy, fixes are proposed through the approval queue (the policy file auto-approves what
    it allows); `selfheal worker --executor aws` carries approved ones out."""
    from engine.service.watch import Watcher
    from engine.settings import load_settings
    from engine.store.db import Store
    from engine.telemetry.cloudwatch import aws_clients, load_fleet

    try:
        settings = load_settings()
        spec = load_fleet(fleet)
        db = Store.open(store or settings.store_url)
        watcher = Watcher(db, spec, aws_clients(spec.region, endpoint_url), now=datetime.now(UTC),
                          backfill_minutes=backfill, delay_minutes=delay, seed=settings.seed, policy=policy,
                          policy_file=settings.policy_path)
    except SelfhealError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(code=2) from e
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    how = "resuming after" if watcher.resumed.from_watermark else "starting at"
    url = db.engine.url.render_as_string(hide_password=True)
    deciding = f"; policy {watcher.policy_name} proposes fixes" if watcher.healer is not None else "; detection only"
    err.print(f"watch: {len(spec.specs)} pipeline(s) from CloudWatch into {url}; {how} "
              f"{watcher.resumed.start.isoformat()}; a read every {interval:g}s{deciding}", highlight=False)
    done = failed = 0
    while ticks is None or done < ticks:
        try:
            for r in watcher.catch_up(datetime.now(UTC), stop=stop.is_set):
                err.print(f"read {r.start.isoformat()} – {r.end.isoformat()}: {r.minutes} min, {r.samples} samples, "
                          f"{r.events} events, {len(r.opened)} incident(s) opened, {len(r.closed)} closed, "
                          f"{sum(d.execution.request.action.value != 'wait' for d in r.decisions)} fix(es) proposed",
                          highlight=False)
        except SelfhealError as e:  # nothing was consumed: the next read covers the same minutes
            failed += 1
            err.print(f"[yellow]read failed, will retry:[/] {e}", highlight=False)
        done += 1
        if (ticks is not None and done >= ticks) or stop.wait(interval):
            break
    err.print(f"watch: stopped after {done} read(s), {failed} failed", highlight=False)
    if failed and failed == done:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command()(watch)
