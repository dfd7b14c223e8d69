"""Local users kept in a Streamlit secrets file, with bcrypt password hashes; sign-in; OIDC role mapping.

The file is the one Streamlit reads as ``st.secrets`` (by default ``.streamlit/secrets.toml`` in the directory the
console starts from). selfheal's part of it::

    [selfheal.users.alice]
    password_hash = "$2b$12$..."      # bcrypt, written by `selfheal users add`; never a plain password
    role = "operator"                 # viewer | operator | admin

    [selfheal.roles]                  # roles of users signed in with OIDC (st.login), by e-mail
    "alice@example.com" = "admin"
    "*@example.com" = "operator"      # anyone at that domain; unmapped OIDC users are viewers

The console reads users from ``st.secrets`` (Streamlit merges ``~/.streamlit/secrets.toml`` and the project file,
the project's top-level tables winning), so `users_from_mapping` takes that mapping. The CLI edits exactly one
file (`add_user`, `remove_user`): the whole file is rewritten atomically with mode 0600 and every other key kept;
TOML comments are not kept.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import tomli_w

from engine.errors import ConfigError
from engine.security.roles import Principal, Role

try:  # serialises concurrent edits of one file; POSIX only, the rewrite stays atomic without it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_SECRETS_FILE = Path(".streamlit/secrets.toml")
SECRETS_FILE_ENV = "SELFHEAL_SECRETS_FILE"
BCRYPT_ROUNDS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused rather than silently truncated

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_EMAIL_PATTERN = re.compile(r"(\*|[^@\s*]+)@[^@\s*]+")


@dataclass(frozen=True, slots=True)
class LocalUser:
    """A user of the local user file."""

    name: str
    role: Role
    password_hash: str = field(repr=False)

    def principal(self) -> Principal:
        return Principal(self.name, self.role, "user")


# -- values --------------------------------------------------------------------------------------------------------

def validate_name(name: str) -> str:
    """`name` if it is a valid user name (lower-case letters, digits, '.', '_', '-'; at most 64); else ConfigError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"bad user name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def parse_role(value: object, where: str = "role") -> Role:
    """The Role named by `value`; ConfigError naming `where` and the valid roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        raise ConfigError(f"{where}: unknown role {value!r}; use one of {', '.join(r.value for r in Role)}") from None


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str) or not password:
        raise ConfigError("the password is empty")
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    return data


def hash_password(password: str, *, rounds: int | None = None) -> str:
    """A salted bcrypt hash of `password`; `rounds` is the log2 cost (default BCRYPT_ROUNDS).

    ConfigError for an empty password or one longer than bcrypt's 72 bytes.
    """
    return bcrypt.hashpw(_password_bytes(password), bcrypt.gensalt(rounds or BCRYPT_ROUNDS)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Whether `password` matches the bcrypt `password_hash`. Never raises: a malformed hash does not match."""
    try:
        return bcrypt.checkpw(_password_bytes(password), password_hash.encode("ascii"))
    except (ConfigError, ValueError, UnicodeEncodeError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return hash_password("selfheal: no such user")


def authenticate(users: Mapping[str, LocalUser], name: str, password: str) -> Principal | None:
    """The principal of `name` if `password` is right, else None.

    An unknown name costs one bcrypt check against a dummy hash, so the time taken does not tell which names exist.
    """
    user = users.get(name.strip().lower()) if isinstance(name, str) else None
    ok = verify_password(password, user.password_hash if user else _dummy_hash())
    return user.principal() if user and ok else None


# -- reading ---------------------------------------------------------------------------------------------------------

def _table(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.{key} must be a table, not {type(value).__name__}")
    return value


def _selfheal_table(secrets: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    return _table(_table(secrets, "selfheal", source), key, f"{source}: selfheal")


def users_from_mapping(secrets: Mapping[str, Any], *, source: str = "secrets") -> dict[str, LocalUser]:
    """The users of ``[selfheal.users]`` in `secrets` (what ``st.secrets`` or a parsed file gives), by name.

    Raises ConfigError naming `source`, the user and the field for a malformed entry.
    """
    users: dict[str, LocalUser] = {}
    for name, entry in _selfheal_table(secrets, "users", source).items():
        where = f"{source}: selfheal.users.{name}"
        try:
            validate_name(name)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table with password_hash and role")
        password_hash = entry.get("password_hash")
        if not isinstance(password_hash, str) or not _BCRYPT_HASH.fullmatch(password_hash):
            raise ConfigError(f"{where}.password_hash is missing or not a bcrypt hash; set it with "
                              f"`selfheal users add {name} --role ... --replace` (never write a plain password)")
        users[name] = LocalUser(name, parse_role(entry.get("role"), f"{where}.role"), password_hash)
    return users


def role_map_from_mapping(secrets: Mapping[str, Any], *, source: str = "secrets") -> dict[str, Role]:
    """``[selfheal.roles]``: e-mail address or ``*@domain`` → role, keys lower-cased. ConfigError when malformed."""
    role_map: dict[str, Role] = {}
    for key, value in _selfheal_table(secrets, "roles", source).items():
        where = f"{source}: selfheal.roles.{key!r}"
        if not _EMAIL_PATTERN.fullmatch(key):
            raise ConfigError(f"{where}: keys are e-mail addresses or '*@domain'")
        role_map[key.lower()] = parse_role(value, where)
    return role_map


def role_for_email(role_map: Mapping[str, Role], email: str | None) -> Role:
    """The role of an OIDC user: their exact address, else their domain's ``*@domain``, else viewer."""
    if not email or "@" not in email:
        return Role.VIEWER
    email = email.strip().lower()
    domain = email.rsplit("@", 1)[1]
    return role_map.get(email) or role_map.get(f"*@{domain}") or Role.VIEWER


def read_secrets_file(path: Path) -> dict[str, Any]:
    """The parsed TOML file at `path`; {} when it does not exist. ConfigError when it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e


def load_users(path: Path) -> dict[str, LocalUser]:
    """The users of the secrets file at `path` ({} when it does not exist), by name."""
    return users_from_mapping(read_secrets_file(path), source=str(path))


def list_users(path: Path) -> list[LocalUser]:
    """The users of the secrets file at `path`, sorted by name."""
    return sorted(load_users(path).values(), key=lambda u: u.name)


# -- editing ---------------------------------------------------------------------------------------------------------

def add_user(path: Path, name: str, role: Role | str | None, password: str, *, replace: bool = False) -> LocalUser:
    """Add user `name` with `role` (None: viewer) and a bcrypt hash of `password` to the secrets file at `path`
    (created if missing).

    An existing user is a ConfigError unless `replace`, which sets a new password and, when `role` is given, a new
    role (None keeps the user's role: a password change never demotes anyone). `replace` of a user that does not
    exist is a ConfigError too: a typo must not create an account.
    """
    validate_name(name)
    hashed = hash_password(password)
    done: list[LocalUser] = []

    def change(doc: dict[str, Any]) -> None:
        users = _writable_users(doc, path)
        if name in users and not replace:
            raise ConfigError(f"user {name!r} already exists in {path}; use --replace to set a new password or role")
        if replace and name not in users:
            raise ConfigError(f"no user {name!r} in {path} to replace; add it without --replace")
        kept = users[name].get("role") if replace and isinstance(users[name], dict) else None
        user = LocalUser(name, parse_role(role if role is not None else (kept or Role.VIEWER)), hashed)
        users[name] = {"password_hash": user.password_hash, "role": user.role.value}
        done.append(user)

    _edit(path, change)
    return done[0]


def remove_user(path: Path, name: str) -> None:
    """Remove user `name` from the secrets file at `path`; ConfigError when there is no such user."""
    def change(doc: dict[str, Any]) -> None:
        users = _writable_users(doc, path)
        if name not in users:
            raise ConfigError(f"no user {name!r} in {path}")
        del users[name]

    _edit(path, change)


def _writable_users(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    selfheal = doc.setdefault("selfheal", {})
    if not isinstance(selfheal, dict):
        raise ConfigError(f"{path}: selfheal must be a table, not {type(selfheal).__name__}")
    users = selfheal.setdefault("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: selfheal.users must be a table, not {type(users).__name__}")
    return users


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    target = Path(os.path.realpath(Path(path).expanduser()))  # a symlinked secrets file is edited where it lives
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {target.parent}: {e}") from e
    with _locked(target.parent):
        doc = read_secrets_file(target)
        change(doc)
        _write_atomically(target, tomli_w.dumps(doc))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write {path}: {e}") from e
