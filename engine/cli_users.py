"""`selfheal users …`: local users of the console, kept in a Streamlit secrets file with bcrypt password hashes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import SelfhealError
from engine.security.roles import Role
from engine.security.users import DEFAULT_SECRETS_FILE, SECRETS_FILE_ENV, add_user, list_users, remove_user

app = typer.Typer(help="Local users of the console (sign-in with a password). Edits a Streamlit secrets file.",
                  no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

SecretsOption = Annotated[Path, typer.Option(
    "--secrets", envvar=SECRETS_FILE_ENV, show_default=True,
    help="The secrets file to edit; the console reads .streamlit/secrets.toml of the directory it starts in.")]


def _fail(e: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", highlight=False)
    return typer.Exit(code=2)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")  # the first line; a trailing newline is not part of it
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name: lower-case letters, digits, '.', '_', '-'.")],
    role: Annotated[Role | None, typer.Option(help="viewer reads; operator approves and rejects; admin also "
                                                   "changes the policy. Default: viewer for a new user, the "
                                                   "current role with --replace.")] = None,
    secrets: SecretsOption = DEFAULT_SECRETS_FILE,
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from the first line of stdin.")] = False,
    replace: Annotated[bool, typer.Option(help="Set a new password and role for an existing user.")] = False,
) -> None:
    """Add a user (asks for the password twice, hidden). The file gets mode 0600; other keys are kept."""
    existed = secrets.exists()
    try:
        user = add_user(secrets, name, role, _read_password(password_stdin), replace=replace)
    except SelfhealError as e:
        raise _fail(e) from e
    out.print(f"{'updated' if replace else 'added'} {user.name} ({user.role.value}) in {secrets}", highlight=False)
    if not existed:  # Streamlit watches only secrets files that existed when it started
        out.print("restart a running console so that it reads the new file", highlight=False)


@app.command("list")
def list_(secrets: SecretsOption = DEFAULT_SECRETS_FILE) -> None:
    """List the users and their roles (never their hashes)."""
    try:
        users = list_users(secrets)
    except SelfhealError as e:
        raise _fail(e) from e
    if not users:
        out.print(f"no users in {secrets}: the console runs in open mode (everyone is admin)", highlight=False)
        return
    table = Table("user", "role", title=str(secrets))
    for user in users:
        table.add_row(user.name, user.role.value)
    out.print(table)


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The user to remove.")],
           secrets: SecretsOption = DEFAULT_SECRETS_FILE) -> None:
    """Remove a user. Their open console sessions end at their next interaction."""
    try:
        remove_user(secrets, name)
    except SelfhealError as e:
        raise _fail(e) from e
    out.print(f"removed {name} from {secrets}", highlight=False)
