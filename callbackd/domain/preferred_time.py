"""A caller's preferred callback time, keyed in on the phone, as a pure decision.

Keys (then ``#``), read by the ``request`` route:

* ``0``             as soon as possible
* ``1HHMM``         today at HH:MM, in the campaign's calling-window zone
* ``2HHMM``         tomorrow at HH:MM
* ``3N``            in N minutes (1 to ``max_minutes``)

A wall time that does not exist (the hour skipped when clocks go forward) is refused, so
the caller is asked again rather than called at a time they did not say. An ambiguous one
(the hour repeated when clocks go back) means its first occurrence. A time in the past, or
outside the calling window (days, hours, holidays), is refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

from callbackd.domain.window import is_open
from callbackd.settings import CallingWindow

__all__ = [
    "AsSoonAsPossible",
    "PreferredAt",
    "TimeRefusal",
    "TimeRefused",
    "parse_preferred_time",
]

_KEYS = re.compile(
    r"^(?:(?P<asap>0)|(?P<day>[12])(?P<hh>[0-9]{2})(?P<mm>[0-9]{2})|3(?P<n>[0-9]{1,4}))$"
)


class TimeRefusal(StrEnum):
    NO_INPUT = "no_input"
    MALFORMED = "malformed"
    NONEXISTENT = "nonexistent"
    PAST = "past"
    CLOSED = "closed"
    TOO_FAR = "too_far"


@dataclass(frozen=True)
class AsSoonAsPossible:
    pass


@dataclass(frozen=True)
class PreferredAt:
    at: datetime
    """The instant, in UTC."""


@dataclass(frozen=True)
class TimeRefused:
    reason: TimeRefusal


TimeChoice = AsSoonAsPossible | PreferredAt | TimeRefused


def parse_preferred_time(
    keys: str, now: datetime, window: CallingWindow, *, max_minutes: int = 1440
) -> TimeChoice:
    """What the caller's *keys* mean at *now* (timezone-aware), checked against *window*."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if keys == "":
        return TimeRefused(TimeRefusal.NO_INPUT)
    match = _KEYS.match(keys)
    if match is None:
        return TimeRefused(TimeRefusal.MALFORMED)
    if match["asap"]:
        return AsSoonAsPossible()
    if match["n"] is not None:
        minutes = int(match["n"])
        if minutes < 1:
            return TimeRefused(TimeRefusal.MALFORMED)
        if minutes > max_minutes:
            return TimeRefused(TimeRefusal.TOO_FAR)
        at = (now + timedelta(minutes=minutes)).astimezone(UTC)
    else:
        hour, minute = int(match["hh"]), int(match["mm"])
        if hour > 23 or minute > 59:
            return TimeRefused(TimeRefusal.MALFORMED)
        zone = window.zone
        day = now.astimezone(zone).date() + timedelta(days=int(match["day"]) - 1)
        wall = datetime.combine(day, time(hour, minute))
        local = wall.replace(tzinfo=zone, fold=0)
        # A wall time in a spring-forward gap does not survive the round trip through UTC.
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
            return TimeRefused(TimeRefusal.NONEXISTENT)
        at = local.astimezone(UTC)
        if at <= now:
            return TimeRefused(TimeRefusal.PAST)
    if not is_open(at, window):
        return TimeRefused(TimeRefusal.CLOSED)
    return PreferredAt(at)
