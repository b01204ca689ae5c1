"""Tick computation: DST neither skips nor doubles a tick; 'latest tick' agrees with 'next'."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schedules import (
    ScheduleError,
    latest_tick_at_or_before,
    next_ticks,
    parse_zone,
    ticks_after,
    validate_cron,
)

NEW_YORK = ZoneInfo("America/New_York")


def local(ts: datetime) -> datetime:
    return ts.astimezone(NEW_YORK)


def test_spring_forward_daily_tick_in_the_gap_fires_once_an_hour_later() -> None:
    start = datetime(2026, 3, 7, 0, 0, tzinfo=NEW_YORK)
    ticks = next_ticks("30 2 * * *", NEW_YORK, start, 3)
    assert [local(t).date().day for t in ticks] == [7, 8, 9]
    assert local(ticks[1]).hour == 3 and local(ticks[1]).minute == 30  # 02:30 does not exist
    assert [local(t).hour for t in (ticks[0], ticks[2])] == [2, 2]


def test_spring_forward_hourly_neither_skips_nor_doubles() -> None:
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK) - timedelta(microseconds=1)
    end = datetime(2026, 3, 9, 0, 0, tzinfo=NEW_YORK)
    ticks = _until(ticks_after("0 * * * *", NEW_YORK, start), end)
    assert len(ticks) == len(set(ticks)) == 23  # the day has 23 hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(ticks))


def test_fall_back_repeated_hour_fires_once() -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK) - timedelta(microseconds=1)
    end = datetime(2026, 11, 2, 0, 0, tzinfo=NEW_YORK)
    hourly = _until(ticks_after("0 * * * *", NEW_YORK, start), end)
    assert len(hourly) == len(set(hourly)) == 24  # one tick per wall-clock hour
    daily = next_ticks("30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 3)
    assert [local(t).day for t in daily] == [1, 2, 3]
    assert daily[0] == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30 (EDT)


@settings(max_examples=200, deadline=None)
@given(
    expression=st.sampled_from(["0 * * * *", "30 2 * * *", "*/7 * * * *", "0 9 * * 1-5"]),
    zone=st.sampled_from(["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe"]),
    offset_minutes=st.integers(min_value=0, max_value=60 * 24 * 400),
    span_minutes=st.integers(min_value=1, max_value=60 * 24 * 3),
)
def test_latest_tick_is_the_last_of_the_ticks_in_the_window(
    expression: str, zone: str, offset_minutes: int, span_minutes: int
) -> None:
    tz = ZoneInfo(zone)
    since = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=offset_minutes)
    now = since + timedelta(minutes=span_minutes)
    expected = None
    for tick in ticks_after(expression, tz, since):
        if tick > now:
            break
        expected = tick
    assert latest_tick_at_or_before(expression, tz, since, now) == expected


def test_bad_cron_and_zone_are_refused_with_a_reason() -> None:
    with pytest.raises(ScheduleError, match="expected 5 fields"):
        validate_cron("* * * * * *", allow_seconds=False)
    assert validate_cron("*  * * * * */2", allow_seconds=True) == "* * * * * */2"
    with pytest.raises(ScheduleError, match="invalid cron"):
        validate_cron("0 25 * * *", allow_seconds=False)
    with pytest.raises(ScheduleError, match="unknown time zone"):
        parse_zone("Mars/Olympus_Mons")


def _until(ticks: Iterator[datetime], end: datetime) -> list[datetime]:
    out = []
    for tick in ticks:
        if tick >= end:
            return out
        out.append(tick)
    return out
