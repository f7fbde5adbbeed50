"""The outbox worker: fans events out to their targets and delivers them, with retries.

Events are written by database triggers in the same transaction as the state change they
announce (migration 0009). This worker, a supervised task of the daemon:

1. fans out new events (``FOR UPDATE SKIP LOCKED``, so several instances share the work):
   one delivery row per webhook endpoint whose topics match, and, when the campaign's SMS
   policy asks for it, an SMS row (the database refuses a second SMS to a number inside
   the window) with its own delivery row;
2. claims due deliveries with one statement that also leases them, sends them in
   parallel (each send bounded by its own timeout) and records the result: delivered,
   retry after an exponential delay with jitter, or given up once the event is older than
   ``outbox.max_age_seconds``.

A NOTIFY on ``callbackd_outbox`` wakes it early (for an abandon this daemon captured,
:meth:`OutboxWorker.wake` instead: migration 0014); polling every
``poll_interval_seconds`` is the guarantee. A delivered row is never sent again, so each
event reaches each endpoint once on success; the event id header lets a receiver drop the
rare duplicate (a send that succeeded but whose result could not be recorded).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import structlog

from callbackd.ami.link import AmiLink
from callbackd.db.notify import listen_for_wakeups
from callbackd.db.sql import load_queries
from callbackd.domain.delivery import BackoffPolicy, render, sms_due, topic_matches
from callbackd.outbound.guard import guarded_session
from callbackd.outbound.senders import (
    AmiSmsSender,
    HttpSmsSender,
    OutgoingMessage,
    Sender,
    SendResult,
    WebhookSender,
)
from callbackd.services.capture import DATABASE_DOWN
from callbackd.settings import Settings

OUTBOX_CHANNEL = "callbackd_outbox"
SMS_TARGET = "sms"
SMS_TOPIC = "sms.caller"
LEASE_MARGIN_SECONDS = 30.0
# A NOTIFY comes at the commit of a request's change, the moment the dialer reacts to that
# same change (claim, Originate): the worker lets it go first, then fans out.
NOTIFY_SETTLE_SECONDS = 0.05

Q = load_queries("outbox")


def backoff_policy(settings: Settings) -> BackoffPolicy:
    cfg = settings.outbox
    return BackoffPolicy(
        initial_seconds=cfg.backoff_initial_seconds,
        factor=cfg.backoff_factor,
        maximum_seconds=cfg.backoff_max_seconds,
        jitter=cfg.jitter,
        max_age_seconds=cfg.max_age_seconds,
    )


class OutboxStats:
    def __init__(self) -> None:
        self.delivered: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.given_up: Counter[str] = Counter()
        self.sms_planned = 0
        self.sms_suppressed = 0


class OutboxWorker:
    def __init__(
        self,
        pool: Any,
        settings: Settings,
        links: Mapping[str, AmiLink],
        *,
        rand: random.Random | None = None,
        notify_settle_seconds: float = NOTIFY_SETTLE_SECONDS,
    ) -> None:
        self._pool = pool
        self._settle = notify_settle_seconds
        self._settings = settings
        self._links = links
        self._policy = backoff_policy(settings)
        self._rand = rand or random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = asyncio.Event()
        self._senders: dict[str, Sender] = {}
        self.stats = OutboxStats()
        self._log = structlog.get_logger("callbackd.outbox")
        timeouts = [e.timeout_seconds for e in settings.webhooks.endpoints]
        if settings.sms.http is not None:
            timeouts.append(settings.sms.http.timeout_seconds)
        if settings.sms.ami is not None:
            timeouts.append(settings.sms.ami.timeout_seconds)
        self._lease = max(timeouts, default=10.0) + LEASE_MARGIN_SECONDS

    @property
    def targets(self) -> list[str]:
        """The delivery targets this worker sends to (webhook endpoints, 'sms')."""
        names = [endpoint.name for endpoint in self._settings.webhooks.endpoints]
        if self._settings.sms.sender != "none":
            names.append(SMS_TARGET)
        return names

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled (supervised: a crash is logged and the worker restarted)."""
        async with AsyncExitStack() as stack:
            self._senders = await self._open_senders(stack)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._listen(), name="outbox-listen")
                group.create_task(self._loop(), name="outbox-deliver")

    async def _open_senders(self, stack: AsyncExitStack) -> dict[str, Sender]:
        settings = self._settings
        senders: dict[str, Sender] = {}
        if settings.webhooks.endpoints:
            policy = settings.webhooks.policy
            session = await stack.enter_async_context(guarded_session(policy))
            for endpoint in settings.webhooks.endpoints:
                senders[endpoint.name] = WebhookSender(endpoint, session, policy)
        if settings.sms.sender == "http" and settings.sms.http is not None:
            session = await stack.enter_async_context(guarded_session(settings.sms.http.policy))
            senders[SMS_TARGET] = HttpSmsSender(settings.sms.http, session)
        elif settings.sms.sender == "ami" and settings.sms.ami is not None:
            senders[SMS_TARGET] = AmiSmsSender(settings.sms.ami, self._links)
        return senders

    async def _loop(self) -> None:
        interval = self._settings.outbox.poll_interval_seconds
        while True:
            self._wake.clear()
            busy = False
            sleep = interval
            try:
                fanned = await self.fan_out_once()
                sent = await self.deliver_once()
                busy = fanned > 0 or sent >= self._settings.outbox.batch_size
                sleep = await self._next_due(interval)
            except DATABASE_DOWN as err:
                self._log.error("database unavailable; outbox paused", error=type(err).__name__)
            if busy:
                continue
            try:
                async with asyncio.timeout(sleep):
                    await self._wake.wait()
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(self._settle)  # woken: the dialer's reaction first

    async def _next_due(self, ceiling: float) -> float:
        targets = self.targets
        if not targets:
            return ceiling
        async with self._pool.acquire() as conn:
            due_in = await conn.fetchval(Q["next_due_in"], targets)
        return ceiling if due_in is None else min(ceiling, max(float(due_in), 0.01))

    async def _listen(self) -> None:
        """LISTEN for new events: only a faster wake-up, the loop polls regardless."""
        db = self._settings.database
        await listen_for_wakeups(
            db.dsn.get_secret_value(),
            OUTBOX_CHANNEL,
            self._wake.set,
            connect_timeout=db.connect_timeout_seconds,
            unreachable=DATABASE_DOWN,
        )

    # -- fan-out -----------------------------------------------------------------------------
    async def fan_out_once(self) -> int:
        """Fan out one batch of new events; returns how many were fanned out."""
        settings = self._settings
        async with self._pool.acquire() as conn, conn.transaction():
            events = await conn.fetch(Q["events_to_fan_out"], settings.outbox.batch_size)
            for event in events:
                topic = event["topic"]
                targets = [
                    endpoint.name
                    for endpoint in settings.webhooks.endpoints
                    if topic_matches(endpoint.topics, topic)
                ]
                if targets:
                    await conn.execute(Q["add_deliveries"], event["id"], targets)
                await self._plan_sms(conn, event)
            if events:
                await conn.execute(Q["mark_fanned_out"], [event["id"] for event in events])
        return len(events)

    async def _plan_sms(self, conn: Any, event: Any) -> None:
        settings = self._settings
        payload: dict[str, Any] = event["payload"]
        campaign = settings.campaigns.get(str(payload.get("campaign")))
        if settings.sms.sender == "none" or campaign is None or campaign.sms is None:
            return
        policy = campaign.sms
        if not sms_due(policy.when, event["topic"], payload):
            return
        text = render(
            policy.template,
            {"campaign": str(payload.get("campaign", "")), "queue": str(payload.get("queue", ""))},
        )
        number = str(payload["number"])
        sms_payload = {
            "number": number,
            "text": text,
            "language": policy.language,
            "campaign": payload.get("campaign"),
            "request_id": event["request_id"],
            "cause_event_id": str(event["event_id"]),
            "cause": event["topic"],
        }
        row = await conn.fetchrow(
            Q["add_sms"],
            SMS_TOPIC,
            f"sms:{event['event_id']}",
            event["request_id"],
            event["campaign_id"],
            number,
            settings.sms.window_hours * 3600.0,
            sms_payload,
        )
        log = self._log.bind(request_id=event["request_id"], number=number, cause=event["topic"])
        if row is None:
            self.stats.sms_suppressed += 1
            log.info("sms not queued: one was already sent to this number in the window")
            return
        await conn.execute(Q["add_deliveries"], row["id"], [SMS_TARGET])
        self.stats.sms_planned += 1
        log.info("sms queued", sms_id=str(row["event_id"]), language=policy.language)

    # -- delivery ----------------------------------------------------------------------------
    async def deliver_once(self) -> int:
        """Claim one batch of due deliveries, send them in parallel, record the results."""
        targets = [name for name in self.targets if name in self._senders]
        if not targets:
            return 0
        async with self._pool.acquire() as conn:
            claimed = await conn.fetch(
                Q["claim_due"], targets, self._settings.outbox.batch_size, self._lease
            )
        if not claimed:
            return 0
        async with asyncio.TaskGroup() as group:
            for row in claimed:
                group.create_task(
                    self._deliver(row), name=f"outbox-send-{row['target']}-{row['outbox_id']}"
                )
        return len(claimed)

    async def _deliver(self, row: Any) -> None:
        target = row["target"]
        message = OutgoingMessage(
            event_id=str(row["event_id"]),
            topic=row["topic"],
            payload=row["payload"],
            created_at=row["created_at"].isoformat(),
            tries=row["tries"],
        )
        log = self._log.bind(
            target=target,
            event_id=message.event_id,
            topic=message.topic,
            request_id=row["request_id"],
            tries=message.tries,
        )
        if row["number"] is not None:
            log = log.bind(number=row["number"])
        try:
            result = await self._senders[target].send(message)
        except Exception as err:  # a sender bug must not lose the delivery
            log.exception("sender raised; treated as a failed try")
            result = SendResult(ok=False, error=f"sender error: {type(err).__name__}")
        try:
            await self._record(row, result, log)
        except DATABASE_DOWN as err:
            # The lease runs out and the delivery is tried again (the receiver dedupes by
            # the event id if this send had in fact succeeded).
            log.error(
                "result not recorded (database unavailable); retried after the lease",
                sent=result.ok,
                error=type(err).__name__,
            )

    async def _record(self, row: Any, result: SendResult, log: Any) -> None:
        key = (row["outbox_id"], row["target"])
        async with self._pool.acquire() as conn:
            if result.ok:
                await conn.execute(Q["mark_delivered"], *key, result.status)
                self.stats.delivered[row["target"]] += 1
                log.info("delivered", status=result.status)
                return
            age = (datetime.now(UTC) - row["created_at"]).total_seconds()
            decision = self._policy.after_failure(
                tries=row["tries"], age_seconds=age, rand=self._rand.random()
            )
            if decision.give_up:
                await conn.execute(Q["mark_given_up"], *key, result.error, result.status)
                self.stats.given_up[row["target"]] += 1
                log.error("delivery given up", error=result.error, age_seconds=round(age))
                return
            await conn.execute(
                Q["mark_retry"], *key, decision.delay_seconds, result.error, result.status
            )
            self.stats.retried[row["target"]] += 1
            log.warning(
                "delivery failed; will retry",
                error=result.error,
                retry_in=round(decision.delay_seconds, 2),
            )

    def health(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "delivered": dict(self.stats.delivered),
            "retried": dict(self.stats.retried),
            "given_up": dict(self.stats.given_up),
            "sms_planned": self.stats.sms_planned,
            "sms_suppressed": self.stats.sms_suppressed,
        }
