"""Calling hours: when a client may be rung, as pure functions of an instant.

A :class:`~callbackd.settings.CallingWindow` names allowed weekdays, a daily ``start``
(inclusive) and ``end`` (exclusive) in the window's IANA zone, and holiday dates (local).
On an allowed, non-holiday local date *d* the window is ONE contiguous stretch of real time::

    [first instant on d whose wall clock reads >= start,
     first instant on d whose wall clock reads >= end)

Why this rule rather than comparing wall-clock times: it gives the DST behaviour the
dialer needs and keeps every day's window a single interval, so ``next_open`` is simply
"the start of the first interval that has not ended yet".

* A start that does not exist (spring forward) opens at the first valid instant after it,
  i.e. the moment the clocks jump; if ``end`` is also inside the gap, that day has no window.
* An ambiguous time (fall back) means its first occurrence, for ``start`` and ``end`` alike;
  the window never reopens when the clocks repeat an hour.
* A local date that does not exist at all (Pacific/Apia, 2011-12-30) has no window.

Every instant must be timezone-aware: a naive datetime would be read in the host's local
zone, which is exactly the ambiguity these functions exist to remove.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callbackd.settings import CallingWindow

__all__ = [
    "SEARCH_HORIZON",
    "clamp_preferred",
    "is_open",
    "local_date",
    "next_day_start",
    "next_open",
]

SEARCH_HORIZON = timedelta(days=366)
"""How far ahead :func:`next_open` looks before deciding the window never opens."""

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_ONE_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


def is_open(at: datetime, window: CallingWindow) -> bool:
    """Whether a client may be rung at the instant *at*."""
    _require_aware(at, "at")
    zone = window.zone
    holidays = frozenset(window.holidays)
    today = at.astimezone(zone).date()
    # Neighbouring dates too: around odd transitions (a zone skipping or repeating the hour
    # around midnight) an instant can belong to the interval of the date next to its own.
    for day in (today - _ONE_DAY, today, today + _ONE_DAY):
        if _allowed(day, window, holidays):
            start, end = _interval(day, window, zone)
            if start <= at < end:
                return True
    return False


def next_open(at: datetime, window: CallingWindow) -> datetime:
    """The earliest instant >= *at* inside the window (*at* itself when it is open).

    Raises ``ValueError`` when the window does not open within :data:`SEARCH_HORIZON`
    (no weekdays, or holidays covering every allowed day): retrying forever would hide
    a configuration mistake.
    """
    _require_aware(at, "at")
    zone = window.zone
    holidays = frozenset(window.holidays)
    first = at.astimezone(zone).date() - _ONE_DAY
    for offset in range(SEARCH_HORIZON.days + 3):
        day = first + offset * _ONE_DAY
        if not _allowed(day, window, holidays):
            continue
        start, end = _interval(day, window, zone)
        if start < end and at < end:
            if start <= at:
                return at
            if start - at > SEARCH_HORIZON:
                break
            return start
    raise ValueError(
        f"calling window ({window.timezone}, days {','.join(window.days) or 'none'}) "
        f"does not open within {SEARCH_HORIZON.days} days of {at.isoformat()}"
    )


def clamp_preferred(preferred: datetime, window: CallingWindow, now: datetime) -> datetime:
    """When a client's preferred callback time can actually be honoured.

    A preferred time in the past means "as soon as possible", never "overdue".
    """
    _require_aware(preferred, "preferred")
    _require_aware(now, "now")
    return next_open(max(preferred, now), window)


def local_date(at: datetime, window: CallingWindow) -> date:
    """The calendar date at *at* in the window's zone (daily caps count per this date)."""
    _require_aware(at, "at")
    return at.astimezone(window.zone).date()


def next_day_start(at: datetime, window: CallingWindow) -> datetime:
    """The first instant (UTC) of the local date after *at*'s, in the window's zone.

    Not simply ``midnight + 1 day``: in some zones midnight itself is skipped on a DST day.
    """
    zone = window.zone
    return _first_instant_at_or_after(
        datetime.combine(local_date(at, window) + _ONE_DAY, time(0)), zone
    )


# --------------------------------------------------------------------------- internals


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _allowed(day: date, window: CallingWindow, holidays: frozenset[date]) -> bool:
    return _WEEKDAYS[day.weekday()] in window.days and day not in holidays


def _interval(day: date, window: CallingWindow, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The window on local date *day* as [start, end) instants in UTC (possibly empty)."""
    start = _first_instant_at_or_after(
        datetime.combine(day, window.start.replace(tzinfo=None)), zone
    )
    end = _first_instant_at_or_after(datetime.combine(day, window.end.replace(tzinfo=None)), zone)
    return start, end


def _first_instant_at_or_after(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the wall clock in *zone* reads *wall* or later.

    For an existing wall time that is its first occurrence (``fold=0``); for one inside a
    spring-forward gap it is the instant of the transition, found by bisection because
    ``zoneinfo`` does not expose transition times.
    """
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) == wall:
        return early
    # In a gap: fold=0 used the offset before the jump and fold=1 the one after, so the
    # transition lies between the two readings; the wall clock rises through it.
    late = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(early, late), max(early, late)
    while high - low > _MICROSECOND:
        middle = low + (high - low) // 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high
