"""Time windows from plain words: "last 24 h", "past two hours", "today", "yesterday", "since 02:00".

Relative windows count back from the newest telemetry in the store (not the wall clock), so a question
means the same on a finished `selfheal simulate` run as on a live fleet. Windows are half-open
[start, end) on whole minutes; `end` is the minute after the newest one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from engine.model import MINUTE, floor_minute

_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fortyfive": 45, "sixty": 60, "ninety": 90, "couple": 2, "a couple of": 2, "couple of": 2, "few": 3,
    "a few": 3, "several": 3, "half": 0.5, "half an": 0.5, "a half": 0.5, "twenty-four": 24, "twentyfour": 24,
    "forty-eight": 48, "thirty-six": 36,
}
_UNITS = {
    "s": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "second": 1 / 60, "seconds": 1 / 60,
    "m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "mn": 1,
    "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60, "hs": 60,
    "d": 1440, "day": 1440, "days": 1440,
    "w": 10080, "wk": 10080, "wks": 10080, "week": 10080, "weeks": 10080,
}
_NUM = r"(?:\d+(?:[.,]\d+)?|" + "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True)) + ")"
_UNIT = r"(?:" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")"
_STRONG_CUE = r"(?:last|past|previous|prior|recent|trailing|preceding)"
_CUE = rf"(?:{_STRONG_CUE}|within|over|during|for|in|across)"
# "last 24 h", "past two hours", "in the last 90 mins", "over the previous 3 days", "within 45 minutes"
_RELATIVE = re.compile(rf"\b{_CUE}(?:\s+(?:the|a))?\s+(?P<n>{_NUM})\s*(?:and\s+a\s+half\s+)?(?P<unit>{_UNIT})"
                       rf"(?![a-z])", re.I)
# "last hour", "the past day", "previous week" (no number: one unit; only after a strong cue)
_RELATIVE_ONE = re.compile(rf"\b{_STRONG_CUE}\s+(?P<unit>{_UNIT})(?![a-z])", re.I)
_HALF_MORE = re.compile(r"and\s+a\s+half", re.I)
# terse: "24h", "2h", "30m", "7d" on their own
_COMPACT = re.compile(r"(?<![\w.:-])(?P<n>\d+(?:\.\d+)?)(?P<unit>h|hr|hrs|m|min|mins|d|w)(?![\w])", re.I)
# "3 hours ago" → since then
_AGO = re.compile(rf"\b(?P<n>{_NUM})\s*(?P<unit>{_UNIT})\s+ago\b", re.I)
_CLOCK = r"(?P<{g}h>\d{{1,2}})(?::(?P<{g}m>\d\d))?\s*(?P<{g}ap>am|pm|a\.m\.|p\.m\.)?(?:\s*utc)?"
_SINCE = re.compile(r"\bsince\s+" + _CLOCK.format(g="a") + r"(?![\d:])", re.I)
_BETWEEN = re.compile(r"\b(?:between|from)\s+" + _CLOCK.format(g="a") + r"\s*(?:and|to|until|till|-|–)\s*"
                      + _CLOCK.format(g="b") + r"(?![\d:])", re.I)
_DATE = re.compile(r"\b(?:on\s+)?(?P<d>\d{4}-\d\d-\d\d)\b(?!T)", re.I)
_ISO_INTERVAL = re.compile(r"^\s*(?P<a>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)\s*/\s*"
                           r"(?P<b>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)\s*$", re.I)
_ALL = re.compile(r"\b(?:all[\s-]time|ever|whole\s+run|entire\s+run|whole\s+history|all\s+(?:the\s+)?data|"
                  r"since\s+(?:the\s+)?(?:start|beginning)|from\s+the\s+(?:start|beginning)|so\s+far(?!\s+today)|"
                  r"overall)\b", re.I)
_TODAY = re.compile(r"\b(?:today|so\s+far\s+today|since\s+midnight|this\s+day)\b", re.I)
_YESTERDAY = re.compile(r"\byesterday\b", re.I)
_THIS_WEEK = re.compile(r"\bthis\s+week\b", re.I)
# Parts of the newest day: (start hour, end hour); "last night" runs from 18:00 the day before to 06:00.
_DAY_PARTS = {"this morning": (0, 12), "this afternoon": (12, 18), "this evening": (18, 24), "tonight": (18, 24),
              "last night": (-6, 6), "overnight": (-6, 6)}
_DAY_PART = re.compile(r"\b(" + "|".join(_DAY_PARTS) + r")\b", re.I)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [start, end) with the words it came from."""

    start: datetime
    end: datetime
    label: str
    phrase: str = ""  # the words that named it, so a tool can be given the same window

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    def describe(self) -> str:
        """E.g. "last 2 h (2026-01-01 02:00 → 04:00 UTC)"."""
        return f"{self.label} ({span_text(self.start, self.end)})"


def span_text(start: datetime, end: datetime) -> str:
    """"2026-01-01 02:00 → 04:00 UTC"; the end carries its own date when it falls on another day."""
    tail = f"{end:%H:%M}" if start.date() == end.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M} → {tail} UTC"


def _number(text: str | None) -> float:
    if not text:
        return 1.0
    key = re.sub(r"\s+", " ", text.strip().lower())
    if key in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[key])
    return float(key.replace(",", "."))


def _fmt_span(minutes: float) -> str:
    if minutes >= 2880 and minutes % 1440 == 0:
        d = int(minutes // 1440)
        return f"{d} day" + ("s" if d != 1 else "")
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)} h"
    if minutes >= 60 and (minutes / 60) * 2 == int((minutes / 60) * 2):
        return f"{minutes / 60:g} h"
    return f"{minutes:g} min"


MAX_SPAN_MIN = 10 * 365 * 1440  # "last 99999999999 hours" asks for everything: ten years is more than any store


def _span(minutes: float) -> int:
    """A relative window's length in whole minutes, between one minute and `MAX_SPAN_MIN`."""
    return int(min(MAX_SPAN_MIN, max(1, round(minutes)))) if math.isfinite(minutes) else MAX_SPAN_MIN


def last_minutes(minutes: float, end: datetime) -> Window:
    """The `minutes` before `end` (at least one minute, at most `MAX_SPAN_MIN`)."""
    span = _span(minutes)
    return Window(end - timedelta(minutes=span), end, f"last {_fmt_span(span)}")


def _is_clock(m: re.Match[str], g: str) -> bool:
    """Whether a matched time reads as a clock time ("02:00", "2am", "14 UTC"), not a bare count."""
    return bool(m[f"{g}m"] or m[f"{g}ap"] or "utc" in m[0].lower())


def _clock(m: re.Match[str], g: str, day: datetime) -> datetime | None:
    hour, minute, ap = int(m[f"{g}h"]), int(m[f"{g}m"] or 0), (m[f"{g}ap"] or "").lower().replace(".", "")
    if ap == "pm" and hour < 12:
        hour += 12
    elif ap == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return datetime.combine(day.date(), time(hour, minute), tzinfo=UTC)


def parse_window(text: str, newest: datetime, earliest: datetime | None = None) -> Window | None:
    """The window a question names, or None when it names none.

    `newest` is the newest minute in the store; relative windows end one minute after it.
    `earliest` (the oldest minute) lets "all time" start where the data starts. The result's `phrase`
    is the part of `text` that named the window.
    """
    found = _parse(text, newest, earliest)
    if found is None:
        return None
    window, phrase = found
    return Window(window.start, window.end, window.label, phrase.strip())


def _parse(text: str, newest: datetime, earliest: datetime | None) -> tuple[Window, str] | None:
    newest = floor_minute(newest)
    end = newest + MINUTE
    midnight = newest.replace(hour=0, minute=0)
    if m := _ISO_INTERVAL.match(text):
        a, b = (floor_minute(datetime.fromisoformat(m[k].replace("Z", "+00:00"))) for k in ("a", "b"))
        return (Window(a, b, "requested period"), m[0]) if b > a else None
    m = _BETWEEN.search(text)
    if m and (_is_clock(m, "a") or _is_clock(m, "b")):
        a, b = _clock(m, "a", midnight), _clock(m, "b", midnight)
        if a is not None and b is not None:
            if a >= end:  # a clock time later than the newest data means the previous day
                a, b = a - timedelta(days=1), b - timedelta(days=1)
            if b <= a:
                b += timedelta(days=1)
            stop = min(b, end)  # a range running past the newest data ends there, and says so
            return Window(a, stop, f"{a:%H:%M}–{stop:%H:%M}"), m[0]
    if (m := _SINCE.search(text)) and _is_clock(m, "a"):
        a = _clock(m, "a", midnight)
        if a is not None:
            if a >= end:
                a -= timedelta(days=1)
            return Window(a, end, f"since {a:%H:%M}"), m[0]
    if m := _AGO.search(text):
        minutes = _span(_number(m["n"]) * _UNITS[m["unit"].lower()])
        return Window(end - timedelta(minutes=minutes), end, f"since {_fmt_span(minutes)} ago"), m[0]
    if m := _RELATIVE.search(text):
        n = _number(m["n"]) + (0.5 if _HALF_MORE.search(m[0]) else 0.0)
        return last_minutes(n * _UNITS[m["unit"].lower()], end), m[0]
    if m := _RELATIVE_ONE.search(text):
        return last_minutes(_UNITS[m["unit"].lower()], end), m[0]
    if m := _COMPACT.search(text):
        return last_minutes(_number(m["n"]) * _UNITS[m["unit"].lower()], end), m[0]
    if m := _DAY_PART.search(text):
        a, b = _DAY_PARTS[m[1].lower()]
        start, stop = midnight + timedelta(hours=a), min(end, midnight + timedelta(hours=b))
        if stop > start:
            return Window(start, stop, m[1].lower()), m[0]
    if m := _YESTERDAY.search(text):
        return Window(midnight - timedelta(days=1), midnight, "yesterday"), m[0]
    if m := _TODAY.search(text):
        return Window(midnight, end, "today"), m[0]
    if m := _THIS_WEEK.search(text):
        return Window(midnight - timedelta(days=midnight.weekday()), end, "this week"), m[0]
    if m := _DATE.search(text):
        day = datetime.fromisoformat(m["d"]).replace(tzinfo=UTC)
        return Window(day, day + timedelta(days=1), f"{day:%Y-%m-%d}"), m["d"]
    if m := _ALL.search(text):
        start = floor_minute(earliest) if earliest is not None else end - timedelta(days=7)
        return Window(min(start, newest), end, "all data"), m[0]
    return None


def window_from_phrase(phrase: str, newest: datetime, earliest: datetime | None = None) -> Window:
    """A window from a tool argument ("last 2 hours", "today", "all", an ISO interval); ValueError if unknown."""
    cleaned = phrase.strip()
    if cleaned.lower() in ("all", "everything", "all data"):
        cleaned = "all time"
    window = parse_window(cleaned, newest, earliest)
    if window is None:
        raise ValueError(f"cannot understand the window {phrase!r}; use e.g. 'last 2 hours', 'last 30 minutes', "
                         "'today', 'yesterday', 'all', or an ISO interval 'START/END'")
    return window


def check_phrase(phrase: str) -> str:
    """Validate a window phrase without a store (pydantic validators): returns it, or raises ValueError."""
    window_from_phrase(phrase, datetime(2026, 1, 2, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    return phrase.strip()
