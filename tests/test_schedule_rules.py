"""Dayparting rules (SPEC 3, 6): pure functions, checked by table, DST and properties."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ads.rules import (
    EVERY_DAY,
    CountingPeriod,
    Window,
    counting_period,
    next_schedule_change,
    schedule_allows,
    schedule_summary,
    weekday_mask,
    weekdays_label,
)

UTC_ZONE = ZoneInfo("UTC")
FRIDAY, SATURDAY = weekday_mask([4]), weekday_mask([5])


def at(text: str) -> datetime:
    """A UTC instant; 2026-11-27 is a Friday."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NINE_TO_FIVE = [Window(EVERY_DAY, time(9), time(17))]
FRIDAY_NIGHT = [Window(FRIDAY, time(22), time(2))]
MONDAY_ALL_DAY = [Window(weekday_mask([0]), time(0), time(0))]
MONDAY_FROM_NINE = [Window(weekday_mask([0]), time(9), time(9))]


@pytest.mark.parametrize(
    ("windows", "instant", "allowed"),
    [
        (NINE_TO_FIVE, "2026-11-27T09:00", True),
        (NINE_TO_FIVE, "2026-11-27T16:59:59", True),
        (NINE_TO_FIVE, "2026-11-27T17:00", False),
        (NINE_TO_FIVE, "2026-11-27T08:59:59", False),
        (FRIDAY_NIGHT, "2026-11-27T22:00", True),
        (FRIDAY_NIGHT, "2026-11-28T01:45", True),  # Saturday 01:45
        (FRIDAY_NIGHT, "2026-11-28T02:00", False),
        (FRIDAY_NIGHT, "2026-11-27T21:45", False),
        (FRIDAY_NIGHT, "2026-11-27T01:00", False),  # Friday 01:00: Thursday is not listed
        (FRIDAY_NIGHT, "2026-11-29T01:00", False),  # Sunday: Saturday is not listed
        (MONDAY_ALL_DAY, "2026-11-30T00:00", True),
        (MONDAY_ALL_DAY, "2026-11-30T23:59:59", True),
        (MONDAY_ALL_DAY, "2026-12-01T00:00", False),
        (MONDAY_FROM_NINE, "2026-11-30T09:00", True),
        (MONDAY_FROM_NINE, "2026-12-01T08:59", True),  # 24 hours from Monday 09:00
        (MONDAY_FROM_NINE, "2026-12-01T09:00", False),
        (MONDAY_FROM_NINE, "2026-11-30T08:59", False),
        (None, "2026-11-27T03:00", True),  # no schedule: any time
        ([], "2026-11-27T12:00", False),  # a schedule without windows: never
    ],
)
def test_schedule_allows(windows: list[Window] | None, instant: str, allowed: bool) -> None:
    assert schedule_allows(windows, at(instant), UTC_ZONE) is allowed


def test_schedule_is_read_on_the_brands_wall_clock() -> None:
    # 14:00 UTC is 09:00 in New York (EST) and 23:00 in Tokyo.
    assert schedule_allows(NINE_TO_FIVE, at("2026-11-27T14:00"), ZoneInfo("America/New_York"))
    assert not schedule_allows(NINE_TO_FIVE, at("2026-11-27T14:00"), ZoneInfo("Asia/Tokyo"))


def test_summaries_read_like_people_write_them() -> None:
    windows = [
        Window(weekday_mask(range(5)), time(9), time(17)),
        Window(SATURDAY, time(22), time(2)),
        Window(weekday_mask([0, 2, 4]), time(6), time(6)),
    ]

    assert schedule_summary(windows) == (
        "Mon–Fri 09:00–17:00; Sat 22:00–02:00; Mon, Wed, Fri 06:00–06:00 (24 h)"
    )
    assert weekdays_label(EVERY_DAY) == "Every day"
    assert weekdays_label(weekday_mask([5, 6])) == "Sat–Sun"
    assert schedule_summary([]) == "never"


def test_next_change_is_the_next_opening_or_closing() -> None:
    assert next_schedule_change(NINE_TO_FIVE, at("2026-11-27T12:00"), UTC_ZONE) == at(
        "2026-11-27T17:00"
    )
    assert next_schedule_change(NINE_TO_FIVE, at("2026-11-27T17:00"), UTC_ZONE) == at(
        "2026-11-28T09:00"
    )
    assert next_schedule_change(FRIDAY_NIGHT, at("2026-11-28T02:00"), UTC_ZONE) == at(
        "2026-12-04T22:00"
    )
    assert next_schedule_change(None, at("2026-11-27T12:00"), UTC_ZONE) is None
    always = [Window(EVERY_DAY, time(0), time(0))]
    assert next_schedule_change(always, at("2026-11-27T12:00"), UTC_ZONE) is None


# A 01:00–03:00 window every day, on DST days: (zone, first open, first close) in UTC.
DST_DAYS = [
    # Spring forward 02:00 -> 03:00: the window lasts one real hour.
    ("America/New_York", "2026-03-07T12:00", "2026-03-08T06:00", "2026-03-08T07:00"),
    # Fall back 02:00 -> 01:00: 01:00-02:00 happens twice; three real hours.
    ("America/New_York", "2026-10-31T12:00", "2026-11-01T05:00", "2026-11-01T08:00"),
    # 01:00 GMT -> 02:00 BST: 01:00 never shows, so the window opens at the jump.
    ("Europe/London", "2026-03-28T12:00", "2026-03-29T01:00", "2026-03-29T02:00"),
    ("Europe/London", "2026-10-24T12:00", "2026-10-25T00:00", "2026-10-25T03:00"),
    # Lord Howe shifts by 30 minutes: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April.
    ("Australia/Lord_Howe", "2026-10-03T00:00", "2026-10-03T14:30", "2026-10-03T16:00"),
    ("Australia/Lord_Howe", "2026-04-04T00:00", "2026-04-04T14:00", "2026-04-04T16:30"),
    # +05:45 all year.
    ("Asia/Kathmandu", "2026-11-26T12:00", "2026-11-26T19:15", "2026-11-26T21:15"),
]


@pytest.mark.parametrize(("zone", "before", "opens", "closes"), DST_DAYS)
def test_window_on_dst_days_follows_the_wall_clock(
    zone: str, before: str, opens: str, closes: str
) -> None:
    windows = [Window(EVERY_DAY, time(1), time(3))]
    tz = ZoneInfo(zone)

    assert next_schedule_change(windows, at(before), tz) == at(opens)
    assert next_schedule_change(windows, at(opens), tz) == at(closes)
    assert not schedule_allows(windows, at(opens) - timedelta(seconds=1), tz)
    assert schedule_allows(windows, at(opens), tz)
    assert schedule_allows(windows, at(closes) - timedelta(seconds=1), tz)
    assert not schedule_allows(windows, at(closes), tz)


# --- Properties against a brute-force reference ---------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "America/Havana",
    "Pacific/Chatham",
    "America/St_Johns",
    "Asia/Tokyo",
]
MINUTES_PER_WEEK = 7 * 1440

quarter_hours = st.integers(0, 95).map(lambda q: time(q // 4, q % 4 * 15))
windows_st = st.lists(
    st.builds(Window, weekdays=st.integers(1, EVERY_DAY), start=quarter_hours, end=quarter_hours),
    max_size=3,
)
# Hypothesis takes naive bounds and attaches the zone itself.
instants = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001
    max_value=datetime(2035, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
zones = st.sampled_from(ZONES).map(ZoneInfo)
NEAR_EDGE = [timedelta(0), -timedelta(microseconds=1), timedelta(seconds=1), -timedelta(minutes=7)]


Case = tuple[list[Window], ZoneInfo, datetime]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Windows, a zone and an instant: half of the instants sit at or next to a window's
    start or end on some local day, where mistakes hide."""
    windows: list[Window] = draw(windows_st)
    zone: ZoneInfo = draw(zones)
    near_edge: bool = draw(st.booleans())
    if windows and near_edge:
        window = draw(st.sampled_from(windows))
        day = draw(st.dates(date(2020, 1, 1), date(2035, 12, 31)))
        local = datetime.combine(day, draw(st.sampled_from([window.start, window.end])), zone)
        local = local.replace(fold=draw(st.integers(0, 1)))
        return windows, zone, local.astimezone(UTC) + draw(st.sampled_from(NEAR_EDGE))
    return windows, zone, draw(instants)


def week_grid(windows: list[Window]) -> list[bool]:
    """Each wall-clock minute of a week (Monday 00:00 = 0): is it inside a window?"""
    grid = [False] * MINUTES_PER_WEEK
    for window in windows:
        start = window.start.hour * 60 + window.start.minute
        end = window.end.hour * 60 + window.end.minute
        length = (end - start) % 1440 or 1440
        for day in range(7):
            if window.weekdays & (1 << day):
                for minute in range(length):
                    grid[(day * 1440 + start + minute) % MINUTES_PER_WEEK] = True
    return grid


def reference_allows(grid: list[bool], instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return grid[local.weekday() * 1440 + local.hour * 60 + local.minute]


@settings(max_examples=500, deadline=None)
@given(case=cases())
def test_allows_agrees_with_a_walk_over_wall_clock_minutes(case: Case) -> None:
    windows, zone, instant = case
    grid = week_grid(windows)

    assert schedule_allows(windows, instant, zone) == reference_allows(grid, instant, zone)


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_next_change_is_the_first_minute_where_allows_flips(case: Case) -> None:
    windows, zone, instant = case
    grid = week_grid(windows)
    now = reference_allows(grid, instant, zone)
    minute = instant.replace(second=0, microsecond=0)
    expected = None
    for step in range(1, 8 * 1440 + 1):
        candidate = minute + timedelta(minutes=step)
        if reference_allows(grid, candidate, zone) != now:
            expected = candidate
            break

    assert next_schedule_change(windows, instant, zone) == expected


def test_spend_counts_in_the_later_of_its_local_day_and_the_counters_day() -> None:
    zone = ZoneInfo("America/New_York")
    moment = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # Mon 30 Nov 22:00 in New York

    assert counting_period(moment, zone, None) == CountingPeriod(
        date(2026, 11, 30), date(2026, 11, 1)
    )
    # Another writer, whose clock is ahead, already rolled the counters into 1 December.
    period = counting_period(moment, zone, date(2026, 12, 1))
    assert period == CountingPeriod(date(2026, 12, 1), date(2026, 12, 1))
    assert period.counts_today(date(2026, 12, 1))
    assert not period.counts_today(date(2026, 11, 30))
    assert period.counts_this_month(date(2026, 12, 31))
    assert not period.counts_this_month(date(2026, 11, 30))
