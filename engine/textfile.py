"""Reading a user's text file (a scenario, a fleet file) with one clear error for each way it can fail."""

from __future__ import annotations

from pathlib import Path

from engine.errors import SelfhealError


def read_text(path: Path, what: str, error: type[SelfhealError]) -> str:
    """The UTF-8 text of `path`; `error` naming `what` ("scenario", "fleet file") when it cannot be read or is not
    UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise error(f"invalid {what} {path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
