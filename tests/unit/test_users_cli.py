"""`selfheal users add/list/remove` through Typer's CliRunner, on a secrets file in tmp."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.security import users as users_module
from engine.security.roles import Principal, Role
from engine.security.users import authenticate, load_users

runner = CliRunner()


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users_module, "BCRYPT_ROUNDS", 4)


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text('[llm]\nbackend = "offline"\n', encoding="utf-8")
    return path


def users_cmd(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["users", *args], input=stdin)


def test_add_with_password_stdin_list_and_remove(secrets: Path) -> None:
    added = users_cmd("add", "alice", "--role", "operator", "--secrets", str(secrets), "--password-stdin",
                      stdin="alice pw\n")
    assert added.exit_code == 0, added.output
    assert "added alice (operator)" in added.output
    assert authenticate(load_users(secrets), "alice", "alice pw") == Principal("alice", Role.OPERATOR, "user")
    assert tomllib.loads(secrets.read_text(encoding="utf-8"))["llm"] == {"backend": "offline"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600

    listed = users_cmd("list", "--secrets", str(secrets))
    assert listed.exit_code == 0 and "alice" in listed.output and "operator" in listed.output
    assert "$2b$" not in listed.output

    removed = users_cmd("remove", "alice", "--secrets", str(secrets))
    assert removed.exit_code == 0 and "removed alice" in removed.output
    assert load_users(secrets) == {}
    assert "open mode" in users_cmd("list", "--secrets", str(secrets)).output


def test_the_prompt_asks_twice_and_the_secrets_path_comes_from_the_environment(secrets: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_SECRETS_FILE", str(secrets))
    result = users_cmd("add", "root", "--role", "admin", stdin="root pw\nroot pw\n")
    assert result.exit_code == 0, result.output
    assert "root pw" not in result.output  # hidden input
    assert authenticate(load_users(secrets), "root", "root pw") == Principal("root", Role.ADMIN, "user")
    mismatch = users_cmd("add", "bob", stdin="one\ntwo\none\none\n")
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output.lower()
    assert load_users(secrets)["bob"].role is Role.VIEWER  # the default role


def test_errors_are_one_line_and_exit_2(secrets: Path) -> None:
    users_cmd("add", "alice", "--secrets", str(secrets), "--password-stdin", stdin="pw\n")
    for args, stdin, message in [
        (("add", "alice", "--password-stdin"), "pw\n", "already exists"),
        (("add", "Bad Name", "--password-stdin"), "pw\n", "bad user name"),
        (("add", "carol", "--password-stdin"), "\n", "password is empty"),
        (("remove", "ghost"), None, "no user 'ghost'"),
    ]:
        result = users_cmd(*args, "--secrets", str(secrets), stdin=stdin)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    unknown_role = users_cmd("add", "dave", "--role", "root", "--secrets", str(secrets), "--password-stdin",
                             stdin="pw\n")
    assert unknown_role.exit_code == 2 and "root" in unknown_role.output
    assert sorted(load_users(secrets)) == ["alice"]


def test_a_broken_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text("[selfheal\n", encoding="utf-8")
    result = users_cmd("list", "--secrets", str(path))
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_creating_the_file_says_a_running_console_needs_a_restart(tmp_path: Path) -> None:
    path = tmp_path / ".streamlit" / "secrets.toml"
    first = users_cmd("add", "alice", "--secrets", str(path), "--password-stdin", stdin="pw\n")
    assert first.exit_code == 0 and "restart" in first.output
    second = users_cmd("add", "bob", "--secrets", str(path), "--password-stdin", stdin="pw\n")
    assert second.exit_code == 0 and "restart" not in second.output
