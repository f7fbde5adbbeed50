"""The AGI routes: thin adapters between an :class:`AgiCall` and the services.

One implementation for both transports: the daemon's FastAGI server and the classic
``callbackd-agi`` script build :class:`RouteDeps` their own way (a pool and the live
operator board, or one connection and Asterisk's own view of the queue) and get the same
handlers from :func:`build_routes`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from callbackd import dialplan_contract as contract
from callbackd.agi.server import Route
from callbackd.agi.session import ANY_KEY, AgiCall
from callbackd.domain.inbound import safe_interface, sticky_available
from callbackd.domain.numbers import Accepted, classify_caller, dial_digits
from callbackd.domain.operators import DeviceState, MemberState, OperatorBoard
from callbackd.domain.preferred_time import (
    AsSoonAsPossible,
    PreferredAt,
    TimeRefused,
    parse_preferred_time,
)
from callbackd.domain.speech import (
    BookingPrompts,
    SayDigits,
    SayNumber,
    SaySound,
    Utterance,
    booked_time,
)
from callbackd.domain.window import clamp_preferred
from callbackd.services.inbound import BoardPresence, InboundService, Presence
from callbackd.services.ivr_requests import IvrRequest, store_ivr_request
from callbackd.settings import AgiSettings, Campaign

__all__ = [
    "AsteriskPresence",
    "BoardPresenceFactory",
    "Database",
    "PoolDatabase",
    "RouteDeps",
    "SingleConnection",
    "build_routes",
]

_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SILENCE = "silence/1"
"""A core sound: the rest of an answer begun during an intro sound is read after it."""


class Database(Protocol):
    def connection(self) -> AbstractAsyncContextManager[Any]: ...


class PoolDatabase:
    """The daemon's pool: one pooled connection per use."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def connection(self) -> AbstractAsyncContextManager[Any]:
        acquired: AbstractAsyncContextManager[Any] = self._pool.acquire()
        return acquired


class SingleConnection:
    """The classic script's one short-lived connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @asynccontextmanager
    async def _use(self) -> AsyncIterator[Any]:
        yield self._conn

    def connection(self) -> AbstractAsyncContextManager[Any]:
        return self._use()


class AsteriskPresence:
    """Asterisk's own view of a queue member, asked over the call (classic AGI has no AMI
    board): ``QUEUE_MEMBER(<queue>,paused|penalty,<interface>)`` and ``DEVICE_STATE``."""

    def __init__(self, call: AgiCall) -> None:
        self._call = call

    async def available(self, queue: str, interface: str) -> bool:
        if not _QUEUE.fullmatch(queue) or not safe_interface(interface):
            return False
        penalty = await self._call.evaluate(f"${{QUEUE_MEMBER({queue},penalty,{interface})}}")
        if penalty is None or not penalty.lstrip("-").isdigit() or int(penalty) < 0:
            return False  # not a member of the queue: logged out
        paused = await self._call.evaluate(f"${{QUEUE_MEMBER({queue},paused,{interface})}}")
        state = await self._call.evaluate(f"${{DEVICE_STATE({interface})}}")
        return sticky_available(
            MemberState(
                queue=queue,
                interface=interface,
                state_interface=interface,
                name=interface,
                status=_DEVICE_STATES.get(state or "", DeviceState.UNKNOWN),
                paused=paused == "1",
            )
        )


_DEVICE_STATES = {
    "UNKNOWN": DeviceState.UNKNOWN,
    "NOT_INUSE": DeviceState.NOT_INUSE,
    "INUSE": DeviceState.INUSE,
    "BUSY": DeviceState.BUSY,
    "INVALID": DeviceState.INVALID,
    "UNAVAILABLE": DeviceState.UNAVAILABLE,
    "RINGING": DeviceState.RINGING,
    "RINGINUSE": DeviceState.RINGINUSE,
    "ONHOLD": DeviceState.ONHOLD,
}


class BoardPresenceFactory:
    """The daemon's presence: the live boards, the same for every call."""

    def __init__(self, boards: Mapping[str, OperatorBoard], pbx: str) -> None:
        self._presence = BoardPresence(boards, pbx)

    def __call__(self, call: AgiCall) -> Presence:
        return self._presence


@dataclass(frozen=True)
class RouteDeps:
    database: Database
    inbound: InboundService
    agi: AgiSettings
    campaigns: Mapping[str, tuple[str, Campaign]]
    """Queue name -> (campaign name, campaign)."""
    presence: Callable[[AgiCall], Presence]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def campaigns_by_queue(campaigns: Mapping[str, Campaign]) -> dict[str, tuple[str, Campaign]]:
    return {c.queue or name: (name, c) for name, c in campaigns.items()}


def build_routes(deps: RouteDeps) -> dict[str, Route]:
    async def inbound(call: AgiCall) -> None:
        await inbound_route(call, deps)

    async def request(call: AgiCall) -> None:
        await request_route(call, deps)

    return {contract.ROUTE_INBOUND: inbound, contract.ROUTE_REQUEST: request}


# --------------------------------------------------------------------------- inbound


async def inbound_route(call: AgiCall, deps: RouteDeps) -> None:
    """Look the caller up; set the inbound variables (the dialplan set safe defaults)."""
    queue = call.argument(2)
    if not _QUEUE.fullmatch(queue):
        raise ValueError(f"inbound: bad queue argument {queue[:40]!r}")
    found = deps.campaigns.get(queue)
    if found is not None and "language" in found[1].model_fields_set:
        # The queue's announcements (the callback offer) and the IVR speak the campaign's
        # language, when the site chose one; else the channel keeps the language its own
        # inbound route set (e.g. a FreePBX inbound route's Language).
        await call.set_language(found[1].language)
    async with deps.database.connection() as conn:
        decision = await deps.inbound.decide(conn, call.caller_number, queue, deps.presence(call))
    # One round trip for all six (the dialplan checks each value again).
    await call.set_variables(
        {
            contract.VAR_STICKY_MEMBER: decision.sticky_member,
            contract.VAR_STICKY_RING: decision.sticky_ring_seconds or deps.agi.sticky_ring_seconds,
            contract.VAR_CATEGORY: decision.category,
            contract.VAR_PRIORITY: decision.priority,
            contract.VAR_SKIP_QUEUE: int(decision.skip_queue),
            contract.VAR_PENDING: int(decision.pending),
        }
    )
    # Debug, not info: a lookup changes no state, and it runs for every inbound call.
    structlog.get_logger("callbackd.agi.inbound").debug(
        "inbound caller routed",
        queue=queue,
        sticky_member=decision.sticky_member or None,
        category=decision.category or None,
        priority=decision.priority,
        skip_queue=decision.skip_queue,
        pending=decision.pending,
    )


# --------------------------------------------------------------------------- request


async def request_route(call: AgiCall, deps: RouteDeps) -> None:
    """The callback-request IVR, in the campaign's language; writes nothing until the
    caller answered every question."""
    log = structlog.get_logger("callbackd.agi.request")
    queue = call.argument(2)
    found = deps.campaigns.get(queue) if _QUEUE.fullmatch(queue) else None
    if found is None:
        log.warning("callback request for a queue without a campaign", queue=queue[:64])
        await call.set_variable(contract.VAR_REQUEST_STATUS, contract.RequestStatus.NO_CAMPAIGN)
        return
    campaign_name, campaign = found
    await call.set_language(campaign.language)  # before anything is played
    await call.answer()
    number = await _ask_number(call, deps)
    if number is None:
        log.info("callback request without a number to call", queue=queue)
        await call.set_variable(contract.VAR_REQUEST_STATUS, contract.RequestStatus.NO_NUMBER)
        return
    preferred = await _ask_time(call, deps, campaign) if deps.agi.ivr_ask_time else None
    now = deps.clock()
    due_at = clamp_preferred(preferred or now, campaign.window, now)
    request = IvrRequest(
        campaign=campaign_name,
        number=number,
        priority=campaign.priority,
        due_at=due_at,
        preferred_at=preferred,
        pbx=deps.inbound.pbx,
        queue=queue,
        caller_name=call.env.get("agi_calleridname") or None,
        uniqueid=call.uniqueid or None,
        linkedid=None,
    )
    async with deps.database.connection() as conn:
        stored = await store_ivr_request(conn, request)
    if stored is None:
        log.error("campaign missing in the database", campaign=campaign_name)
        await call.set_variable(contract.VAR_REQUEST_STATUS, contract.RequestStatus.NO_CAMPAIGN)
        return
    request_id, created = stored
    log.info(
        "callback request stored" if created else "open callback request re-timed",
        request_id=request_id,
        campaign=campaign_name,
        number=number,
        preferred_at=preferred.isoformat() if preferred else None,
        due_at=due_at.isoformat(),
    )
    await call.set_variable(contract.VAR_REQUEST_ID, request_id)
    await call.set_variable(contract.VAR_REQUEST_STATUS, contract.RequestStatus.STORED)
    if deps.agi.ivr_read_back:
        agi = deps.agi
        booking = booked_time(
            preferred,
            now,
            campaign.window.zone,
            campaign.language,
            BookingPrompts(
                booked_for=agi.prompt_booked_for,
                today=agi.prompt_today,
                tomorrow=agi.prompt_tomorrow,
                soonest=agi.prompt_booked_soonest,
            ),
        )
        await _say(call, booking)
    await _say(call, _sounds(deps.agi.prompt_done))


async def _ask_number(call: AgiCall, deps: RouteDeps) -> str | None:
    """Confirm the caller's number (1) or take another one (digits, #).

    After the attempts run out: the caller's own number when the network gave a valid one
    (they asked to be called back), else None.
    """
    agi = deps.agi
    own = deps.inbound.caller(call.caller_number)
    candidate = own
    before: list[Utterance] = []
    for _ in range(agi.ivr_attempts):
        if candidate is not None and agi.ivr_read_back:
            before += [*_sounds(agi.prompt_number), SayDigits(dial_digits(candidate))]
        keys = await _ask(call, [*before, *_sounds(agi.prompt_confirm_number)], agi, 16)
        if keys == contract.QUEUE_EXIT_KEY and candidate is not None:
            return candidate
        before = []
        if len(keys) > 1:
            verdict = classify_caller(keys, deps.inbound.policy)
            if isinstance(verdict, Accepted):
                candidate = verdict.e164
                continue
        before = _sounds(agi.prompt_invalid)
    return own


async def _ask_time(call: AgiCall, deps: RouteDeps, campaign: Campaign) -> datetime | None:
    """The preferred time; None means as soon as possible (also the default)."""
    agi = deps.agi
    before: list[Utterance] = []
    for _ in range(agi.ivr_attempts):
        keys = await _ask(call, [*before, *_sounds(agi.prompt_time)], agi, 6)
        choice = parse_preferred_time(
            keys, deps.clock(), campaign.window, max_minutes=agi.ivr_max_minutes
        )
        if isinstance(choice, AsSoonAsPossible):
            return None
        if isinstance(choice, PreferredAt):
            return choice.at
        assert isinstance(choice, TimeRefused)
        structlog.get_logger("callbackd.agi.request").info(
            "preferred time refused", reason=str(choice.reason)
        )
        before = _sounds(agi.prompt_invalid)
    return None


async def _ask(call: AgiCall, question: list[Utterance], agi: AgiSettings, max_digits: int) -> str:
    """Say *question* and read the caller's keys (``#`` ends them).

    A key pressed at any moment counts, also during the sounds before the last one (an
    "invalid" prompt, the number read back): it interrupts them and starts the answer,
    whose other keys are then read after a short silence. The last sound is read with
    GET DATA, which takes keys while it plays.
    """
    *intro, last = question
    assert isinstance(last, SaySound)
    timeout_ms = agi.ivr_digit_timeout_seconds * 1000
    for utterance in intro:
        key = await _say_one(call, utterance, ANY_KEY)
        if key == "#":
            return ""  # pound with nothing before it: no answer
        if key:
            rest = await call.get_data(_SILENCE, timeout_ms=timeout_ms, max_digits=max_digits - 1)
            return key + rest
    return await call.get_data(last.sound, timeout_ms=timeout_ms, max_digits=max_digits)


async def _say(call: AgiCall, utterances: list[Utterance]) -> None:
    for utterance in utterances:
        await _say_one(call, utterance, "")


async def _say_one(call: AgiCall, utterance: Utterance, escape_digits: str) -> str:
    """Say one step; the key that interrupted it (one of *escape_digits*), or ""."""
    if isinstance(utterance, SaySound):
        return await call.stream_file(utterance.sound, escape_digits)
    if isinstance(utterance, SayNumber):
        return await call.say_number(utterance.number, escape_digits)
    if isinstance(utterance, SayDigits):
        return await call.say_digits(utterance.digits, escape_digits)
    await call.say_datetime(utterance.epoch, utterance.fmt, utterance.zone)
    return ""


def _sounds(sounds: str) -> list[Utterance]:
    return [SaySound(sound) for sound in sounds.split("&") if sound]
