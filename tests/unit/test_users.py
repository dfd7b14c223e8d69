"""Local users: bcrypt hashing, sign-in, OIDC role mapping, the secrets file rewritten safely, clear errors."""

from __future__ import annotations

import os
import stat
import threading
import tomllib
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.security import users as users_module
from engine.security.roles import Principal, Role
from engine.security.throttle import SignInThrottle
from engine.security.users import (
    LocalUser,
    add_user,
    authenticate,
    hash_password,
    list_users,
    load_users,
    remove_user,
    role_for_email,
    role_map_from_mapping,
    users_from_mapping,
    verify_password,
)

FAST = 4  # bcrypt cost for tests; the default (12) takes ~0.3 s per hash
HASH = hash_password("pw", rounds=FAST)


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users_module, "BCRYPT_ROUNDS", FAST)


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / ".streamlit" / "secrets.toml"
    path.parent.mkdir()
    path.write_text('top = "kept"\n\n[llm]\nbackend = "openai"\nmodel = "gpt-4o-mini"\n\n'
                    '[selfheal.roles]\n"*@example.com" = "operator"\n', encoding="utf-8")
    return path


# -- hashing ---------------------------------------------------------------------------------------------------------
def test_hash_round_trip_salted_and_never_plain() -> None:
    first, second = hash_password("s3cret pass"), hash_password("s3cret pass")
    assert first != second and "s3cret" not in first  # salted
    assert first.startswith("$2b$")
    assert verify_password("s3cret pass", first)
    assert not verify_password("s3cret pas", first)
    assert not verify_password("S3cret pass", first)


def test_unicode_passwords_and_the_72_byte_limit() -> None:
    assert verify_password("pässwörd ✓", hash_password("pässwörd ✓"))
    with pytest.raises(ConfigError, match="72 bytes"):
        hash_password("x" * 73)
    with pytest.raises(ConfigError, match="empty"):
        hash_password("")


def test_verify_never_raises_on_junk() -> None:
    assert not verify_password("pw", "not a hash")
    assert not verify_password("", hash_password("pw"))
    assert not verify_password("x" * 100, hash_password("pw"))


# -- sign-in ---------------------------------------------------------------------------------------------------------
def _users() -> dict[str, LocalUser]:
    return {"alice": LocalUser("alice", Role.OPERATOR, hash_password("alice pw")),
            "root": LocalUser("root", Role.ADMIN, hash_password("root pw"))}


def test_authenticate_right_wrong_and_unknown() -> None:
    users = _users()
    assert authenticate(users, "alice", "alice pw") == Principal("alice", Role.OPERATOR, "user")
    assert authenticate(users, " Alice ", "alice pw") == Principal("alice", Role.OPERATOR, "user")
    assert authenticate(users, "alice", "root pw") is None
    assert authenticate(users, "nobody", "alice pw") is None
    assert authenticate(users, "", "") is None


def test_an_unknown_user_still_costs_a_bcrypt_check(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = users_module.verify_password
    monkeypatch.setattr(users_module, "verify_password", lambda pw, h: checked.append(h) or real(pw, h))
    assert authenticate(_users(), "nobody", "pw") is None
    assert len(checked) == 1 and checked[0].startswith("$2b$")


def test_repr_of_a_user_hides_the_hash() -> None:
    assert "$2b$" not in repr(_users()["alice"])


def test_throttle_locks_after_five_failures_and_releases() -> None:
    throttle = SignInThrottle(max_failures=5, window_s=300, lockout_s=60)
    for t in range(4):
        throttle.failed(float(t))
        assert throttle.retry_after(float(t)) == 0
    throttle.failed(4.0)
    assert throttle.retry_after(5.0) == pytest.approx(59.0)
    assert throttle.retry_after(64.0) == 0
    throttle.succeeded()
    assert throttle.retry_after(5.0) == 0
    old = SignInThrottle(max_failures=2, window_s=10, lockout_s=60, failures=[0.0, 1.0])
    assert old.retry_after(12.0) == 0  # failures outside the window do not count


# -- reading users ---------------------------------------------------------------------------------------------------
def test_users_from_a_mapping_like_st_secrets() -> None:
    h = hash_password("pw")
    users = users_from_mapping({"selfheal": {"users": {"bob": {"password_hash": h, "role": "viewer"}}}, "llm": {}})
    assert users == {"bob": LocalUser("bob", Role.VIEWER, h)}
    assert users_from_mapping({}) == {}
    assert users_from_mapping({"selfheal": {"roles": {}}}) == {}


@pytest.mark.parametrize(("secrets", "message"), [
    ({"selfheal": "x"}, "selfheal must be a table"),
    ({"selfheal": {"users": ["bob"]}}, "selfheal.users must be a table"),
    ({"selfheal": {"users": {"bob": "pw"}}}, "selfheal.users.bob must be a table"),
    ({"selfheal": {"users": {"bob": {"password_hash": "hunter2", "role": "admin"}}}}, "not a bcrypt hash"),
    ({"selfheal": {"users": {"bob": {"role": "admin"}}}}, "bob.password_hash is missing"),
    ({"selfheal": {"users": {"bob": {"password_hash": HASH, "role": "root"}}}}, "unknown role 'root'"),
    ({"selfheal": {"users": {"bob": {"password_hash": HASH}}}}, "unknown role None"),
    ({"selfheal": {"users": {"Bob Smith": {"password_hash": HASH, "role": "admin"}}}}, "bad user name"),
])
def test_malformed_entries_are_clear_errors(secrets: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        users_from_mapping(secrets, source="secrets.toml")


def test_a_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text("[selfheal.users.bob\nrole = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_users(path)
    with pytest.raises(ConfigError, match="not valid TOML"):
        add_user(path, "carol", "viewer", "pw")
    assert path.read_text(encoding="utf-8").startswith("[selfheal.users.bob")  # left alone


def test_a_missing_file_has_no_users(tmp_path: Path) -> None:
    assert load_users(tmp_path / "nope.toml") == {}
    assert list_users(tmp_path / "nope.toml") == []


# -- OIDC role mapping -----------------------------------------------------------------------------------------------
def test_role_mapping_exact_then_domain_wildcard_then_viewer() -> None:
    role_map = role_map_from_mapping({"selfheal": {"roles": {
        "Boss@Example.com": "admin", "*@example.com": "operator", "guest@example.com": "viewer"}}})
    assert role_for_email(role_map, "boss@example.com") is Role.ADMIN
    assert role_for_email(role_map, "BOSS@example.COM") is Role.ADMIN
    assert role_for_email(role_map, "ann@example.com") is Role.OPERATOR
    assert role_for_email(role_map, "guest@example.com") is Role.VIEWER  # exact wins over the domain
    assert role_for_email(role_map, "ann@sub.example.com") is Role.VIEWER  # no subdomain matching
    assert role_for_email(role_map, "ann@example.com.evil.org") is Role.VIEWER
    assert role_for_email(role_map, "eve@elsewhere.org") is Role.VIEWER
    assert role_for_email(role_map, None) is Role.VIEWER
    assert role_for_email(role_map, "no-at-sign") is Role.VIEWER
    assert role_for_email({}, "boss@example.com") is Role.VIEWER


@pytest.mark.parametrize(("roles", "message"), [
    ({"*": "admin"}, "e-mail addresses or"),
    ({"*@*": "admin"}, "e-mail addresses or"),
    ({"ann@example.com": "superuser"}, "unknown role 'superuser'"),
    ("admin", "selfheal.roles must be a table"),
])
def test_bad_role_mappings_are_clear_errors(roles: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        role_map_from_mapping({"selfheal": {"roles": roles}})


# -- editing the file ------------------------------------------------------------------------------------------------
def test_add_list_remove_keep_the_other_keys(secrets_file: Path) -> None:
    before = tomllib.loads(secrets_file.read_text(encoding="utf-8"))
    alice = add_user(secrets_file, "alice", Role.OPERATOR, "alice pw")
    add_user(secrets_file, "bob", "admin", "bob pw")
    assert [(u.name, u.role) for u in list_users(secrets_file)] == [("alice", Role.OPERATOR), ("bob", Role.ADMIN)]
    doc = tomllib.loads(secrets_file.read_text(encoding="utf-8"))
    assert doc["top"] == before["top"] and doc["llm"] == before["llm"]
    assert doc["selfheal"]["roles"] == before["selfheal"]["roles"]
    assert doc["selfheal"]["users"]["alice"] == {"password_hash": alice.password_hash, "role": "operator"}
    assert "alice pw" not in secrets_file.read_text(encoding="utf-8")
    assert authenticate(load_users(secrets_file), "alice", "alice pw") == alice.principal()

    remove_user(secrets_file, "alice")
    assert [u.name for u in list_users(secrets_file)] == ["bob"]
    doc = tomllib.loads(secrets_file.read_text(encoding="utf-8"))
    assert doc["top"] == "kept" and doc["llm"] == before["llm"] and doc["selfheal"]["roles"]


def test_the_file_is_created_with_mode_0600_and_no_temp_files_stay(tmp_path: Path) -> None:
    path = tmp_path / "new" / ".streamlit" / "secrets.toml"
    add_user(path, "alice", "viewer", "pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    add_user(path, "bob", "viewer", "pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened on every rewrite
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.toml"]


def test_a_symlinked_file_is_edited_where_it_lives(tmp_path: Path) -> None:
    real = tmp_path / "vault" / "secrets.toml"
    real.parent.mkdir()
    real.write_text('a = 1\n', encoding="utf-8")
    link = tmp_path / "secrets.toml"
    link.symlink_to(real)
    add_user(link, "alice", "viewer", "pw")
    assert link.is_symlink()
    assert "alice" in load_users(real)


def test_add_refuses_an_existing_user_unless_replace(secrets_file: Path) -> None:
    add_user(secrets_file, "alice", "viewer", "old pw")
    with pytest.raises(ConfigError, match=r"already exists.*--replace"):
        add_user(secrets_file, "alice", "admin", "new pw")
    assert load_users(secrets_file)["alice"].role is Role.VIEWER
    add_user(secrets_file, "alice", "admin", "new pw", replace=True)
    users = load_users(secrets_file)
    assert users["alice"].role is Role.ADMIN
    assert authenticate(users, "alice", "new pw") and not authenticate(users, "alice", "old pw")


def test_a_new_password_keeps_the_role_and_replace_never_creates_a_user(secrets_file: Path) -> None:
    add_user(secrets_file, "olga", Role.OPERATOR, "old pw")
    kept = add_user(secrets_file, "olga", None, "new pw", replace=True)  # `users add olga --replace`, no --role
    assert kept.role is Role.OPERATOR and load_users(secrets_file)["olga"].role is Role.OPERATOR
    with pytest.raises(ConfigError, match=r"no user 'ghost' .* to replace"):
        add_user(secrets_file, "ghost", None, "pw", replace=True)
    assert "ghost" not in load_users(secrets_file)
    assert add_user(secrets_file, "newbie", None, "pw").role is Role.VIEWER  # a new user defaults to viewer


@pytest.mark.parametrize(("name", "role", "password", "message"), [
    ("alice", "root", "pw", "unknown role 'root'"),
    ("alice", "viewer", "", "empty"),
    ("", "viewer", "pw", "bad user name"),
    ("Alice", "viewer", "pw", "bad user name"),
    ("a b", "viewer", "pw", "bad user name"),
    ("-x", "viewer", "pw", "bad user name"),
    ("x" * 65, "viewer", "pw", "bad user name"),
    ('a"]\n[evil', "viewer", "pw", "bad user name"),
])
def test_bad_input_changes_nothing(secrets_file: Path, name: str, role: str, password: str, message: str) -> None:
    before = secrets_file.read_bytes()
    with pytest.raises(ConfigError, match=message):
        add_user(secrets_file, name, role, password)
    assert secrets_file.read_bytes() == before


def test_remove_an_unknown_user_is_an_error(secrets_file: Path) -> None:
    with pytest.raises(ConfigError, match="no user 'ghost'"):
        remove_user(secrets_file, "ghost")


def test_a_non_table_selfheal_key_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text('selfheal = "oops"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="selfheal must be a table"):
        add_user(path, "alice", "viewer", "pw")
    assert path.read_text(encoding="utf-8") == 'selfheal = "oops"\n'


def test_concurrent_adds_lose_no_user(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    names = [f"user{i}" for i in range(12)]
    threads = [threading.Thread(target=add_user, args=(path, n, "viewer", "pw")) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [u.name for u in list_users(path)] == sorted(names)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
