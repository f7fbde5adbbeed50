"""Calling windows: weekdays, holidays, time zones, DST days, and properties of next_open."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callbackd.domain.window import (
    SEARCH_HORIZON,
    clamp_preferred,
    is_open,
    local_date,
    next_day_start,
    next_open,
)
from callbackd.settings import CallingWindow

US = timedelta(microseconds=1)
ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window(**fields: Any) -> CallingWindow:
    return CallingWindow(**fields)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def local(zone: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(zone))


UTC_OFFICE = window()  # UTC, mon-fri, 09:00-21:00
MOSCOW = window(timezone="Europe/Moscow", start=time(9), end=time(18))
NEW_YORK = window(timezone="America/New_York", start=time(9), end=time(17))

# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2024, 6, 5, 8, 59, 59, 999999), False),
        (utc(2024, 6, 5, 9, 0), True),  # start is inclusive
        (utc(2024, 6, 5, 15, 30), True),
        (utc(2024, 6, 5, 20, 59, 59, 999999), True),
        (utc(2024, 6, 5, 21, 0), False),  # end is exclusive
        (utc(2024, 6, 8, 12, 0), False),  # Saturday
        (utc(2024, 6, 9, 12, 0), False),  # Sunday
    ],
)
def test_is_open_on_an_ordinary_week(at: datetime, expected: bool) -> None:
    assert is_open(at, UTC_OFFICE) is expected


def test_next_open_is_at_itself_when_open() -> None:
    at = utc(2024, 6, 5, 12, 34, 56, 789)
    assert next_open(at, UTC_OFFICE) is at


def test_next_open_before_start_is_start_of_the_same_day() -> None:
    assert next_open(utc(2024, 6, 5, 3, 0), UTC_OFFICE) == utc(2024, 6, 5, 9, 0)


def test_next_open_after_end_is_start_of_the_next_day() -> None:
    assert next_open(utc(2024, 6, 5, 21, 0), UTC_OFFICE) == utc(2024, 6, 6, 9, 0)


def test_after_midnight_goes_to_the_same_days_start() -> None:
    assert next_open(utc(2024, 6, 6, 0, 0), UTC_OFFICE) == utc(2024, 6, 6, 9, 0)


def test_friday_evening_goes_to_monday_morning() -> None:
    assert next_open(utc(2024, 6, 7, 21, 30), UTC_OFFICE) == utc(2024, 6, 10, 9, 0)


def test_weekend_only_window() -> None:
    weekend = window(days=["sat", "sun"], start=time(10), end=time(14))
    assert next_open(utc(2024, 6, 5, 12, 0), weekend) == utc(2024, 6, 8, 10, 0)
    assert next_open(utc(2024, 6, 9, 14, 0), weekend) == utc(2024, 6, 15, 10, 0)


def test_day_names_are_case_insensitive_in_the_settings() -> None:
    assert next_open(utc(2024, 6, 5, 12), window(days=["SAT"])) == utc(2024, 6, 8, 9, 0)


def test_holiday_is_skipped() -> None:
    w = window(holidays=[date(2024, 6, 5)])
    assert not is_open(utc(2024, 6, 5, 12, 0), w)
    assert next_open(utc(2024, 6, 5, 12, 0), w) == utc(2024, 6, 6, 9, 0)


def test_holiday_run_joined_to_a_weekend() -> None:
    # Thursday and Friday off, then the weekend, then Monday off too.
    w = window(holidays=[date(2024, 5, 2), date(2024, 5, 3), date(2024, 5, 6)])
    assert next_open(utc(2024, 5, 1, 21, 0), w) == utc(2024, 5, 7, 9, 0)


def test_holidays_on_non_working_days_change_nothing() -> None:
    w = window(holidays=[date(2024, 6, 8), date(2024, 6, 9)])
    assert next_open(utc(2024, 6, 7, 22, 0), w) == utc(2024, 6, 10, 9, 0)


def test_holidays_are_local_dates_not_utc_dates() -> None:
    # 2024-06-05 22:30 UTC is already 2024-06-06 in Moscow.
    w = window(timezone="Europe/Moscow", days=ALL_DAYS, start=time(0), end=time(6))
    assert is_open(utc(2024, 6, 5, 22, 30), w)
    off = window(
        timezone="Europe/Moscow",
        days=ALL_DAYS,
        start=time(0),
        end=time(6),
        holidays=[date(2024, 6, 6)],
    )
    assert not is_open(utc(2024, 6, 5, 22, 30), off)
    assert next_open(utc(2024, 6, 5, 22, 30), off) == utc(2024, 6, 6, 21, 0)  # 00:00 on the 7th


def test_input_in_another_zone_is_the_same_instant() -> None:
    plus5 = timezone(timedelta(hours=5))
    at = datetime(2024, 6, 5, 13, 0, tzinfo=plus5)  # 08:00 UTC, 11:00 Moscow
    assert is_open(at, MOSCOW)
    assert next_open(datetime(2024, 6, 5, 10, 0, tzinfo=plus5), MOSCOW) == utc(2024, 6, 5, 6, 0)


def test_results_are_in_utc_when_they_move() -> None:
    result = next_open(local("America/New_York", 2024, 6, 5, 20, 0), NEW_YORK)
    assert result == utc(2024, 6, 6, 13, 0)
    assert result.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 6, 5, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(naive, UTC_OFFICE)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_open(naive, UTC_OFFICE)
    with pytest.raises(ValueError, match="timezone-aware"):
        clamp_preferred(naive, UTC_OFFICE, utc(2024, 6, 5))
    with pytest.raises(ValueError, match="timezone-aware"):
        clamp_preferred(utc(2024, 6, 5), UTC_OFFICE, naive)


def test_aware_times_in_the_settings_are_read_as_local_wall_times() -> None:
    w = window(timezone="Europe/Moscow", start="09:00+05:00", end="18:00+05:00")
    assert next_open(utc(2024, 6, 5, 0, 0), w) == utc(2024, 6, 5, 6, 0)


# --------------------------------------------------------------------------- giving up


def test_holidays_covering_every_allowed_day_give_up() -> None:
    mondays = [date(2024, 6, 3) + timedelta(weeks=n) for n in range(60)]
    w = window(days=["mon"], holidays=mondays)
    with pytest.raises(ValueError, match="does not open within 366 days"):
        next_open(utc(2024, 6, 1), w)
    assert not is_open(utc(2024, 6, 3, 12), w)


def test_no_days_at_all_give_up() -> None:
    # The settings refuse an empty list; a hand-built object must still not loop forever.
    w = CallingWindow.model_construct(
        timezone="UTC", days=(), start=time(9), end=time(21), holidays=()
    )
    with pytest.raises(ValueError, match="does not open"):
        next_open(utc(2024, 6, 1), w)


def test_an_opening_just_inside_the_horizon_is_found() -> None:
    first = date(2024, 6, 3)
    mondays = [first + timedelta(weeks=n) for n in range(52)]  # the 53rd Monday is free
    w = window(days=["mon"], holidays=mondays)
    at = utc(2024, 6, 2, 9, 0)
    expected = utc(2025, 6, 2, 9, 0)
    assert expected - at <= SEARCH_HORIZON
    assert next_open(at, w) == expected


# --------------------------------------------------------------------------- time zones


def test_new_york_office_hours_in_winter_and_summer() -> None:
    # EST (UTC-5) in January, EDT (UTC-4) in July.
    assert next_open(utc(2024, 1, 10, 13, 0), NEW_YORK) == utc(2024, 1, 10, 14, 0)
    assert next_open(utc(2024, 7, 10, 12, 0), NEW_YORK) == utc(2024, 7, 10, 13, 0)
    assert not is_open(utc(2024, 1, 10, 22, 0), NEW_YORK)
    assert is_open(utc(2024, 7, 10, 20, 59), NEW_YORK)


def test_moscow_has_no_dst_so_european_dst_days_are_ordinary() -> None:
    w = window(timezone="Europe/Moscow", days=ALL_DAYS, start=time(2, 30), end=time(3, 30))
    for day in (date(2024, 3, 31), date(2024, 10, 27)):  # the EU transition Sundays
        start = datetime.combine(day, time(2, 30), tzinfo=UTC) - timedelta(hours=3)
        assert next_open(datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=3), w) == (
            start
        )
        assert is_open(start + timedelta(minutes=59), w)
        assert not is_open(start + timedelta(hours=1), w)


def test_moscow_2014_fall_back_uses_the_first_occurrence() -> None:
    # 2014-10-26 02:00 MSK (+04) became 01:00 MSK (+03): 01:30 happened twice.
    w = window(timezone="Europe/Moscow", days=ALL_DAYS, start=time(1, 30), end=time(5))
    assert next_open(utc(2014, 10, 25, 20, 0), w) == utc(2014, 10, 25, 21, 30)


# --------------------------------------------------------------------------- DST


def test_new_york_spring_forward_start_in_the_gap_opens_at_the_jump() -> None:
    # 2024-03-10: 02:00 EST -> 03:00 EDT (07:00 UTC). 02:30 does not exist.
    w = window(timezone="America/New_York", days=ALL_DAYS, start=time(2, 30), end=time(4))
    assert next_open(local("America/New_York", 2024, 3, 10, 0, 0), w) == utc(2024, 3, 10, 7, 0)
    assert not is_open(utc(2024, 3, 10, 7, 0) - US, w)
    assert is_open(utc(2024, 3, 10, 7, 0), w)
    assert is_open(utc(2024, 3, 10, 7, 59), w)
    assert not is_open(utc(2024, 3, 10, 8, 0), w)  # 04:00 EDT
    # The next day is ordinary again: 02:30 EDT.
    assert next_open(utc(2024, 3, 10, 8, 0), w) == utc(2024, 3, 11, 6, 30)


def test_new_york_spring_forward_window_inside_the_gap_is_empty_that_day() -> None:
    w = window(timezone="America/New_York", days=ALL_DAYS, start=time(2, 10), end=time(2, 50))
    assert next_open(local("America/New_York", 2024, 3, 10, 0, 0), w) == utc(2024, 3, 11, 6, 10)
    assert not is_open(utc(2024, 3, 10, 7, 0), w)


def test_new_york_spring_forward_end_in_the_gap_closes_at_the_jump() -> None:
    w = window(timezone="America/New_York", days=ALL_DAYS, start=time(1), end=time(2, 30))
    assert is_open(utc(2024, 3, 10, 7, 0) - US, w)  # 01:59:59.999999 EST
    assert not is_open(utc(2024, 3, 10, 7, 0), w)  # 03:00 EDT


def test_new_york_fall_back_start_uses_the_first_occurrence() -> None:
    # 2024-11-03: 02:00 EDT -> 01:00 EST; 01:30 is 05:30 UTC first and 06:30 UTC again.
    w = window(timezone="America/New_York", days=ALL_DAYS, start=time(1, 30), end=time(4))
    assert next_open(local("America/New_York", 2024, 11, 3, 0, 0), w) == utc(2024, 11, 3, 5, 30)
    # Still open while the clocks repeat 01:00-01:30 (one contiguous window).
    assert is_open(utc(2024, 11, 3, 6, 15), w)


def test_new_york_fall_back_end_uses_the_first_occurrence_and_does_not_reopen() -> None:
    w = window(timezone="America/New_York", days=ALL_DAYS, start=time(0), end=time(1, 30))
    assert is_open(utc(2024, 11, 3, 5, 29), w)  # 01:29 EDT
    assert not is_open(utc(2024, 11, 3, 5, 30), w)  # 01:30 EDT
    assert not is_open(utc(2024, 11, 3, 6, 10), w)  # 01:10 EST, a repeated wall time
    assert next_open(utc(2024, 11, 3, 6, 10), w) == utc(2024, 11, 4, 5, 0)  # 00:00 EST


def test_berlin_spring_forward() -> None:
    # 2024-03-31: 02:00 CET -> 03:00 CEST (01:00 UTC).
    w = window(timezone="Europe/Berlin", days=ALL_DAYS, start=time(2, 15), end=time(9))
    assert next_open(utc(2024, 3, 30, 23, 0), w) == utc(2024, 3, 31, 1, 0)
    assert next_open(utc(2024, 3, 31, 7, 0), w) == utc(2024, 4, 1, 0, 15)  # 02:15 CEST


def test_berlin_fall_back() -> None:
    # 2024-10-27: 03:00 CEST -> 02:00 CET; 02:30 is 00:30 UTC first, 01:30 UTC again.
    w = window(timezone="Europe/Berlin", days=ALL_DAYS, start=time(2, 30), end=time(9))
    assert next_open(utc(2024, 10, 26, 22, 0), w) == utc(2024, 10, 27, 0, 30)
    assert next_open(utc(2024, 10, 27, 8, 0), w) == utc(2024, 10, 28, 1, 30)  # 02:30 CET


def test_office_hours_on_dst_days_keep_local_time() -> None:
    berlin = window(timezone="Europe/Berlin", days=ALL_DAYS, start=time(9), end=time(18))
    assert next_open(utc(2024, 3, 30, 20, 0), berlin) == utc(2024, 3, 31, 7, 0)  # CEST
    assert next_open(utc(2024, 10, 26, 20, 0), berlin) == utc(2024, 10, 27, 8, 0)  # CET


def test_a_skipped_calendar_day_has_no_window() -> None:
    # Samoa skipped 2011-12-30 entirely (29th 23:59:59 -10 -> 31st 00:00 +14).
    w = window(timezone="Pacific/Apia", days=ALL_DAYS, start=time(9), end=time(21))
    at = local("Pacific/Apia", 2011, 12, 29, 22, 0)
    assert next_open(at, w) == local("Pacific/Apia", 2011, 12, 31, 9, 0)


def test_next_day_start_where_midnight_is_skipped() -> None:
    # Brazil 2018-11-04: 00:00 -03 -> 01:00 -02; the day starts at 01:00 (03:00 UTC).
    w = window(timezone="America/Sao_Paulo")
    assert next_day_start(utc(2018, 11, 3, 15, 0), w) == utc(2018, 11, 4, 3, 0)
    assert next_day_start(utc(2018, 11, 4, 15, 0), w) == utc(2018, 11, 5, 2, 0)


def test_next_day_start_and_local_date_use_the_windows_zone() -> None:
    assert local_date(utc(2024, 6, 5, 22, 0), MOSCOW) == date(2024, 6, 6)
    assert next_day_start(utc(2024, 6, 5, 22, 0), MOSCOW) == utc(2024, 6, 6, 21, 0)
    assert next_day_start(utc(2024, 6, 5, 20, 0), MOSCOW) == utc(2024, 6, 5, 21, 0)
    assert next_day_start(utc(2024, 6, 5, 20, 0), UTC_OFFICE) == utc(2024, 6, 6, 0, 0)


# --------------------------------------------------------------------------- clamp_preferred


def test_clamp_preferred_in_the_past_means_now() -> None:
    now = utc(2024, 6, 5, 12, 0)
    assert clamp_preferred(utc(2024, 6, 1, 10, 0), UTC_OFFICE, now) == now


def test_clamp_preferred_in_closed_hours_moves_to_the_opening() -> None:
    now = utc(2024, 6, 5, 12, 0)
    assert clamp_preferred(utc(2024, 6, 5, 22, 0), UTC_OFFICE, now) == utc(2024, 6, 6, 9, 0)


def test_clamp_preferred_in_open_hours_is_kept() -> None:
    now = utc(2024, 6, 5, 12, 0)
    preferred = utc(2024, 6, 6, 15, 45)
    assert clamp_preferred(preferred, UTC_OFFICE, now) == preferred


def test_clamp_preferred_when_now_is_closed() -> None:
    now = utc(2024, 6, 8, 12, 0)  # Saturday
    assert clamp_preferred(utc(2024, 6, 7, 12, 0), UTC_OFFICE, now) == utc(2024, 6, 10, 9, 0)


# --------------------------------------------------------------------------- properties

ZONES = [
    "UTC",
    "Europe/Moscow",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST
    "Asia/Kolkata",
    "America/Sao_Paulo",  # DST at midnight until 2019
    "Pacific/Apia",
]
FIXED_OFFSET_ZONES = ["UTC", "Europe/Moscow", "Asia/Kolkata"]  # no transitions in 2015-2030

times = st.times(max_value=time(23, 59, 59, 999999))


@st.composite
def windows(draw: st.DrawFn, zones: list[str] = ZONES) -> CallingWindow:
    start, end = sorted(draw(st.lists(times, min_size=2, max_size=2, unique=True)))
    return window(
        timezone=draw(st.sampled_from(zones)),
        days=draw(st.lists(st.sampled_from(ALL_DAYS), min_size=1, max_size=7, unique=True)),
        start=start,
        end=end,
        holidays=draw(
            st.lists(st.dates(date(2015, 1, 1), date(2030, 12, 31)), max_size=20, unique=True)
        ),
    )


def instants(lo: datetime, hi: datetime) -> st.SearchStrategy[datetime]:
    return st.datetimes(lo.replace(tzinfo=None), hi.replace(tzinfo=None)).map(
        lambda d: d.replace(tzinfo=UTC)
    )


# DST days are where bugs live: bias towards them.
DST_DAYS = [
    utc(2024, 3, 10),
    utc(2024, 11, 3),
    utc(2024, 3, 31),
    utc(2024, 10, 27),
    utc(2024, 4, 7),
    utc(2024, 10, 6),
    utc(2018, 11, 4),
    utc(2018, 2, 18),
    utc(2011, 12, 30),
    utc(2014, 10, 26),
]
any_instant = st.one_of(
    instants(utc(2010, 1, 1), utc(2030, 12, 31)),
    st.builds(
        lambda day, offset: day + timedelta(microseconds=offset),
        st.sampled_from(DST_DAYS),
        st.integers(-86_400_000_000 * 2, 86_400_000_000 * 2),
    ),
)


@given(windows(), any_instant)
@settings(max_examples=400, deadline=None)
def test_next_open_is_open_not_earlier_and_minimal(w: CallingWindow, at: datetime) -> None:
    try:
        result = next_open(at, w)
    except ValueError:
        assume(False)
        return
    assert result >= at
    assert is_open(result, w)
    assert next_open(result, w) == result  # idempotent
    if is_open(at, w):
        assert result == at
    else:
        assert result > at
        assert not is_open(result - US, w)  # nothing open just before
        # ... nor anywhere in between (sampled).
        step = (result - at) / 7
        for n in range(7):
            assert not is_open(at + step * n, w)


@given(windows(FIXED_OFFSET_ZONES), instants(utc(2015, 1, 2), utc(2030, 12, 30)))
@settings(max_examples=300, deadline=None)
def test_is_open_matches_the_wall_clock_where_there_is_no_dst(
    w: CallingWindow, at: datetime
) -> None:
    wall = at.astimezone(w.zone)
    expected = (
        ALL_DAYS[wall.weekday()] in w.days
        and wall.date() not in w.holidays
        and w.start <= wall.time() < w.end
    )
    assert is_open(at, w) is expected


@given(windows(), any_instant, any_instant)
@settings(max_examples=200, deadline=None)
def test_next_open_is_monotonic(w: CallingWindow, a: datetime, b: datetime) -> None:
    early, late = sorted((a, b))
    try:
        assert next_open(early, w) <= next_open(late, w)
    except ValueError:
        assume(False)


@given(windows(), any_instant, any_instant)
@settings(max_examples=200, deadline=None)
def test_clamp_preferred_is_next_open_of_the_later_time(
    w: CallingWindow, preferred: datetime, now: datetime
) -> None:
    try:
        result = clamp_preferred(preferred, w, now)
    except ValueError:
        assume(False)
        return
    assert result >= now
    assert result >= preferred
    assert is_open(result, w)


@given(st.sampled_from(ZONES), any_instant)
@settings(max_examples=200, deadline=None)
def test_next_day_start_is_the_first_instant_of_the_next_local_date(
    zone: str, at: datetime
) -> None:
    w = window(timezone=zone)
    start = next_day_start(at, w)
    assert start > at
    assert local_date(start, w) > local_date(at, w)
    assert local_date(start - US, w) <= local_date(at, w)
