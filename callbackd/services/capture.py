"""Abandon capture: every caller who gave up becomes (or joins) one callback request.

Writes are idempotent per (PBX, Uniqueid), so a live event and its queue_log replay never
make two rows. While Postgres is unreachable, abandons wait in a bounded buffer and are
written, in order, when it returns; an overflow is logged number by number and counted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import asyncpg
import structlog

from callbackd.db.models import CallbackRequest
from callbackd.db.sql import load_queries
from callbackd.domain.capture import (
    AgentConnected,
    CampaignRef,
    QueueAbandon,
    Skip,
    Store,
    judge_abandon,
)
from callbackd.domain.numbers import Accepted, CallerVerdicts, NumberPolicy

# Errors that mean "the database is not there right now", as opposed to a bad statement.
DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class CaptureOutcome(StrEnum):
    CREATED = "created"
    MERGED = "merged"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    NOT_OURS = "not_ours"
    BUFFERED = "buffered"
    LOST = "lost"


@dataclass
class CaptureStats:
    created: int = 0
    merged: int = 0
    duplicates: int = 0
    skipped: int = 0
    buffered: int = 0
    lost: int = 0
    resolved_inbound: int = 0


@dataclass(frozen=True)
class ClaimOffer:
    """A free operator the dialer lets capture claim for, in the abandon's own statement."""

    campaign_id: int
    operator: str
    attempt_id: uuid.UUID
    instance: str

    @property
    def operator_channel_id(self) -> str:
        return f"callbackd-{self.attempt_id}"

    @property
    def client_channel_id(self) -> str:
        return f"{self.operator_channel_id}-client"


class AbandonClaimer(Protocol):
    """The dialer, as capture sees it (the abandon fast lane)."""

    def offer_operator(self, campaign_id: int) -> ClaimOffer | None: ...

    async def take_offer(self, offer: ClaimOffer, result: Mapping[str, Any] | None) -> None: ...


class AbandonCapture:
    """Turns QueueAbandon / AgentConnected events into request rows."""

    def __init__(
        self,
        pool: Any,
        campaigns: Mapping[tuple[str, str], CampaignRef],
        numbers: NumberPolicy,
        *,
        resolve_in_all_campaigns: bool = False,
        buffer_limit: int = 10_000,
        write_timeout: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._campaigns = dict(campaigns)
        self._verdicts = CallerVerdicts(numbers)
        self._resolve_everywhere = resolve_in_all_campaigns
        self._buffer: deque[QueueAbandon] = deque()
        self._buffer_limit = buffer_limit
        self._write_timeout = write_timeout
        self._buffer_ready = asyncio.Event()
        self._clock = clock
        self._queries = load_queries("capture")
        self.stats = CaptureStats()
        self._log = structlog.get_logger("callbackd.capture")
        self.on_stored: Callable[[], None] | None = None
        """Called once a new request is committed: the dialer looks at once (no NOTIFY hop)."""
        self.on_events_written: Callable[[], None] | None = None
        """Called once a new request is committed: its outbox event was written without a
        NOTIFY (migration 0014), so the daemon wakes its own outbox worker, after the call."""
        self.claimer: AbandonClaimer | None = None
        """When set, an abandon stored while an operator is free is claimed for that operator
        in the same round trip, and the dialer places the call (reaction path (b))."""

    # -- health ----------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def healthy(self) -> bool:
        return not self._buffer

    @property
    def verdicts(self) -> CallerVerdicts:
        """The number policy's verdicts, by caller id, of the callers judged lately."""
        return self._verdicts

    def campaign_for(self, pbx: str, queue: str) -> CampaignRef | None:
        return self._campaigns.get((pbx, queue))

    # -- callers waiting --------------------------------------------------------------------
    def on_caller_joined(self, pbx: str, queue: str, caller_number: str | None) -> None:
        """A caller is waiting in one of our queues: judge their number now, so that if they
        give up, the abandon finds its verdict ready (no parse on the way to the callback)."""
        if caller_number is not None and self.campaign_for(pbx, queue) is not None:
            self._verdicts(caller_number)

    # -- abandons --------------------------------------------------------------------------
    async def on_abandon(self, abandon: QueueAbandon) -> CaptureOutcome:
        campaign = self.campaign_for(abandon.pbx, abandon.queue)
        if campaign is None:
            return CaptureOutcome.NOT_OURS
        if self._buffer:  # keep order behind what is already waiting for the database
            return self._buffer_abandon(abandon)
        try:
            return await self._record(abandon, campaign)
        except DATABASE_DOWN as err:
            self._log.error(
                "database unavailable; abandon kept in memory",
                error=type(err).__name__,
                pbx=abandon.pbx,
                queue=abandon.queue,
                uniqueid=abandon.uniqueid,
            )
            return self._buffer_abandon(abandon)

    async def _record(self, abandon: QueueAbandon, campaign: CampaignRef) -> CaptureOutcome:
        now = self._clock()
        verdict = judge_abandon(abandon, campaign, self._verdicts, now=now)
        q = self._queries
        log = self._log.bind(
            pbx=abandon.pbx,
            queue=abandon.queue,
            campaign=campaign.name,
            uniqueid=abandon.uniqueid,
            replayed=abandon.replayed,
        )
        if isinstance(verdict, Skip):
            # One statement, no transaction around it: the claim of (pbx, uniqueid) is all.
            async with self._pool.acquire(timeout=self._write_timeout) as conn:
                first_sighting = await conn.fetchval(
                    q["claim_abandon"],
                    abandon.pbx,
                    abandon.uniqueid,
                    abandon.queue,
                    None,
                    verdict.reason,
                    abandon.abandoned_at,
                    timeout=self._write_timeout,
                )
            if first_sighting is None:
                self.stats.duplicates += 1
                return CaptureOutcome.DUPLICATE
            self.stats.skipped += 1
            log.info(
                "abandon not stored",
                reason=verdict.reason,
                number=abandon.caller_number,
                hold_seconds=abandon.hold_seconds,
            )
            return CaptureOutcome.SKIPPED
        # Claim, upsert and link in ONE round trip (a database function, migration 0010);
        # with an operator free, the dialer's claim too (migration 0011).
        offer = self.claimer.offer_operator(campaign.id) if self.claimer is not None else None
        try:
            stored = await self._store(abandon, campaign, verdict, offer)
        except BaseException:
            if offer is not None:
                await self._settle(offer, None)
            raise
        if offer is not None:
            await self._settle(offer, stored)
        if stored is None:
            self.stats.duplicates += 1
            return CaptureOutcome.DUPLICATE
        created = bool(stored["created"])
        request = CallbackRequest.model_validate(stored["request"])
        if created:
            self.stats.created += 1
            if self.on_stored is not None:
                self.on_stored()
                # The woken dialer sends its claim first; this line's rendering follows.
                await asyncio.sleep(0)
            if self.on_events_written is not None:
                self.on_events_written()
            log.info(
                "callback request created",
                request_id=request.id,
                status=str(request.status),
                number=request.number,
                hold_seconds=abandon.hold_seconds,
                due_at=request.due_at.isoformat(),
                priority=request.priority,
            )
            return CaptureOutcome.CREATED
        self.stats.merged += 1
        log.info(
            "callback request merged",
            request_id=request.id,
            status=str(request.status),
            number=request.number,
            abandon_count=request.abandon_count,
        )
        return CaptureOutcome.MERGED

    async def known_uniqueids(self, pbx: str, uniqueids: Sequence[str]) -> set[str]:
        """Which of these abandons were seen already, stored or not (one query instead of
        one capture statement per replayed line)."""
        if not uniqueids:
            return set()
        timeout = self._write_timeout
        async with self._pool.acquire(timeout=timeout) as conn:
            rows = await conn.fetch(
                self._queries["known_abandons"], pbx, list(uniqueids), timeout=timeout
            )
        return {row["uniqueid"] for row in rows}

    async def _store(
        self,
        abandon: QueueAbandon,
        campaign: CampaignRef,
        verdict: Store,
        offer: ClaimOffer | None,
    ) -> dict[str, Any] | None:
        """One statement: the request row (JSON), "created", and with an offer "claim" or
        "claim_refused"; None for a duplicate sighting."""
        arguments: list[Any] = [
            abandon.pbx,
            abandon.uniqueid,
            abandon.queue,
            campaign.id,
            verdict.number,
            campaign.priority,
            verdict.due_at,
            abandon.joined_at,
            abandon.abandoned_at,
            abandon.caller_name,
            abandon.position,
            abandon.original_position,
            abandon.hold_seconds,
            abandon.linkedid,
        ]
        query = self._queries["capture_abandon"]
        if offer is not None:
            query = self._queries["capture_and_claim"]
            arguments += [
                offer.attempt_id,
                offer.operator,
                offer.operator_channel_id,
                offer.client_channel_id,
                offer.instance,
            ]
        async with self._pool.acquire(timeout=self._write_timeout) as conn:
            stored = await conn.fetchrow(query, *arguments, timeout=self._write_timeout)
        return None if stored is None else dict(stored)

    async def _settle(self, offer: ClaimOffer, stored: Mapping[str, Any] | None) -> None:
        """Hand the claim (or None: the statement failed) to the dialer, which places the call
        or gives the operator back. A claim lost on the way is adopted by its heartbeat."""
        assert self.claimer is not None
        await self.claimer.take_offer(offer, stored)

    # -- the caller got through ------------------------------------------------------------
    async def on_agent_connect(self, event: AgentConnected) -> int:
        """Close pending requests of a caller an operator just picked up (in the queue, or
        directly as their sticky operator or the VIP target); record who it was."""
        campaign = self.campaign_for(event.pbx, event.queue)
        if campaign is None and not self._resolve_everywhere:
            return 0
        verdict = self._verdicts(event.caller_number)
        if not isinstance(verdict, Accepted):
            return 0
        scope = None if self._resolve_everywhere or campaign is None else [campaign.id]
        q = self._queries
        async with self._pool.acquire(timeout=self._write_timeout) as conn, conn.transaction():
            await conn.fetchval(
                q["record_interaction"],
                verdict.e164,
                event.pbx,
                event.queue,
                event.member_interface,
                "inbound",
                event.uniqueid,
                event.connected_at,
                timeout=self._write_timeout,
            )
            rows = await conn.fetch(
                q["resolve_inbound"],
                verdict.e164,
                scope,
                f"answered by {event.member_interface} in {event.queue}",
                timeout=self._write_timeout,
            )
            await conn.fetch(
                q["mark_inbound_while_dialing"], verdict.e164, scope, timeout=self._write_timeout
            )
        for row in rows:
            request = CallbackRequest.from_record(row)
            self.stats.resolved_inbound += 1
            self._log.info(
                "callback request resolved by inbound call",
                request_id=request.id,
                status=str(request.status),
                number=request.number,
                pbx=event.pbx,
                queue=event.queue,
                operator=event.member_interface,
            )
        return len(rows)

    # -- the buffer for database outages ---------------------------------------------------
    def _buffer_abandon(self, abandon: QueueAbandon) -> CaptureOutcome:
        if len(self._buffer) >= self._buffer_limit:
            self.stats.lost += 1
            self._log.error(
                "abandon LOST: database down and buffer full",
                number=abandon.caller_number,
                pbx=abandon.pbx,
                queue=abandon.queue,
                uniqueid=abandon.uniqueid,
                buffer_limit=self._buffer_limit,
                lost_total=self.stats.lost,
            )
            return CaptureOutcome.LOST
        self._buffer.append(abandon)
        self.stats.buffered += 1
        self._buffer_ready.set()
        return CaptureOutcome.BUFFERED

    async def run_flusher(self, *, retry_seconds: float = 1.0) -> None:
        """Write buffered abandons, oldest first, as soon as the database answers again."""
        while True:
            await self._buffer_ready.wait()
            while self._buffer:
                abandon = self._buffer[0]
                campaign = self.campaign_for(abandon.pbx, abandon.queue)
                try:
                    if campaign is not None:
                        await self._record(abandon, campaign)
                except DATABASE_DOWN:
                    await asyncio.sleep(retry_seconds)
                    continue
                except asyncpg.PostgresError:
                    # One abandon the database rejects must not hold back the others.
                    self._log.exception(
                        "buffered abandon rejected by the database; dropped",
                        number=abandon.caller_number,
                        pbx=abandon.pbx,
                        uniqueid=abandon.uniqueid,
                    )
                self._buffer.popleft()
                if not self._buffer:
                    self._log.info("database back; buffered abandons written")
            self._buffer_ready.clear()
