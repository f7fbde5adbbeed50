"""What callbackd says, per language, as pure decisions: the booked time read back to a
caller, and the plural form of a count (the reminder's "N callback requests waiting").

Asterisk speaks numbers, digits and clock times itself, in the channel's language
(``CHANNEL(language)``); these functions only choose the sounds and say-steps around them,
the way a speaker of that language puts them: English reads a clock time in 12-hour style
("today, at 2 30 PM"), Russian in 24-hour style ("сегодня, на 14 30"). A language without
rules here falls back to the English style, spoken with that language's sounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "BookingPrompts",
    "PluralForm",
    "SayClock",
    "SayDigits",
    "SayNumber",
    "SaySound",
    "Utterance",
    "base_language",
    "booked_time",
    "plural_form",
]


@dataclass(frozen=True)
class SaySound:
    """Play a sound file (a name Asterisk looks up in the channel's language)."""

    sound: str


@dataclass(frozen=True)
class SayNumber:
    """Say a whole number (Asterisk's SAY NUMBER)."""

    number: int


@dataclass(frozen=True)
class SayDigits:
    """Say digits one by one (Asterisk's SAY DIGITS)."""

    digits: str


@dataclass(frozen=True)
class SayClock:
    """Say an instant with an Asterisk SAY DATETIME format in a zone."""

    epoch: int
    fmt: str
    zone: str


Utterance = SaySound | SayNumber | SayDigits | SayClock


class PluralForm(StrEnum):
    """The plural form a count takes (the reminder's ``reminder-waiting-<form>`` prompt)."""

    ONE = "one"
    FEW = "few"
    MANY = "many"


@dataclass(frozen=True)
class BookingPrompts:
    """The sounds around a booked time ('&'-joined lists, as the settings hold them)."""

    booked_for: str
    today: str
    tomorrow: str
    soonest: str


_EN_CLOCK = "IMp"
"""Hour 1-12, minutes ("oh five", "o'clock" on the hour), AM/PM."""
_LATER_DAY = "ABd"
"""Weekday, month, day of month: a booking beyond tomorrow."""


def base_language(language: str) -> str:
    """``ru`` for ``ru``, ``ru_RU``, ``ru_RU_f``: the language without its region."""
    return language.split("_", 1)[0].lower()


def plural_form(count: int, language: str) -> PluralForm:
    """The plural form of *count* in *language* (CLDR cardinal rules, integers only).

    Russian: 1, 21, 31 ... (not 11) -> one; 2-4, 22-24 ... (not 12-14) -> few; the rest
    (0, 5-20, 25-30 ...) -> many. English and every language without rules here: 1 -> one,
    anything else -> many.
    """
    count = abs(count)
    if base_language(language) == "ru":
        if count % 10 == 1 and count % 100 != 11:
            return PluralForm.ONE
        if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
            return PluralForm.FEW
        return PluralForm.MANY
    return PluralForm.ONE if count == 1 else PluralForm.MANY


def booked_time(
    at: datetime | None, now: datetime, zone: ZoneInfo, language: str, prompts: BookingPrompts
) -> list[Utterance]:
    """What the caller hears once their callback is booked for *at* (None: as soon as
    possible): "booked for" + today / tomorrow (or the date) + the clock time, read the
    way *language* reads times, in the calling window's *zone*."""
    if at is None:
        return _sounds(prompts.soonest)
    if at.tzinfo is None or now.tzinfo is None:
        raise ValueError("at and now must be timezone-aware")
    local = at.astimezone(zone)
    days_ahead = (local.date() - now.astimezone(zone).date()).days
    said: list[Utterance] = _sounds(prompts.booked_for)
    if days_ahead == 0:
        said += _sounds(prompts.today)
    elif days_ahead == 1:
        said += _sounds(prompts.tomorrow)
    else:
        said.append(SayClock(int(at.timestamp()), _LATER_DAY, zone.key))
    if base_language(language) == "ru":
        said += _ru_clock(local.hour, local.minute)
    else:
        said.append(SayClock(int(at.timestamp()), _EN_CLOCK, zone.key))
    return said


def _ru_clock(hour: int, minute: int) -> list[Utterance]:
    """24-hour, as Russians read a time: "14 30", "9 05" ("девять ноль пять"), and on the
    hour just the hour ("14": no shipped sound for "ровно")."""
    said: list[Utterance] = [SayNumber(hour)]
    if minute >= 10:
        said.append(SayNumber(minute))
    elif minute > 0:
        said.append(SayDigits(f"0{minute}"))
    return said


def _sounds(sounds: str) -> list[Utterance]:
    return [SaySound(sound) for sound in sounds.split("&") if sound]
