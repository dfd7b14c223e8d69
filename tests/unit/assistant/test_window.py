"""Time windows from plain words, counted back from the newest telemetry (never the wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.assistant.window import check_phrase, parse_window, span_text, window_from_phrase

NEWEST = datetime(2026, 1, 5, 3, 59, tzinfo=UTC)  # the newest minute in the store
END = NEWEST + timedelta(minutes=1)
EARLIEST = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "minutes", "label"), [
    ("CPU of the orders Glue job over the last 24 h", 1440, "last 24 h"),
    ("errors in the past two hours", 120, "last 2 h"),
    ("past 2 hrs", 120, "last 2 h"),
    ("in the last 90 mins", 90, "last 1.5 h"),
    ("during the last hour", 60, "last 1 h"),
    ("the last half hour", 30, "last 30 min"),
    ("over the last couple of hours", 120, "last 2 h"),
    ("the past 1.5 hours", 90, "last 1.5 h"),
    ("last 2 and a half hours", 150, "last 2.5 h"),
    ("within 45 minutes", 45, "last 45 min"),
    ("orders glue cpu avg 6h", 360, "last 6 h"),
    ("errors 30m", 30, "last 30 min"),
    ("over the past 3 days", 3 * 1440, "last 3 days"),
    ("past week", 7 * 1440, "last 7 days"),
])
def test_relative_windows_end_after_the_newest_minute(text: str, minutes: int, label: str) -> None:
    w = parse_window(text, NEWEST, EARLIEST)
    assert w is not None
    assert w.end == END
    assert w.start == END - timedelta(minutes=minutes)
    assert w.minutes == minutes
    assert w.label == label


def test_today_and_yesterday_follow_the_store_not_the_wall_clock() -> None:
    today = parse_window("how many errors today?", NEWEST)
    assert today is not None
    assert (today.start, today.end, today.label) == (datetime(2026, 1, 5, tzinfo=UTC), END, "today")
    yesterday = parse_window("yesterday", NEWEST)
    assert yesterday is not None
    assert (yesterday.start, yesterday.end) == (datetime(2026, 1, 4, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC))


@pytest.mark.parametrize(("text", "start", "end"), [
    ("since 02:00", datetime(2026, 1, 5, 2, 0, tzinfo=UTC), END),
    ("between 1am and 2:30am", datetime(2026, 1, 5, 1, 0, tzinfo=UTC), datetime(2026, 1, 5, 2, 30, tzinfo=UTC)),
    ("from 01:00 to 03:00 UTC", datetime(2026, 1, 5, 1, 0, tzinfo=UTC), datetime(2026, 1, 5, 3, 0, tzinfo=UTC)),
    ("since 23:00", datetime(2026, 1, 4, 23, 0, tzinfo=UTC), END),  # later than the data: the day before
    ("3 hours ago", END - timedelta(hours=3), END),
    ("on 2026-01-04", datetime(2026, 1, 4, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC)),
    ("all time", EARLIEST, END),
    ("errors this morning", datetime(2026, 1, 5, tzinfo=UTC), END),
    ("any incidents last night?", datetime(2026, 1, 4, 18, tzinfo=UTC), datetime(2026, 1, 5, 4, tzinfo=UTC)),
    ("errors so far", EARLIEST, END),
    ("2026-01-05T01:00Z/2026-01-05T02:00Z", datetime(2026, 1, 5, 1, tzinfo=UTC), datetime(2026, 1, 5, 2, tzinfo=UTC)),
])
def test_absolute_and_open_windows(text: str, start: datetime, end: datetime) -> None:
    w = parse_window(text, NEWEST, EARLIEST)
    assert w is not None
    assert (w.start, w.end) == (start, end)


@pytest.mark.parametrize("text", [
    "what is the cdc lag of customers in minutes",  # a unit, not a window
    "scale the orders glue job to 16 workers",
    "scale from 5 to 10 workers",  # bare numbers are not clock times
    "p95 latency of glue-orders-transform",
    "why is payments failing?",
])
def test_no_window_where_none_is_named(text: str) -> None:
    assert parse_window(text, NEWEST, EARLIEST) is None


def test_describe_states_the_absolute_times() -> None:
    w = parse_window("past two hours", NEWEST)
    assert w is not None
    assert w.describe() == "last 2 h (2026-01-05 02:00 → 04:00 UTC)"
    day = parse_window("last 24 h", NEWEST)
    assert day is not None
    assert day.describe() == "last 24 h (2026-01-04 04:00 → 2026-01-05 04:00 UTC)"


def test_the_phrase_round_trips_through_a_tool_argument() -> None:
    w = parse_window("what was the peak cpu in the past two hours?", NEWEST, EARLIEST)
    assert w is not None
    again = window_from_phrase(w.phrase, NEWEST, EARLIEST)
    assert (again.start, again.end, again.label) == (w.start, w.end, w.label)


def test_tool_phrases_are_validated() -> None:
    assert check_phrase(" last 2 hours ") == "last 2 hours"
    assert window_from_phrase("all", NEWEST, EARLIEST).start == EARLIEST
    with pytest.raises(ValueError, match="cannot understand the window 'fortnight'"):
        check_phrase("fortnight")


def test_a_span_names_the_ends_date_only_when_it_crosses_midnight() -> None:
    start = datetime(2026, 11, 26, 22, 2, tzinfo=UTC)
    assert span_text(start, start + timedelta(hours=1)) == "2026-11-26 22:02 → 23:02 UTC"
    assert span_text(start, start + timedelta(hours=2)) == "2026-11-26 22:02 → 2026-11-27 00:02 UTC"


@pytest.mark.parametrize("text", ["errors in the last 99999999999 hours", "cpu over the last 800000 days",
                                  "what happened 99999999999 hours ago"])
def test_an_absurdly_long_window_is_capped_at_ten_years_instead_of_overflowing(text: str) -> None:
    w = parse_window(text, NEWEST, EARLIEST)
    assert w is not None and w.end == END
    assert w.minutes == 10 * 365 * 1440


def test_a_range_running_past_the_newest_data_is_labelled_with_where_it_ends() -> None:
    w = parse_window("average cpu of orders between 3am and 1am", NEWEST, EARLIEST)
    assert (w.start, w.end) == (datetime(2026, 1, 5, 3, 0, tzinfo=UTC), END)
    assert w.label == "03:00–04:00"
