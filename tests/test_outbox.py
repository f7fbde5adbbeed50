"""The outbox against the real Postgres and real HTTP peers on 127.0.0.1: events written in
the state change's transaction, signed webhooks, retries after an outage, giving up, the
send-time target guard, and SMS through an HTTP gateway once per number per window."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import structlog

from callbackd.db.pool import connect, create_pool
from callbackd.domain.signature import verify_signature
from callbackd.domain.targets import TargetPolicy
from callbackd.lab.daemon import wait_until
from callbackd.logs import configure_logging
from callbackd.outbound.guard import guarded_session, refusal_for_url
from callbackd.outbound.senders import HttpSmsSender, OutgoingMessage, WebhookSender
from callbackd.services.outbox import SMS_TARGET, OutboxWorker
from callbackd.settings import Settings, SmsHttpGateway, WebhookEndpoint, load_settings
from tests.http_peers import HttpPeer

pytestmark = pytest.mark.postgres

SECRET = "crm-secret-0123456789abcdef"
OTHER_SECRET = "other-secret-0123456789abcdef"
A = "+79161234567"
B = "+79167654321"


def outbox_settings(
    dsn: str,
    *,
    endpoints: list[dict[str, Any]] | None = None,
    sms: dict[str, Any] | None = None,
    campaign_sms: dict[str, Any] | None = None,
    **outbox: Any,
) -> Settings:
    campaign: dict[str, Any] = {"queue": "sales", "caller_id": "+15551234567"}
    if campaign_sms is not None:
        campaign["sms"] = campaign_sms
    return load_settings(
        None,
        env={},
        database={"dsn": dsn, "min_connections": 1, "max_connections": 4},
        outbox={
            "poll_interval_seconds": 0.2,
            "backoff_initial_seconds": 0.2,
            "backoff_factor": 2.0,
            "backoff_max_seconds": 0.5,
            "jitter": 0.1,
            **outbox,
        },
        webhooks={"allow_private_targets": True, "endpoints": endpoints or []},
        sms=sms or {},
        campaigns={"sales": campaign},
    )


async def _campaign(db: Any) -> int:
    campaign_id: int = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'pbx', 'sales', 'operator_first') RETURNING id"
    )
    return campaign_id


async def _request(db: Any, campaign_id: int, number: str, source: str = "abandon") -> int:
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, queue, external_id) "
        "VALUES ($1, $2, $3, 'sales', 'crm-42') RETURNING id",
        campaign_id,
        number,
        source,
    )
    return request_id


async def _close(db: Any, request_id: int, status: str, reason: str = "test") -> None:
    await db.execute(
        "UPDATE callback_requests SET status = $2, status_reason = $3, closed_at = now() "
        "WHERE id = $1",
        request_id,
        status,
        reason,
    )


async def _events(db: Any) -> list[Any]:
    rows: list[Any] = await db.fetch("SELECT * FROM outbox WHERE channel = 'event' ORDER BY id")
    return rows


async def _all_delivered(db: Any) -> bool:
    undelivered = await db.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL"
    )
    return undelivered == 0 and bool(await db.fetchval("SELECT count(*) FROM outbox_deliveries"))


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[OutboxWorker]:
    pool = await create_pool(settings.database.dsn.get_secret_value(), min_size=1, max_size=4)
    worker = OutboxWorker(pool, settings, {})
    task = asyncio.create_task(worker.run(), name="test-outbox")
    try:
        yield worker
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()


# -- events from state changes -----------------------------------------------------------------
async def test_every_state_change_writes_its_event(db: Any) -> None:
    campaign_id = await _campaign(db)
    request_id = await _request(db, campaign_id, A)
    await db.execute(
        "UPDATE callback_requests SET note = 'x', priority = 5 WHERE id = $1", request_id
    )
    await db.execute("UPDATE callback_requests SET status = 'dialing' WHERE id = $1", request_id)
    attempt_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO attempts (id, request_id, number, pbx, operator_interface, "
        "operator_channel_id, client_channel_id, claimed_by) "
        "VALUES ($1, $2, $3, 'pbx', 'Local/op1@ops', $4, $5, 'test')",
        attempt_id,
        request_id,
        A,
        f"{attempt_id}-op",
        f"{attempt_id}-cl",
    )
    await db.execute(
        "UPDATE attempts SET state = 'bridged' WHERE id = $1", attempt_id
    )  # not finished: no event
    await db.execute(
        "UPDATE attempts SET state = 'finished', outcome = 'completed', talk_seconds = 42, "
        "ended_at = now() WHERE id = $1",
        attempt_id,
    )
    await _close(db, request_id, "completed", "talked")
    events = await _events(db)
    assert [e["topic"] for e in events] == [
        "callback.created",
        "callback.attempted",
        "callback.completed",
    ]
    created, attempted, completed = (e["payload"] for e in events)
    assert created["request_id"] == request_id
    assert created["campaign"] == "sales"
    assert created["number"] == A
    assert created["external_id"] == "crm-42"
    assert created["source"] == "abandon"
    assert created["status"] == "pending"
    assert attempted["attempt"]["id"] == str(attempt_id)
    assert attempted["attempt"]["outcome"] == "completed"
    assert attempted["attempt"]["talk_seconds"] == 42
    assert attempted["attempt"]["operator"] == "Local/op1@ops"
    assert completed["status"] == "completed"
    assert completed["reason"] == "talked"
    assert completed["closed_at"] is not None
    request_keys = {
        "event", "occurred_at", "request_id", "external_id", "campaign", "queue", "pbx",
        "number", "status", "reason", "source", "priority", "abandon_count",
        "client_attempts", "assigned_operator", "due_at", "created_at", "updated_at",
        "closed_at",
    }  # fmt: skip
    assert set(created) == set(completed) == request_keys
    assert set(attempted) == request_keys | {"attempt"}
    assert [p["event"] for p in (created, attempted, completed)] == [e["topic"] for e in events]
    assert len({e["event_id"] for e in events}) == 3
    assert all(e["fanned_out_at"] is None for e in events)


@pytest.mark.parametrize("status", ["failed", "cancelled", "resolved_inbound", "expired"])
async def test_each_closing_status_is_announced(db: Any, status: str) -> None:
    campaign_id = await _campaign(db)
    request_id = await _request(db, campaign_id, A)
    await _close(db, request_id, status)
    assert [e["topic"] for e in await _events(db)] == ["callback.created", f"callback.{status}"]


async def test_a_rolled_back_state_change_leaves_no_event(db: Any) -> None:
    campaign_id = await _campaign(db)
    kept = await _request(db, campaign_id, A)

    async def change_then_fail() -> None:
        async with db.transaction():
            doomed = await _request(db, campaign_id, B)
            await _close(db, doomed, "cancelled")
            await _close(db, kept, "cancelled")
            assert len(await _events(db)) == 4  # visible inside the transaction...
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        await change_then_fail()
    events = await _events(db)  # ...and gone with it
    assert [(e["topic"], e["request_id"]) for e in events] == [("callback.created", kept)]


async def test_sms_window_is_enforced_by_the_database_across_connections(database: str) -> None:
    """Two writers race to text one number: the exclusion constraint lets one through."""
    conns = [await connect(database) for _ in range(2)]
    try:
        barrier = asyncio.Barrier(2)

        async def write(conn: Any, key: str) -> Any:
            async with conn.transaction():
                await barrier.wait()
                return await conn.fetchrow(
                    "INSERT INTO outbox (channel, topic, dedupe_key, number, quiet_until, "
                    "payload) VALUES ('sms', 'sms.caller', $1, $2, now() + interval '1 hour', "
                    "'{}') ON CONFLICT DO NOTHING RETURNING id",
                    key,
                    A,
                )

        results = await asyncio.wait_for(
            asyncio.gather(write(conns[0], "k1"), write(conns[1], "k2")), timeout=10
        )
        assert sorted(r is None for r in results) == [False, True]
        with pytest.raises(asyncpg.ExclusionViolationError):
            await conns[0].execute(
                "INSERT INTO outbox (channel, topic, number, quiet_until, payload) "
                "VALUES ('sms', 'sms.caller', $1, now() + interval '1 minute', '{}')",
                A,
            )
        await conns[0].execute(  # another number is not affected
            "INSERT INTO outbox (channel, topic, number, quiet_until, payload) "
            "VALUES ('sms', 'sms.caller', $1, now() + interval '1 minute', '{}')",
            B,
        )
    finally:
        for conn in conns:
            await conn.close()


# -- webhooks ----------------------------------------------------------------------------------
async def test_webhooks_reach_the_receiver_signed_and_filtered(database: str, db: Any) -> None:
    async with HttpPeer() as crm, HttpPeer() as audit:
        settings = outbox_settings(
            database,
            endpoints=[
                {"name": "crm", "url": f"{crm.url}/hooks", "secret": SECRET},
                {
                    "name": "audit",
                    "url": f"{audit.url}/in",
                    "secret": OTHER_SECRET,
                    "topics": ["callback.completed", "callback.failed"],
                },
            ],
        )
        campaign_id = await _campaign(db)
        async with running_worker(settings):
            request_id = await _request(db, campaign_id, A)
            await _close(db, request_id, "completed", "talked")
            await wait_until(
                lambda: len(crm.accepted) == 2 and len(audit.accepted) == 1,
                timeout=10,
                what="2 events at the CRM, 1 at the audit endpoint",
            )
            await wait_until(
                lambda: _all_delivered(db), timeout=5, what="deliveries recorded as delivered"
            )
    events = await _events(db)
    topics = []
    for received in crm.accepted:
        assert received.method == "POST"
        assert received.path == "/hooks"
        assert received.headers["Content-Type"] == "application/json"
        verify_signature(SECRET, received.headers["Callbackd-Signature"], received.body)
        document = json.loads(received.body)
        assert document["id"] == received.headers["Callbackd-Event-Id"]
        assert document["type"] == received.headers["Callbackd-Event"]
        assert document["data"]["request_id"] == request_id
        assert document["data"]["number"] == A
        topics.append(document["type"])
    assert topics == ["callback.created", "callback.completed"]
    assert [r.headers["Callbackd-Event-Id"] for r in crm.accepted] == [
        str(e["event_id"]) for e in events
    ]
    [audited] = audit.accepted
    assert audited.headers["Callbackd-Event"] == "callback.completed"
    verify_signature(OTHER_SECRET, audited.headers["Callbackd-Signature"], audited.body)
    deliveries = await db.fetch("SELECT * FROM outbox_deliveries ORDER BY outbox_id, target")
    assert [(d["target"], d["tries"], d["last_status"]) for d in deliveries] == [
        ("crm", 1, 200),
        ("audit", 1, 200),
        ("crm", 1, 200),
    ]
    assert all(d["delivered_at"] is not None for d in deliveries)


async def test_receiver_down_for_a_while_gets_every_event_once_later(
    database: str, db: Any
) -> None:
    crm = HttpPeer(fail_next=2)  # not listening at first, then two 503s, then fine
    settings = outbox_settings(
        database, endpoints=[{"name": "crm", "url": crm.url, "secret": SECRET}]
    )
    campaign_id = await _campaign(db)
    try:
        async with running_worker(settings) as worker:
            ids = [await _request(db, campaign_id, number) for number in (A, B)]
            await _close(db, ids[0], "cancelled")

            async def failing_for_a_while() -> bool:
                tries = await db.fetchval(
                    "SELECT min(tries) FROM outbox_deliveries WHERE last_error IS NOT NULL"
                )
                return tries is not None and tries >= 2

            await wait_until(failing_for_a_while, timeout=10, what="failed tries recorded")
            errors = await db.fetch("SELECT last_error FROM outbox_deliveries")
            assert all(e["last_error"] for e in errors)
            assert crm.received == []
            await crm.start()
            await wait_until(lambda: len(crm.accepted) == 3, timeout=15, what="3 deliveries")
            await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")
            await asyncio.sleep(1.0)  # nothing more arrives: delivered rows are not re-sent
            assert worker.stats.delivered["crm"] == 3
            assert worker.stats.retried["crm"] >= 4
    finally:
        await crm.stop()
    per_event = Counter(r.headers["Callbackd-Event-Id"] for r in crm.accepted)
    assert len(per_event) == 3
    assert set(per_event.values()) == {1}
    assert [r.answered for r in crm.received].count(503) == 2
    rows = await db.fetch("SELECT * FROM outbox_deliveries")
    assert all(r["delivered_at"] is not None and r["last_error"] is None for r in rows)
    assert all(r["tries"] >= 2 for r in rows)
    for received in crm.accepted:
        verify_signature(SECRET, received.headers["Callbackd-Signature"], received.body)


async def test_a_delivery_failing_past_the_max_age_is_given_up(database: str, db: Any) -> None:
    async with HttpPeer(status=500) as crm:
        settings = outbox_settings(
            database,
            endpoints=[{"name": "crm", "url": crm.url, "secret": SECRET}],
            max_age_seconds=1.0,
        )
        campaign_id = await _campaign(db)
        async with running_worker(settings) as worker:
            await _request(db, campaign_id, A)

            async def given_up() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM outbox_deliveries WHERE given_up_at IS NOT NULL"
                    )
                )

            await wait_until(given_up, timeout=10, what="the delivery given up")
            sent = len(crm.received)
            await asyncio.sleep(0.8)
            assert len(crm.received) == sent  # never tried again
            assert worker.stats.given_up["crm"] == 1
    row = await db.fetchrow("SELECT * FROM outbox_deliveries")
    assert row["last_status"] == 500
    assert row["last_error"] == "HTTP 500"
    assert row["delivered_at"] is None
    assert sent >= 2


async def test_send_time_guard_refuses_names_and_literals_that_reach_internal_addresses() -> None:
    """A name that passed the config check may resolve elsewhere later (DNS rebinding):
    the resolver the session connects with refuses it, and literals are refused up front."""
    async with HttpPeer() as internal:
        endpoint = WebhookEndpoint(
            name="crm", url=f"http://localhost:{internal.port}/", secret=SECRET
        )
        policy = TargetPolicy()
        message = OutgoingMessage(
            event_id=str(uuid.uuid4()),
            topic="callback.created",
            payload={"request_id": 1},
            created_at="2026-11-23T00:00:00+00:00",
            tries=1,
        )
        async with guarded_session(policy) as session:
            result = await WebhookSender(endpoint, session, policy).send(message)
            literal = WebhookEndpoint(
                name="crm", url=f"http://127.0.0.1:{internal.port}/", secret=SECRET
            )
            literal_result = await WebhookSender(literal, session, policy).send(message)
        async with guarded_session(TargetPolicy(allow_private=True)) as session:
            allowed = await WebhookSender(endpoint, session, TargetPolicy(allow_private=True)).send(
                message
            )
    assert not result.ok
    assert "loopback" in (result.error or "")
    assert not literal_result.ok
    assert "loopback" in (literal_result.error or "")
    assert allowed.ok
    assert len(internal.received) == 1  # only the allowed one arrived
    assert refusal_for_url("http://[fd00:ec2::254]/", TargetPolicy(allow_private=True)) == (
        "fd00:ec2::254 is a metadata address"
    )


# -- SMS ---------------------------------------------------------------------------------------
def _gateway_settings(database: str, gateway: HttpPeer, window_hours: float) -> Settings:
    return outbox_settings(
        database,
        sms={
            "sender": "http",
            "window_hours": window_hours,
            "http": {
                "url": f"{gateway.url}/send",
                "body": {
                    "to": "{number}",
                    "message": "{text}",
                    "lang": "{language}",
                    "id": "{message_id}",
                },
                "bearer_token": "gw-token-0123456789",
                "allow_private_targets": True,
            },
        },
        campaign_sms={
            "template": "Sorry you did not wait, {campaign} will call you back!",
            "language": "ru",
            "when": "both",
        },
    )


async def test_sms_through_an_http_gateway_once_per_number_per_window(
    database: str, db: Any
) -> None:
    async with HttpPeer() as gateway:
        settings = _gateway_settings(database, gateway, window_hours=1.0)
        campaign_id = await _campaign(db)
        async with running_worker(settings) as worker:
            a1 = await _request(db, campaign_id, A)  # abandon: texted
            await wait_until(lambda: len(gateway.accepted) == 1, timeout=10, what="first SMS")
            await _close(db, a1, "failed")  # final failure, but A was texted within the window
            await _request(db, campaign_id, A)  # A gives up again: still within the window
            b1 = await _request(db, campaign_id, B, source="api")  # not an abandon: no text
            await _close(db, b1, "failed")  # final failure: texted
            await wait_until(lambda: len(gateway.accepted) == 2, timeout=10, what="second SMS")
            await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")

            async def all_fanned_out() -> bool:
                return not await db.fetchval(
                    "SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL"
                )

            await wait_until(all_fanned_out, timeout=10, what="every event fanned out")
            await asyncio.sleep(0.5)
            assert worker.stats.sms_planned == 2
            assert worker.stats.sms_suppressed == 2
    assert len(gateway.received) == 2
    first, second = (json.loads(r.body) for r in gateway.received)
    assert first["to"] == A
    assert second["to"] == B
    for message in (first, second):
        assert message["message"] == "Sorry you did not wait, sales will call you back!"
        assert message["lang"] == "ru"
    assert all(r.headers["Authorization"] == "Bearer gw-token-0123456789" for r in gateway.received)
    sms_rows = await db.fetch("SELECT * FROM outbox WHERE channel = 'sms' ORDER BY id")
    assert [r["number"] for r in sms_rows] == [A, B]
    assert [str(r["event_id"]) for r in sms_rows] == [first["id"], second["id"]]
    assert [r["payload"]["cause"] for r in sms_rows] == ["callback.created", "callback.failed"]
    deliveries = await db.fetch(
        "SELECT * FROM outbox_deliveries WHERE target = $1 ORDER BY outbox_id", SMS_TARGET
    )
    assert [d["delivered_at"] is not None for d in deliveries] == [True, True]


async def test_after_the_window_the_number_is_texted_again(database: str, db: Any) -> None:
    async with HttpPeer(fail_next=1) as gateway:  # the first try fails: retried, sent once
        settings = _gateway_settings(database, gateway, window_hours=1.5 / 3600)
        campaign_id = await _campaign(db)
        async with running_worker(settings):
            first = await _request(db, campaign_id, A)
            await wait_until(lambda: len(gateway.accepted) == 1, timeout=10, what="first SMS")
            await _close(db, first, "cancelled")
            await asyncio.sleep(1.6)  # the 1.5 s window has passed
            await _request(db, campaign_id, A)
            await wait_until(lambda: len(gateway.accepted) == 2, timeout=10, what="second SMS")
            await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")
    assert [r.answered for r in gateway.received] == [503, 200, 200]
    assert [json.loads(r.body)["to"] for r in gateway.accepted] == [A, A]
    first_id, second_id = (json.loads(r.body)["id"] for r in gateway.received[1:])
    assert json.loads(gateway.received[0].body)["id"] == first_id  # the retry is the same SMS
    assert first_id != second_id


# -- wake-up, sharing, crash recovery ----------------------------------------------------------
async def test_notify_wakes_the_worker_long_before_its_next_poll(database: str, db: Any) -> None:
    async with HttpPeer() as crm:
        settings = outbox_settings(
            database,
            endpoints=[{"name": "crm", "url": crm.url, "secret": SECRET}],
            poll_interval_seconds=120.0,
        )
        campaign_id = await _campaign(db)
        async with running_worker(settings):
            await asyncio.sleep(1.0)  # the worker's first look and its LISTEN are done
            await _request(db, campaign_id, A)
            await wait_until(lambda: len(crm.accepted) == 1, timeout=10, what="the webhook")


async def test_two_workers_share_the_work_and_send_each_event_once(database: str, db: Any) -> None:
    async with HttpPeer() as crm:
        settings = outbox_settings(
            database,
            endpoints=[{"name": "crm", "url": crm.url, "secret": SECRET}],
            batch_size=5,
        )
        campaign_id = await _campaign(db)
        await db.execute(
            "INSERT INTO callback_requests (campaign_id, number, source) "
            "SELECT $1, '+7917' || lpad(g::text, 7, '0'), 'api' FROM generate_series(1, 40) g",
            campaign_id,
        )
        async with running_worker(settings) as one, running_worker(settings) as two:
            await wait_until(lambda: len(crm.accepted) >= 40, timeout=20, what="40 webhooks")
            await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")
            await asyncio.sleep(0.5)
            shares = (one.stats.delivered["crm"], two.stats.delivered["crm"])
    per_event = Counter(r.headers["Callbackd-Event-Id"] for r in crm.accepted)
    assert len(per_event) == 40
    assert set(per_event.values()) == {1}
    assert sum(shares) == 40


async def test_a_delivery_left_by_a_dead_worker_is_sent_after_its_lease(
    database: str, db: Any
) -> None:
    async with HttpPeer() as crm:
        settings = outbox_settings(
            database, endpoints=[{"name": "crm", "url": crm.url, "secret": SECRET}]
        )
        campaign_id = await _campaign(db)
        await _request(db, campaign_id, A)
        pool = await create_pool(database, min_size=1, max_size=2)
        try:
            await OutboxWorker(pool, settings, {}).fan_out_once()
        finally:
            await pool.close()
        # a worker claims it with a 3 s lease and dies before sending
        claimed = await db.fetch(
            "WITH c AS (UPDATE outbox_deliveries SET tries = tries + 1, "
            "available_at = now() + interval '3 seconds' RETURNING 1) SELECT * FROM c"
        )
        assert len(claimed) == 1
        async with running_worker(settings):
            await asyncio.sleep(0.5)
            assert crm.received == []  # still leased
            await wait_until(lambda: len(crm.accepted) == 1, timeout=10, what="the re-send")
            await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")
    assert await db.fetchval("SELECT tries FROM outbox_deliveries") == 2


# -- gateway request shapes and logs -----------------------------------------------------------
def _sms_message(number: str = A, text: str = "Привет & hello") -> OutgoingMessage:
    return OutgoingMessage(
        event_id=str(uuid.uuid4()),
        topic="sms.caller",
        payload={"number": number, "text": text, "language": "ru"},
        created_at="2026-11-23T00:00:00+00:00",
        tries=1,
    )


@pytest.mark.parametrize(
    ("method", "body_format"), [("POST", "form"), ("GET", "json"), ("POST", "json")]
)
async def test_gateway_requests_carry_the_fields_and_auth_as_configured(
    method: str, body_format: str
) -> None:
    async with HttpPeer() as gateway:
        config = SmsHttpGateway.model_validate(
            {
                "url": f"{gateway.url}/send?account=shop",
                "method": method,
                "body_format": body_format,
                "body": {"to": "{number_digits}", "msg": "{text}", "id": "{message_id}"},
                "headers": {"X-Client": "callbackd"},
                "secret_headers": {"X-Api-Key": "key-0123456789"},
                "basic_username": "shop",
                "basic_password": "pass-0123456789",
                "allow_private_targets": True,
            }
        )
        message = _sms_message()
        async with guarded_session(config.policy) as session:
            result = await HttpSmsSender(config, session).send(message)
    assert result.ok
    [received] = gateway.received
    assert received.method == method
    assert received.headers["X-Client"] == "callbackd"
    assert received.headers["X-Api-Key"] == "key-0123456789"
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(
        b"shop:pass-0123456789"
    ).decode("ascii")
    expected = {"to": A.lstrip("+"), "msg": "Привет & hello", "id": message.event_id}
    if method == "GET":
        assert received.query == {"account": "shop", **expected}
    elif body_format == "form":
        assert dict(urllib.parse.parse_qsl(received.body.decode())) == expected
    else:
        assert json.loads(received.body) == expected


async def test_outbox_logs_mask_numbers_and_never_show_secrets(database: str, db: Any) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        async with HttpPeer(fail_next=1) as gateway, HttpPeer() as crm:
            settings = _gateway_settings(database, gateway, window_hours=1.0)
            settings = settings.model_copy(
                update={
                    "webhooks": load_settings(
                        None,
                        env={},
                        webhooks={
                            "allow_private_targets": True,
                            "endpoints": [{"name": "crm", "url": crm.url, "secret": SECRET}],
                        },
                    ).webhooks
                }
            )
            configure_logging(settings.logging, stream=stream, secrets=settings.secret_values())
            campaign_id = await _campaign(db)
            async with running_worker(settings):
                await _request(db, campaign_id, A)
                await wait_until(
                    lambda: len(gateway.accepted) == 1 and len(crm.accepted) == 1,
                    timeout=10,
                    what="SMS and webhook",
                )
                await wait_until(lambda: _all_delivered(db), timeout=5, what="recorded")
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        structlog.reset_defaults()
    output = stream.getvalue()
    events = [json.loads(line) for line in output.splitlines()]
    assert {"sms queued", "delivery failed; will retry", "delivered"} <= {
        e["event"] for e in events
    }
    assert "+*******4567" in output
    assert A not in output
    assert A.lstrip("+") not in output
    assert SECRET not in output
    assert "gw-token-0123456789" not in output
