"""Preferred callback times keyed in on the phone: parsing, the window, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from callbackd.domain.preferred_time import (
    AsSoonAsPossible,
    PreferredAt,
    TimeRefusal,
    TimeRefused,
    parse_preferred_time,
)
from callbackd.settings import CallingWindow

BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def window(**overrides: object) -> CallingWindow:
    values: dict[str, object] = {
        "timezone": "Europe/Berlin",
        "days": EVERY_DAY,
        "start": time(8),
        "end": time(20),
    }
    values.update(overrides)
    return CallingWindow.model_validate(values)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


NOW = local(2026, 6, 10, 10, 0)  # a Wednesday


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("11430", local(2026, 6, 10, 14, 30)),
        ("20815", local(2026, 6, 11, 8, 15)),
        ("345", NOW + timedelta(minutes=45)),
        ("31", NOW + timedelta(minutes=1)),
    ],
)
def test_valid_times(keys: str, expected: datetime) -> None:
    choice = parse_preferred_time(keys, NOW, window())
    assert choice == PreferredAt(expected.astimezone(UTC))
    assert isinstance(choice, PreferredAt)
    assert choice.at.tzinfo is UTC


def test_zero_means_as_soon_as_possible() -> None:
    assert parse_preferred_time("0", NOW, window()) == AsSoonAsPossible()


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ("", TimeRefusal.NO_INPUT),
        ("9", TimeRefusal.MALFORMED),
        ("12500", TimeRefusal.MALFORMED),  # 25:00
        ("11260", TimeRefusal.MALFORMED),  # 12:60
        ("1143", TimeRefusal.MALFORMED),  # three digits of time
        ("114300", TimeRefusal.MALFORMED),
        ("30", TimeRefusal.MALFORMED),  # in 0 minutes
        ("3*5", TimeRefusal.MALFORMED),
        ("10930", TimeRefusal.PAST),  # today 09:30, it is 10:00
        ("11000", TimeRefusal.PAST),  # exactly now is not "later"
        ("12130", TimeRefusal.CLOSED),  # today 21:30, the window ends at 20:00
        ("20700", TimeRefusal.CLOSED),  # tomorrow 07:00, before the window
        ("31441", TimeRefusal.TOO_FAR),
        ("3700", TimeRefusal.CLOSED),  # in 11 h 40 min: 21:40
    ],
)
def test_refusals(keys: str, reason: TimeRefusal) -> None:
    assert parse_preferred_time(keys, NOW, window()) == TimeRefused(reason)


def test_days_and_holidays_of_the_window_count() -> None:
    weekdays_only = window(days=["mon", "tue", "wed", "thu", "fri"])
    friday = local(2026, 6, 12, 10)
    assert parse_preferred_time("21000", friday, weekdays_only) == TimeRefused(TimeRefusal.CLOSED)
    holiday = window(holidays=[date(2026, 6, 11)])
    assert parse_preferred_time("21000", NOW, holiday) == TimeRefused(TimeRefusal.CLOSED)


def test_a_wall_time_skipped_by_dst_is_refused() -> None:
    # Berlin, 2026-03-29: clocks jump from 02:00 to 03:00.
    night = window(start=time(0), end=time(23, 59))
    before = local(2026, 3, 28, 22)
    assert parse_preferred_time("20230", before, night) == TimeRefused(TimeRefusal.NONEXISTENT)
    assert parse_preferred_time("20330", before, night) == PreferredAt(
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    )


def test_an_ambiguous_wall_time_means_its_first_occurrence() -> None:
    # Berlin, 2026-10-25: 02:00-03:00 happens twice (CEST, then CET).
    night = window(start=time(0), end=time(23, 59))
    before = local(2026, 10, 24, 22)
    assert parse_preferred_time("20230", before, night) == PreferredAt(
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    )


def test_tomorrow_is_the_local_tomorrow_not_utc() -> None:
    # 00:30 in Berlin is still the previous day in UTC.
    just_after_midnight = local(2026, 6, 11, 0, 30)
    choice = parse_preferred_time("20900", just_after_midnight, window())
    assert choice == PreferredAt(local(2026, 6, 12, 9).astimezone(UTC))


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_preferred_time("0", datetime(2026, 6, 10, 10), window())
