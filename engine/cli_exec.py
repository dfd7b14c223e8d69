"""`selfheal worker`, `selfheal proposals …`, `selfheal policy …`, `selfheal audit export`: execution from a shell.

Who decides from the command line: a local user of the console (`selfheal users add`), named with `--user` and
proven with a password (prompted, or the first line of stdin with `--password-stdin`), checked against the same
secrets file the console reads (`--secrets`, default ``.streamlit/secrets.toml`` or SELFHEAL_SECRETS_FILE). The
role comes from that file, never from a flag or an environment variable, and the engine enforces it: a viewer's
approve is refused like in the console. Workers need no user: they only execute what was approved.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import PermissionDenied, PolicyError, SelfhealError
from engine.model import PROPOSAL_STATUSES
from engine.security.roles import Principal
from engine.security.users import DEFAULT_SECRETS_FILE, SECRETS_FILE_ENV

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True, highlight=False)
proposals_app = typer.Typer(help="The approval queue: list, approve and reject proposals as a local user.",
                            no_args_is_help=True)
policy_app = typer.Typer(help="The execution policy (which proposals run without a human).", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)


def _fail(e: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}")
    return typer.Exit(code=code)


def _store():
    from engine.settings import load_settings
    from engine.store.db import Store

    return Store.open(load_settings().store_url)


# -- worker -----------------------------------------------------------------------------------------------------------

def worker(
    name: Annotated[str | None, typer.Option(help="Worker name in runs and the audit log (default host:pid).")]
    = None,
    lease_seconds: Annotated[float | None, typer.Option(help="Hold on a pipeline without renewal "
                                                        "(SELFHEAL_WORKER_LEASE_SECONDS).")] = None,
    interval: Annotated[float, typer.Option(help="Real seconds between steps.")] = 0.5,
    run_timeout: Annotated[float | None, typer.Option(help="A run's deadline in seconds "
                                                      "(SELFHEAL_RUN_TIMEOUT_SECONDS).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps (default: until "
                                                          "SIGINT/SIGTERM).")] = None,
    *,
    executor: Annotated[str, typer.Option(help="twin: the staging twin's inbox; aws: AWS calls on the "
                                               "resources --fleet names (Glue, DMS, Redshift).")] = "twin",
    fleet: Annotated[Path | None, typer.Option(help="With --executor aws: the fleet file (as `selfheal watch`'s); "
                                                    "only its pipelines' runs are claimed.")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="With --executor aws: AWS endpoint (default: "
                                                          "AWS_ENDPOINT_URL or AWS's own).")] = None,
) -> None:
    """Execute approved actions on the configured store: claim runs with their pipelines' leases, send them to the
    staging twin's inbox (a `selfheal agent` or the console hosts the twin) or, with --executor aws, to AWS; record
    outcomes. Run several on one PostgreSQL: each run executes once, each pipeline is handled by one worker at a
    time."""
    from engine.execution.twin_inbox import InboxExecutor
    from engine.execution.worker import Worker, default_worker_name
    from engine.settings import load_settings
    from engine.store.db import Store

    try:
        settings = load_settings()
        lease = lease_seconds if lease_seconds is not None else settings.worker_lease_seconds
        for flag, value in (("--lease-seconds", lease), ("--interval", interval), ("--run-timeout", run_timeout)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise SelfhealError(f"{flag} must be a positive number of seconds, got {value:g}")
        if lease <= interval:
            raise SelfhealError(f"--interval must be positive and below the lease ({lease:g} s), got {interval:g}")
        if executor not in ("twin", "aws"):
            raise SelfhealError(f"unknown executor {executor!r}; twin or aws")
        if (executor == "aws") != (fleet is not None):
            raise SelfhealError("--executor aws needs --fleet FILE (and --fleet goes with --executor aws)")
        store = Store.open(settings.store_url)
        name = name or default_worker_name()
        chosen, pipelines = InboxExecutor(store, sender=name), None
        if fleet is not None:
            from engine.execution.aws import AwsExecutor
            from engine.telemetry.cloudwatch import aws_clients, load_fleet

            spec = load_fleet(fleet)
            chosen, pipelines = AwsExecutor(spec, aws_clients(spec.region, endpoint_url), store), \
                [p.id for p in spec.specs]
        w = Worker(store, chosen, name, lease_seconds=lease, pipelines=pipelines,
                   source=None if fleet is not None else "simulator",  # the twin's own pipelines, nobody else's
                   run_timeout_seconds=run_timeout if run_timeout is not None else settings.run_timeout_seconds)
    except SelfhealError as e:
        raise _fail(e) from e
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err.print(f"worker {name}: executing approved runs from {settings.store_url} (lease {lease:g} s)")
    done = 0
    while not stop.is_set() and (steps is None or done < steps):
        try:
            s = w.step()
        except SelfhealError as e:  # the store hiccuped: the next step retries, leases cover the gap
            err.print(f"[yellow]worker {name}: step failed:[/] {e}")
        else:
            for run_id in s.claimed:
                how = "took over" if run_id in s.taken_over else "claimed"
                err.print(f"worker {name}: {how} run #{run_id}")
            for run_id, status in s.finished:
                err.print(f"worker {name}: run #{run_id} {status}")
        done += 1
        if steps is None or done < steps:
            stop.wait(interval)
    err.print(f"worker {name}: stopped after {done} step(s)")


# -- proposals --------------------------------------------------------------------------------------------------------

SecretsOption = Annotated[Path, typer.Option("--secrets", envvar=SECRETS_FILE_ENV, show_default=True,
                                             help="The secrets file holding the local users.")]
UserOption = Annotated[str, typer.Option("--user", help="Decide as this local user (selfheal users add); the role "
                                         "comes from the secrets file.")]
PasswordOption = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of "
                                              "stdin instead of prompting.")]


def sign_in(secrets: Path, name: str, password_stdin: bool) -> Principal:
    """The principal of local user `name` after checking the password; PermissionDenied otherwise."""
    from engine.security.users import authenticate, load_users

    users = load_users(secrets)
    if not users:
        raise PermissionDenied(f"no local users in {secrets}: add one with `selfheal users add` to decide from the "
                               "command line")
    password = (sys.stdin.readline().rstrip("\r\n") if password_stdin
                else typer.prompt("Password", hide_input=True))
    principal = authenticate(users, name, password)
    if principal is None:
        raise PermissionDenied("wrong user name or password")
    return principal


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; values read as JSON when they parse (numbers, true/false), else as text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise SelfhealError(f"--param wants key=value, got {pair!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


@proposals_app.command("list")
def proposals_list(
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (repeat): pending, approved, "
                                                     "rejected, expired, cancelled (default: all).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records instead of a table.")] = False,
) -> None:
    """The proposals, newest first, with their run's status."""
    from engine.execution.queue import proposals

    unknown = sorted(set(status or ()) - set(PROPOSAL_STATUSES))
    if unknown:
        raise _fail(SelfhealError(f"unknown status {', '.join(map(repr, unknown))}; one of "
                                  f"{', '.join(PROPOSAL_STATUSES)}"))
    try:
        with _store().read() as conn:
            frame = proposals(conn, statuses=status or None, limit=limit)
    except SelfhealError as e:
        raise _fail(e) from e
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    if as_json:
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
        return
    table = Table("id", "pipeline", "action", "stage", "params", "status", "risk", "conf", "run")
    for r in records:
        run = f"#{int(r['run_id'])} {r['run_status']}" if r["run_id"] is not None else "-"
        table.add_row(str(r["id"]), r["pipeline_id"], r["action"], r["stage"] or "-", json.dumps(r["params"] or {}),
                      r["status"], r["risk"], f"{r['confidence']:.2f}", run)
    out.print(table)


@proposals_app.command("approve")
def proposals_approve(
    proposal_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="The proposal's id.")],
    *,
    user: UserOption,
    param: Annotated[list[str] | None, typer.Option(help="Edit a parameter within its bounds: key=value "
                                                    "(repeat).")] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    secrets: SecretsOption = DEFAULT_SECRETS_FILE,
    password_stdin: PasswordOption = False,
) -> None:
    """Approve a pending proposal as a local operator or admin: its run is queued once for a worker."""
    from engine.execution.queue import approve

    try:
        actor = sign_in(secrets, user, password_stdin)
        params = parse_params(param) if param else None
        decided = approve(_store(), actor, proposal_id, params=params, reason=reason)
    except SelfhealError as e:
        raise _fail(e) from e
    out.print(f"proposal #{proposal_id} approved by {actor.label}; run #{decided.run_id} queued")


@proposals_app.command("reject")
def proposals_reject(
    proposal_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="The proposal's id.")],
    user: UserOption,
    reason: Annotated[str, typer.Option(help="Why (required: it teaches the agent and the auditors).")],
    secrets: SecretsOption = DEFAULT_SECRETS_FILE,
    password_stdin: PasswordOption = False,
) -> None:
    """Reject a pending proposal as a local operator or admin."""
    from engine.execution.queue import reject

    try:
        actor = sign_in(secrets, user, password_stdin)
        reject(_store(), actor, proposal_id, reason)
    except SelfhealError as e:
        raise _fail(e) from e
    out.print(f"proposal #{proposal_id} rejected by {actor.label}")


# -- policy -----------------------------------------------------------------------------------------------------------

@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="A policy TOML file.")]) -> None:
    """Validate a policy file and print its rules; exit status 1 with the offending field when it is invalid."""
    from engine.execution.policy import dump, load

    try:
        if not file.is_file():
            raise PolicyError(f"{file}: no such file")
        policy = load(file)
    except PolicyError as e:
        raise _fail(e, code=1) from e
    out.print(f"{file}: valid; {len(policy.auto)} auto-execution rule(s)", markup=False)
    out.print(dump(policy), markup=False, end="")


@policy_app.command("show")
def policy_show() -> None:
    """Print the policy in force (SELFHEAL_POLICY_FILE, default data_dir/policy.toml) as TOML."""
    from engine.execution.policy import dump, load
    from engine.settings import load_settings

    try:
        path = load_settings().policy_path
        policy = load(path)
    except SelfhealError as e:
        raise _fail(e, code=1) from e
    origin = str(path) if path.exists() else f"the built-in default ({path} does not exist)"
    out.print(f"# the policy in force: {origin}", markup=False)
    out.print(dump(policy), markup=False, end="")


# -- audit ------------------------------------------------------------------------------------------------------------

def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise SelfhealError(f"--since wants an ISO date or time (e.g. 2026-11-26T09:00), got {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@audit_app.command("export")
def audit_export(
    csv_out: Annotated[Path, typer.Option("--csv", help="The CSV file to write.")],
    since: Annotated[str | None, typer.Option(help="Only entries at or after this ISO time (UTC if no zone).")]
    = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeat), e.g. proposal_approved.")]
    = None,
) -> None:
    """Write audit entries, oldest first, as CSV: id, ts, actor, kind, subject, detail (JSON); the same format as
    the Audit log page's export."""
    from engine.service.audit import entries, to_csv

    try:
        start = _parse_since(since)
        with _store().read() as conn:
            rows = entries(conn, kinds=kind or None, start=start, limit=2**62).iloc[::-1]
        csv_out.parent.mkdir(parents=True, exist_ok=True)
        csv_out.write_bytes(to_csv(rows))
    except OSError as e:
        raise _fail(SelfhealError(f"cannot write {csv_out}: {e}")) from e
    except SelfhealError as e:
        raise _fail(e) from e
    err.print(f"wrote {len(rows)} audit entr{'y' if len(rows) == 1 else 'ies'} to {csv_out}")


def register(app: typer.Typer) -> None:
    """Add these commands to the `selfheal` app."""
    app.command("worker")(worker)
    app.add_typer(proposals_app, name="proposals")
    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")
