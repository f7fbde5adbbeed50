"""Which operators are free to take a callback, and how many callbacks to release now.

The AMI adapter turns ``QueueStatus``/``QueueMember*``/``QueueCaller*``/``Agent*`` events into
the plain values below; this module only keeps and judges them. Live callers in the queue come
first: callbackd must never take an operator a waiting caller would have got, nor one the
queue is ringing for, or has just put through to, a live caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from fractions import Fraction

from callbackd.dialplan_contract import MAX_INTERFACE_LENGTH

__all__ = [
    "MAX_INTERFACE_LENGTH",
    "QUEUE_MEMBER_INTERFACE",
    "DeviceState",
    "LiveCall",
    "LiveCallStage",
    "MemberState",
    "OperatorBoard",
    "ReleaseLimiter",
    "is_queue_member_interface",
    "release_slots",
]

QUEUE_MEMBER_INTERFACE = r"[A-Za-z][A-Za-z0-9_]{0,15}/[A-Za-z0-9_.@:+-]+(?:/[A-Za-z0-9_.@:+-]+)*"
"""A queue member's interface as Asterisk names it, ringable with Dial() or an Originate:
a technology, ``/`` and a resource, which may carry ``/``-separated options --
``PJSIP/101``, ``SIP/trunk/101``, ``Local/op1@agents``, and FreePBX's
``Local/101@from-queue/n`` (whose phone is its ``StateInterface``, e.g. ``PJSIP/101`` or
``hint:101@ext-local``). The one rule for every place that takes an operator: the HTTP API,
the CLI, call now and assignment, the sticky operator of the inbound route. Its characters
are the dialplan's :data:`~callbackd.dialplan_contract.INTERFACE_CHARACTERS`, at most
:data:`~callbackd.dialplan_contract.MAX_INTERFACE_LENGTH` of them."""
_QUEUE_MEMBER_INTERFACE = re.compile(QUEUE_MEMBER_INTERFACE)

_MICROSECOND = timedelta(microseconds=1)
_NEVER = datetime.min.replace(tzinfo=UTC)


def is_queue_member_interface(value: str) -> bool:
    """Whether *value* is a queue-member interface callbackd may ring (see
    :data:`QUEUE_MEMBER_INTERFACE`), at most :data:`MAX_INTERFACE_LENGTH` characters."""
    return len(value) <= MAX_INTERFACE_LENGTH and bool(_QUEUE_MEMBER_INTERFACE.fullmatch(value))


class DeviceState(IntEnum):
    """Asterisk device state codes (``AST_DEVICE_*``), as QueueMember ``Status`` carries them."""

    UNKNOWN = 0
    NOT_INUSE = 1
    INUSE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5
    RINGING = 6
    RINGINUSE = 7
    ONHOLD = 8


# States proving that a call reached the device: a reservation has done its job once one is
# seen, and the device state itself keeps the operator busy from then on.
_REACHED = frozenset(
    {
        DeviceState.INUSE,
        DeviceState.BUSY,
        DeviceState.RINGING,
        DeviceState.RINGINUSE,
        DeviceState.ONHOLD,
    }
)


@dataclass(frozen=True)
class MemberState:
    """One queue member as AMI last described it."""

    queue: str
    interface: str
    state_interface: str
    name: str
    status: int
    """Asterisk device state code, see :class:`DeviceState`."""
    paused: bool = False
    in_call: bool = False
    last_call_end: datetime | None = None
    """When the member's last queue call ended (AMI ``LastCall``); None if never."""
    wrapup_seconds: int = 0
    """The queue's own ``wrapuptime`` for this member."""

    def __post_init__(self) -> None:
        if self.wrapup_seconds < 0:
            raise ValueError("wrapup_seconds must not be negative")
        if self.last_call_end is not None and (
            self.last_call_end.tzinfo is None or self.last_call_end.utcoffset() is None
        ):
            raise ValueError("last_call_end must be timezone-aware")

    @property
    def device(self) -> str:
        """The phone behind the member: what rings, whichever queue the call comes from."""
        return self.state_interface or self.interface


class LiveCallStage(StrEnum):
    """Where app_queue's call from a live caller to one member stands."""

    RUNG = "rung"
    """``AgentCalled``: the member's phone is ringing for the caller."""
    CONNECTED = "connected"
    """``AgentConnect``: the member answered and talks to the caller."""
    ENDED = "ended"
    """``AgentRingNoAnswer``, ``AgentDump`` or ``AgentComplete``: that call is over."""


@dataclass(frozen=True)
class LiveCall:
    """app_queue rang, connected or let go one member for one live caller (``Agent*``)."""

    queue: str
    interface: str
    caller: str
    """The live caller's Uniqueid, as in their ``QueueCaller*`` events."""
    stage: LiveCallStage


@dataclass(frozen=True)
class _LiveHold:
    """A member held for a live caller until Asterisk reports its phone busy (the device
    state then keeps it), or the call is over."""

    caller: str
    queue: str
    connected: bool


class OperatorBoard:
    """Operators per queue, live callers per queue, and callbackd's own reservations.

    A plain in-memory model owned by one task. Reservations are kept per device, not per
    queue: an operator who is a member of two queues has one phone, and callbackd ringing it
    for one queue makes it busy for the other too. So are the holds for live calls: a member
    app_queue rings for, or has put through to, a live caller (see :meth:`live_call`).
    """

    def __init__(self, *, settle_seconds: float = 2.0) -> None:
        if not settle_seconds >= 0:
            raise ValueError("settle_seconds must not be negative")
        self.settle_seconds = settle_seconds
        self._members: dict[str, dict[str, MemberState]] = {}
        self._reserved: dict[str, datetime] = {}  # device (or interface) -> until
        self._settling: dict[str, datetime] = {}  # device (or interface) -> until
        # Members app_queue rang for or connected to a live caller, whose phone Asterisk has
        # not yet reported busy: device -> the hold. No deadline: an event ends each one.
        self._live: dict[str, _LiveHold] = {}
        # Every device report is numbered in arrival order, to tell what came after a mark.
        self._reports = 0
        self._reported: dict[str, int] = {}  # device (and interface) -> its latest report
        # Live callers by id (queue -> caller id -> joined at, None if unknown). Kept by id,
        # not counted, so that every caller event is idempotent: see replace_queue.
        self._callers: dict[str, dict[str, datetime | None]] = {}
        # Callers announced without an id (Asterisk always sends one; counted for safety).
        self._unnamed: dict[str, int] = {}

    # ----------------------------------------------------------------- feeding

    def replace_queue(
        self,
        queue: str,
        members: Iterable[MemberState],
        callers_waiting: int,
        callers: Mapping[str, datetime] | None = None,
        *,
        now: datetime | None = None,
    ) -> None:
        """Take a ``QueueStatus`` snapshot as the whole truth about *queue*.

        *callers* are the waiting callers by id with their join times (``QueueEntry``: now
        minus ``Wait``); any part of *callers_waiting* beyond them counts as callers without
        an id.

        The snapshot races the event stream: events Asterisk sent before it took the
        snapshot may still be handled after it. Member events carry absolute states, so
        replaying them ends where the snapshot's time stood; caller events are applied by
        id (a join of a caller already known, a leave of one already gone, change nothing),
        so replaying them cannot count a caller twice. A counted join would, and one caller
        too many holds every callback of the queue for as long as the link stays up.

        A snapshot follows a reconnect, and the events that would end the holds for live
        calls may have been lost with the link: a hold of this queue that the snapshot does
        not confirm (the phone reported busy) settles from *now*, like the end of callbackd's
        own call; without *now* it ends at once. Agent events replayed after the snapshot
        set their holds again.
        """
        if callers_waiting < 0:
            raise ValueError("callers_waiting must not be negative")
        known: dict[str, datetime | None] = dict(callers or {})
        self._callers[queue] = known
        self._unnamed[queue] = max(0, callers_waiting - len(known))
        fresh: dict[str, MemberState] = {}
        for member in members:
            if member.queue != queue:
                raise ValueError(f"member {member.interface!r} belongs to {member.queue!r}")
            fresh[member.interface] = member
        for member in fresh.values():
            self._note_device_state(member)
        self._members[queue] = fresh
        for device, hold in list(self._live.items()):
            if hold.queue == queue:
                del self._live[device]
                if now is not None:
                    self._hold_until_fresh_report(device, now, after=self._reports)

    def update_member(self, member: MemberState) -> None:
        """A ``QueueMemberStatus``/``QueueMemberPause``/``QueueMemberAdded`` event."""
        self._members.setdefault(member.queue, {})[member.interface] = member
        self._note_device_state(member)

    def remove_member(self, queue: str, interface: str) -> None:
        """A ``QueueMemberRemoved`` event (unknown members are ignored)."""
        self._members.get(queue, {}).pop(interface, None)

    def caller_joined(
        self, queue: str, caller: str | None = None, joined_at: datetime | None = None
    ) -> None:
        """``QueueCallerJoin``. With *caller* (their id) the join is idempotent and its
        first known *joined_at* is kept, for interleaving callbacks with live callers by
        age; without an id the caller is only counted."""
        if caller is None:
            self._unnamed[queue] = self._unnamed.get(queue, 0) + 1
            return
        known = self._callers.setdefault(queue, {})
        if known.get(caller) is None:
            known[caller] = joined_at

    def caller_abandoned(self, queue: str, caller: str, *, now: datetime) -> None:
        """``QueueCallerAbandon``: the caller is no longer waiting, from now on.

        Asterisk sends QueueCallerLeave right after it, but the abandon is what the dialer
        reacts to: counting the caller out at once lets a free operator be offered the new
        callback without waiting for the next event. The leave then finds them gone.
        """
        self.caller_left(queue, caller, now=now)

    def caller_left(self, queue: str, caller: str | None = None, *, now: datetime) -> None:
        """``QueueCallerLeave`` (answered, abandoned, timed out). By id it is idempotent;
        without one it counts out a caller who joined without one, never below zero.

        The members still held for the caller's rings settle from *now*: the rings stop
        (a ringall queue's other members, a caller who gave up), but Asterisk sends the
        leave of an answered caller BEFORE the ``AgentConnect`` of the member who answered,
        and that member's phone may not be reported busy yet. Settling holds each of them
        until a report on its phone arrives, or for :attr:`settle_seconds`; the
        ``AgentConnect`` then holds the one who answered.
        """
        if caller is None:
            self._unnamed[queue] = max(0, self._unnamed.get(queue, 0) - 1)
            return
        self._callers.get(queue, {}).pop(caller, None)
        for device, hold in list(self._live.items()):
            if hold.caller == caller and not hold.connected:
                del self._live[device]
                self._hold_until_fresh_report(device, now, after=self._reports)

    def live_call(self, call: LiveCall, now: datetime) -> None:
        """app_queue rang (``AgentCalled``), connected (``AgentConnect``) or let go
        (``AgentRingNoAnswer``, ``AgentDump``, ``AgentComplete``) a member for a live caller.

        A member rung for or talking to a live caller is not free for callbacks until
        Asterisk reports its phone free again. The device state would say so, but it lags:
        Asterisk sends the caller's leave, and its member's ``AgentConnect``, before the
        report that the phone is in use, and a board that went by the stale "idle" would
        ring the phone while the operator greets the caller. So the member is held from
        ``AgentCalled`` until a report shows the phone busy (the device state keeps it from
        then on, like a reservation), or until the call is over: a ring that ends without
        such a report settles (see :meth:`settle`), so a member who did not answer is free
        again as soon as a report on its phone arrives, or after :attr:`settle_seconds`.
        """
        device = self._device_of(call.queue, call.interface)
        hold = self._live.get(device)
        if call.stage is LiveCallStage.RUNG:
            self._live[device] = _LiveHold(call.caller, call.queue, connected=False)
        elif call.stage is LiveCallStage.CONNECTED:
            member = self._members.get(call.queue, {}).get(call.interface)
            reported_busy = member is not None and (member.in_call or member.status in _REACHED)
            if hold is not None or not reported_busy:
                self._live[device] = _LiveHold(call.caller, call.queue, connected=True)
        elif hold is not None and hold.caller == call.caller:
            del self._live[device]
            self._hold_until_fresh_report(device, now, after=self._reports)

    def oldest_caller_joined(self, queue: str) -> datetime | None:
        """When the longest-waiting live caller of *queue* joined; None if none is known."""
        times = [t for t in self._callers.get(queue, {}).values() if t is not None]
        return min(times, default=None)

    # ----------------------------------------------------------------- reservations

    def reserve(self, queue: str, interface: str, until: datetime) -> None:
        """callbackd has just originated to this operator: hold them until the device state
        shows the call (ringing/in use) or until *until*, whichever comes first.

        Without it, the few hundred milliseconds before the device state changes would let
        the next tick pick the same operator again.
        """
        self._reserved[self._device_of(queue, interface)] = until

    def release(self, queue: str, interface: str) -> None:
        """Drop a reservation early (the Originate was never sent)."""
        self._reserved.pop(self._device_of(queue, interface), None)
        self._reserved.pop(interface, None)

    def report_mark(self) -> int:
        """A mark in the stream of device reports, for :meth:`settle`'s ``after``."""
        return self._reports

    def settle(self, queue: str, interface: str, now: datetime, *, after: int) -> None:
        """callbackd's own call to this operator ended when the reports had reached mark
        *after*: drop its reservation, and unless a report on the operator's device has
        arrived since, hold the operator until one does, or for :attr:`settle_seconds`.

        Asterisk reports device states after the fact, through a queue that lags under
        load: when our call ends, what the board knows may still be the state from before
        it rang. Meanwhile the phone may have taken another call (a direct call, a queue
        call) whose state change is on its way. Offering the operator on the stale state
        would ring a phone that is in use. AMI delivers events in the order Asterisk
        produced them, so a report that arrives after the event telling us the call ended
        is the first trustworthy word on the operator.
        """
        self.release(queue, interface)
        self._hold_until_fresh_report(
            self._device_of(queue, interface), now, after=after, interface=interface
        )

    # ----------------------------------------------------------------- queries

    def free_members(
        self, queue: str, now: datetime, *, wrapup_seconds: int | None = None
    ) -> list[MemberState]:
        """Members of *queue* who may be rung now, longest-idle first.

        Free means: device idle (``NOT_INUSE``, or ``UNKNOWN`` -- some channel drivers never
        report idle -- when not in a call), not paused, not in a queue call, not reserved, and
        past the wrap-up time after their last call (the larger of the member's and
        *wrapup_seconds*, the campaign's). Longest-idle first is how a queue with
        ``strategy=leastrecent`` would choose, so callbacks spread the load the same way.
        """
        campaign_wrapup = wrapup_seconds or 0
        free = [
            member
            for member in self._members.get(queue, {}).values()
            if self._is_free(member, now, campaign_wrapup)
        ]
        free.sort(
            key=lambda m: (m.last_call_end is not None, m.last_call_end or _NEVER, m.interface)
        )
        return free

    def next_hold_end(self, now: datetime) -> datetime | None:
        """When the next reservation or settling hold still running at *now* runs out (a
        waiting dialer looks again then), or None."""
        ends = [until for holds in (self._reserved, self._settling) for until in holds.values()]
        return min((until for until in ends if until > now), default=None)

    def callers_waiting(self, queue: str) -> int:
        return len(self._callers.get(queue, {})) + self._unnamed.get(queue, 0)

    def members(self, queue: str) -> list[MemberState]:
        """Every known member of *queue*, free or not (status displays, tests)."""
        return list(self._members.get(queue, {}).values())

    # ----------------------------------------------------------------- internals

    def _device_of(self, queue: str, interface: str) -> str:
        member = self._members.get(queue, {}).get(interface)
        return member.device if member is not None else interface

    def _hold_until_fresh_report(
        self, device: str, now: datetime, *, after: int, interface: str | None = None
    ) -> None:
        """Unless a report on *device* (or *interface*) came after mark *after*, hold it
        until one does, or for :attr:`settle_seconds`."""
        reported = self._reported.get(device, 0)
        if interface is not None:
            reported = max(reported, self._reported.get(interface, 0))
        if reported > after:
            return
        self._settling[device] = now + timedelta(seconds=self.settle_seconds)

    def _note_device_state(self, member: MemberState) -> None:
        self._reports += 1
        self._reported[member.device] = self._reported[member.interface] = self._reports
        self._settling.pop(member.device, None)  # any fresh report settles the operator
        self._settling.pop(member.interface, None)
        if member.in_call or member.status in _REACHED:
            for holds in (self._reserved, self._live):
                holds.pop(member.device, None)
                holds.pop(member.interface, None)

    def _is_reserved(self, member: MemberState, now: datetime) -> bool:
        if member.device in self._live or member.interface in self._live:
            return True
        return any(
            now < until
            for holds in (self._reserved, self._settling)
            for key in {member.device, member.interface}
            if (until := holds.get(key)) is not None
        )

    def _is_free(self, member: MemberState, now: datetime, campaign_wrapup: int) -> bool:
        idle = member.status == DeviceState.NOT_INUSE or (
            member.status == DeviceState.UNKNOWN and not member.in_call
        )
        if not idle or member.paused or member.in_call or self._is_reserved(member, now):
            return False
        if member.last_call_end is None:
            return True
        wrapup = timedelta(seconds=max(member.wrapup_seconds, campaign_wrapup))
        return now >= member.last_call_end + wrapup


def release_slots(
    free_operators: int,
    callers_waiting: int,
    *,
    interleave: bool = False,
    oldest_callback_joined: datetime | None = None,
    oldest_caller_joined: datetime | None = None,
) -> int:
    """How many callbacks may be started now in one queue.

    Live callers first: every waiting caller is owed a free operator, so callbacks get
    ``max(0, free - waiting)``.

    With *interleave*, the line is ordered by when people first joined the queue: if the
    oldest callback's caller joined before every caller now waiting, that callback is at the
    head of the line and gets ONE operator even when the waiting callers would take them
    all. Only one, because nothing is known about where the next callback stands; once it
    has been started (and its operator reserved) the next call decides again with the
    next-oldest callback, so callbacks and live callers alternate by age. Equal join
    times go to the live caller, and unknown join times never jump the line.
    """
    if free_operators < 0 or callers_waiting < 0:
        raise ValueError("free_operators and callers_waiting must not be negative")
    slots = max(0, free_operators - callers_waiting)
    if (
        interleave
        and slots == 0
        and free_operators > 0
        and oldest_callback_joined is not None
        and oldest_caller_joined is not None
        and oldest_callback_joined < oldest_caller_joined
    ):
        return 1
    return slots


class ReleaseLimiter:
    """Token bucket: at most *capacity* releases at once, refilled at *per_minute*.

    After an outage every overdue request is due at the same moment; releasing them all
    would ring every operator at once and starve the live queue. Time is passed in, so the
    bucket is exact and testable; arithmetic is done in fractions of a token per
    microsecond, so :meth:`next_available` is a time at which :meth:`take` succeeds.
    """

    def __init__(self, capacity: int, per_minute: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not per_minute > 0 or not math.isfinite(per_minute):
            raise ValueError("per_minute must be a positive number")
        self.capacity = capacity
        self.per_minute = per_minute
        self._rate = Fraction(per_minute) / 60_000_000  # tokens per microsecond
        self._tokens = Fraction(capacity)
        self._stamp: datetime | None = None

    def take(self, now: datetime) -> bool:
        """Use one token if there is one. A clock stepping backwards refills nothing."""
        self._tokens = self._level(now)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def available(self, now: datetime) -> float:
        """Tokens in the bucket at *now* (for metrics; does not take any)."""
        return float(self._level(now))

    def next_available(self, now: datetime) -> datetime:
        """The earliest instant >= *now* at which :meth:`take` will succeed."""
        base = now if self._stamp is None or now >= self._stamp else self._stamp
        missing = 1 - self._level(base)
        if missing <= 0:
            return now
        return base + math.ceil(missing / self._rate) * _MICROSECOND

    def _level(self, now: datetime) -> Fraction:
        if self._stamp is None or now <= self._stamp:
            return self._tokens
        elapsed = (now - self._stamp) // _MICROSECOND
        return min(Fraction(self.capacity), self._tokens + elapsed * self._rate)
