"""The booked time read back and the plural form of a count, per language (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callbackd.domain.speech import (
    BookingPrompts,
    PluralForm,
    SayClock,
    SayDigits,
    SayNumber,
    SaySound,
    booked_time,
    plural_form,
)

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=MOSCOW)  # a Monday morning in Moscow
PROMPTS = BookingPrompts(
    booked_for="callbackd/ivr-booked-for",
    today="callbackd/ivr-today",
    tomorrow="callbackd/ivr-tomorrow",
    soonest="callbackd/ivr-booked-soonest",
)
BOOKED_FOR = SaySound("callbackd/ivr-booked-for")
TODAY = SaySound("callbackd/ivr-today")
TOMORROW = SaySound("callbackd/ivr-tomorrow")


@pytest.mark.parametrize(
    ("count", "form"),
    [
        (1, "one"),
        (21, "one"),
        (101, "one"),
        (1001, "one"),
        (2, "few"),
        (3, "few"),
        (4, "few"),
        (22, "few"),
        (34, "few"),
        (102, "few"),
        (0, "many"),
        (5, "many"),
        (11, "many"),
        (12, "many"),
        (13, "many"),
        (14, "many"),
        (19, "many"),
        (20, "many"),
        (25, "many"),
        (111, "many"),
        (112, "many"),
        (114, "many"),
        (9999, "many"),
    ],
)
def test_russian_plural_forms(count: int, form: str) -> None:
    assert plural_form(count, "ru") == PluralForm(form)
    assert plural_form(count, "ru_RU") == PluralForm(form)


@pytest.mark.parametrize("language", ["en", "en_GB", "de", "pt_BR"])
@pytest.mark.parametrize(("count", "form"), [(1, "one"), (0, "many"), (2, "many"), (21, "many")])
def test_english_and_unknown_languages_have_one_and_many(
    language: str, count: int, form: str
) -> None:
    assert plural_form(count, language) == PluralForm(form)


def test_soonest_is_its_own_prompt_in_every_language() -> None:
    for language in ("en", "ru", "de"):
        assert booked_time(None, NOW, MOSCOW, language, PROMPTS) == [
            SaySound("callbackd/ivr-booked-soonest")
        ]


def test_russian_reads_the_time_in_24_hour_style() -> None:
    at = datetime(2026, 12, 7, 14, 30, tzinfo=MOSCOW)
    assert booked_time(at, NOW, MOSCOW, "ru", PROMPTS) == [
        BOOKED_FOR,
        TODAY,
        SayNumber(14),
        SayNumber(30),
    ]


@pytest.mark.parametrize(
    ("hour", "minute", "clock"),
    [
        (9, 5, [SayNumber(9), SayDigits("05")]),  # "девять ноль пять"
        (14, 0, [SayNumber(14)]),  # on the hour: just the hour
        (0, 10, [SayNumber(0), SayNumber(10)]),
        (23, 59, [SayNumber(23), SayNumber(59)]),
    ],
)
def test_russian_minutes(hour: int, minute: int, clock: list[object]) -> None:
    at = datetime(2026, 12, 8, hour, minute, tzinfo=MOSCOW)
    assert booked_time(at, NOW, MOSCOW, "ru", PROMPTS) == [BOOKED_FOR, TOMORROW, *clock]


def test_english_reads_the_time_in_12_hour_style_with_asterisks_clock() -> None:
    at = datetime(2026, 12, 7, 14, 30, tzinfo=MOSCOW)
    said = booked_time(at, NOW, MOSCOW, "en", PROMPTS)
    assert said == [BOOKED_FOR, TODAY, SayClock(int(at.timestamp()), "IMp", "Europe/Moscow")]


def test_other_languages_use_the_english_style() -> None:
    at = datetime(2026, 12, 8, 10, 0, tzinfo=MOSCOW)
    said = booked_time(at, NOW, MOSCOW, "de", PROMPTS)
    assert said == [BOOKED_FOR, TOMORROW, SayClock(int(at.timestamp()), "IMp", "Europe/Moscow")]


def test_today_and_tomorrow_are_the_calling_windows_days_not_utc() -> None:
    # 23:30 in Moscow is 20:30 UTC: still "today" there; 00:30 Moscow is "tomorrow".
    late = datetime(2026, 12, 7, 23, 30, tzinfo=MOSCOW)
    after_midnight = datetime(2026, 12, 8, 0, 30, tzinfo=MOSCOW)
    now_utc = NOW.astimezone(UTC)
    assert booked_time(late, now_utc, MOSCOW, "ru", PROMPTS)[1] == TODAY
    assert booked_time(after_midnight, now_utc, MOSCOW, "ru", PROMPTS)[1] == TOMORROW


def test_a_later_day_is_said_as_a_date() -> None:
    at = datetime(2026, 12, 10, 11, 15, tzinfo=MOSCOW)
    said = booked_time(at, NOW, MOSCOW, "ru", PROMPTS)
    assert said == [
        BOOKED_FOR,
        SayClock(int(at.timestamp()), "ABd", "Europe/Moscow"),
        SayNumber(11),
        SayNumber(15),
    ]


def test_a_site_recording_list_is_played_in_order() -> None:
    prompts = BookingPrompts(
        booked_for="site/we&site/will-call", today="site/today", tomorrow="t", soonest="s"
    )
    at = datetime(2026, 12, 7, 14, 30, tzinfo=MOSCOW)
    said = booked_time(at, NOW, MOSCOW, "ru", prompts)
    assert said[:3] == [SaySound("site/we"), SaySound("site/will-call"), SaySound("site/today")]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        booked_time(datetime(2026, 12, 7, 14, 30), NOW, MOSCOW, "ru", PROMPTS)
