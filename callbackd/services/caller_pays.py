"""Caller-pays callbacks: a DID that is never answered; its callers are called back.

The shipped ``callbackd-caller-pays`` routine rejects the call without answering it (so
the caller pays nothing) and reports it as ``UserEvent(CallbackdCallerPays)`` with the
campaign and the caller's number. This service stores the number as a ``caller_pays``
request in that client-first campaign, through the same number policy as abandon capture,
once per (PBX, Uniqueid); the client-first dialer then calls back within seconds.

Why a UserEvent rather than an AGI route: the rejection must never wait for callbackd (or
depend on it being up): the dialplan rejects at once either way, and AMI, which callbackd
already holds, carries the event. For the calls made while callbackd's AMI link was down
(or callbackd stopped), the routine also writes the call to queue_log, which the
queue_log replayer (callbackd/services/queue_log.py) passes to :meth:`record` on start and
reconnect: same verdict, same number policy, and the same (PBX, Uniqueid) key, so a call
seen live and replayed is stored once. A live event that found the database down is
logged as LOST; its line is stored at the next start or reconnect. Still lost: calls whose
queue_log line callbackd never reads (rotated away or older than the replay horizon before
the next start or reconnect, queue_log not written to a file callbackd can read, no
``queue_log_path`` configured).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.link import AmiLink
from callbackd.db.models import CallbackRequest
from callbackd.db.sql import load_queries
from callbackd.domain.capture import CampaignRef
from callbackd.domain.modes import CallerPaysSkip, judge_caller_pays
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.capture import DATABASE_DOWN


class CallerPaysOutcome(StrEnum):
    CREATED = "created"
    MERGED = "merged"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    LOST = "lost"


class CallerPaysCapture:
    """Turns CallbackdCallerPays events into client-first callback requests."""

    def __init__(
        self,
        pool: Any,
        campaigns: Mapping[str, CampaignRef],
        numbers: NumberPolicy,
        *,
        on_stored: Callable[[], None] = lambda: None,
        write_timeout: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``campaigns``: the client-first campaigns by name; ``on_stored`` wakes the dialer."""
        self._pool = pool
        self._campaigns = dict(campaigns)
        self._numbers = numbers
        self._on_stored = on_stored
        self._write_timeout = write_timeout
        self._clock = clock
        self._queries = load_queries("modes")
        self._log = structlog.get_logger("callbackd.caller_pays")

    async def on_event(self, link: AmiLink, message: Message) -> None:
        """The AMI handler (route ``userevent:callbackdcallerpays``)."""
        await self.record(
            pbx=link.name,
            uniqueid=str(message.get("uniqueid", "")),
            linkedid=str(message.get("linkedid", "")) or None,
            campaign_name=str(message.get(contract.HEADER_CAMPAIGN.lower(), "")),
            raw_number=str(message.get(contract.HEADER_NUMBER.lower(), "")),
        )

    async def record(
        self,
        *,
        pbx: str,
        uniqueid: str,
        campaign_name: str,
        raw_number: str,
        linkedid: str | None = None,
        called_at: datetime | None = None,
        replayed: bool = False,
    ) -> CallerPaysOutcome:
        """One call to a caller-pays DID, live (now) or replayed from queue_log
        (``called_at``: when the call was made; it becomes the request's join time)."""
        log = self._log.bind(pbx=pbx, uniqueid=uniqueid, campaign=campaign_name, replayed=replayed)
        if not uniqueid:
            log.error("caller-pays event without a Uniqueid ignored")
            return CallerPaysOutcome.SKIPPED
        verdict = judge_caller_pays(pbx, campaign_name, raw_number, self._campaigns, self._numbers)
        try:
            return await self._store(
                log, verdict, pbx, uniqueid, campaign_name, raw_number, linkedid, called_at
            )
        except DATABASE_DOWN as err:
            log.error(
                "caller-pays call LOST: database unavailable",
                error=type(err).__name__,
                number=raw_number,
            )
            return CallerPaysOutcome.LOST

    async def known_uniqueids(self, pbx: str, uniqueids: Sequence[str]) -> set[str]:
        """Which of these calls are stored already (one query instead of one per call)."""
        timeout = self._write_timeout
        async with self._pool.acquire(timeout=timeout) as conn:
            rows = await conn.fetch(
                self._queries["known_caller_pays_calls"], pbx, list(uniqueids), timeout=timeout
            )
        return {row["uniqueid"] for row in rows}

    async def _store(
        self,
        log: Any,
        verdict: Any,
        pbx: str,
        uniqueid: str,
        campaign_name: str,
        raw_number: str,
        linkedid: str | None,
        called_at: datetime | None,
    ) -> CallerPaysOutcome:
        q = self._queries
        timeout = self._write_timeout
        skip = isinstance(verdict, CallerPaysSkip)
        async with self._pool.acquire(timeout=timeout) as conn, conn.transaction():
            first = await conn.fetchval(
                q["claim_caller_pays"],
                pbx,
                uniqueid,
                campaign_name,
                None if skip else verdict.campaign.id,
                None if skip else verdict.number,
                verdict.reason if skip else "stored",
                timeout=timeout,
            )
            if first is None:
                return CallerPaysOutcome.DUPLICATE
            if skip:
                log.info("caller-pays call not stored", reason=verdict.reason, number=raw_number)
                return CallerPaysOutcome.SKIPPED
            campaign = verdict.campaign
            row = await conn.fetchrow(
                q["upsert_request_from_caller_pays"],
                campaign.id,
                verdict.number,
                campaign.priority,
                called_at or self._clock(),
                pbx,
                campaign.queue,
                uniqueid,
                linkedid,
                timeout=timeout,
            )
            created = bool(row["created"])
            request = CallbackRequest.from_record({k: v for k, v in row.items() if k != "created"})
            await conn.execute(
                q["link_caller_pays"],
                pbx,
                uniqueid,
                request.id,
                "stored" if created else "merged",
                timeout=timeout,
            )
        log.info(
            "callback request created" if created else "callback request merged",
            request_id=request.id,
            status=str(request.status),
            source="caller_pays",
            number=request.number,
        )
        self._on_stored()
        return CallerPaysOutcome.CREATED if created else CallerPaysOutcome.MERGED
