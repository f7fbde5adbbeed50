"""Expiry at claim time, against the real PostgreSQL: a request past its campaign's
``retry.expiry_seconds`` is never claimed, and ends with status ``expired`` and its
``callback.expired`` event whether it was waiting or being dialled."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import structlog

from callbackd.db.models import Attempt, AttemptOutcome
from callbackd.db.sql import load_queries
from callbackd.services.campaigns import sync_campaigns
from callbackd.services.client_first import ClientFirstDialer
from callbackd.services.dialer import Dialer, DialerCampaign, _Call
from callbackd.settings import Campaign
from tests.fixtures_postgres import claim_for_operator

pytestmark = pytest.mark.postgres

OP1 = "Local/op1@lab-operators"
EXPIRY = 3600
CALLER_ID = "+74950000001"
"""The number clients see (the campaigns use the default template, which reaches a trunk)."""


def _campaign(mode: str = "operator_first", expiry: int = EXPIRY, queue: str = "sales") -> Campaign:
    return Campaign.model_validate(
        {
            "pbx": "lab",
            "queue": queue,
            "mode": mode,
            "caller_id": CALLER_ID,
            "retry": {"expiry_seconds": expiry},
        }
    )


async def _synced(db: Any, **campaigns: Campaign) -> dict[str, DialerCampaign]:
    refs = await sync_campaigns(db, campaigns)
    return {
        ref.name: DialerCampaign(id=ref.id, name=ref.name, settings=campaigns[ref.name])
        for ref in refs.values()
    }


async def _request(db: Any, campaign_id: int, number: str, *, age_seconds: int) -> int:
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, created_at, due_at) "
        "VALUES ($1, $2, 'abandon', now() - make_interval(secs => $3), "
        "now() - make_interval(secs => $3)) RETURNING id",
        campaign_id,
        number,
        age_seconds,
    )
    return request_id


async def _status(db: Any, request_id: int) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT status, status_reason FROM callback_requests WHERE id = $1", request_id
    )
    return row["status"], row["status_reason"]


async def _topics(db: Any, request_id: int) -> list[str]:
    rows = await db.fetch("SELECT topic FROM outbox WHERE request_id = $1 ORDER BY id", request_id)
    return [row["topic"] for row in rows]


async def test_the_campaign_row_mirrors_the_configured_expiry(db: Any) -> None:
    first = await _synced(db, sales=_campaign(expiry=600))
    again = await _synced(db, sales=_campaign(expiry=7200))
    assert first["sales"].id == again["sales"].id
    stored = await db.fetchval("SELECT expiry_seconds FROM campaigns WHERE name = 'sales'")
    assert stored == 7200
    huge = 5 * 10**13  # more seconds than a PostgreSQL interval holds: numeric does
    await _synced(db, sales=_campaign(expiry=huge))
    assert await db.fetchval("SELECT expiry_seconds FROM campaigns") == huge


async def test_the_operator_claim_never_hands_out_an_expired_request(db: Any) -> None:
    sales = (await _synced(db, sales=_campaign()))["sales"]
    # The stale one is first in the claim's order (higher priority, due earlier).
    stale = await _request(db, sales.id, "+79160000001", age_seconds=EXPIRY + 5)
    await db.execute("UPDATE callback_requests SET priority = 50 WHERE id = $1", stale)
    fresh = await _request(db, sales.id, "+79160000002", age_seconds=EXPIRY - 60)
    _attempt, row = await claim_for_operator(db, sales.id, OP1)
    assert row is not None
    assert row["request"]["id"] == fresh
    _attempt, row = await claim_for_operator(db, sales.id, "Local/op2@lab-operators")
    assert row is None
    assert (await _status(db, stale))[0] == "pending"  # the claim only skips it


async def test_call_now_does_not_revive_an_expired_request(db: Any) -> None:
    sales = (await _synced(db, sales=_campaign()))["sales"]
    stale = await _request(db, sales.id, "+79160000003", age_seconds=EXPIRY + 5)
    await db.execute(
        "UPDATE callback_requests SET call_now_requested_at = now() WHERE id = $1", stale
    )
    _attempt, row = await claim_for_operator(db, sales.id, OP1, ordinary=False)
    assert row is None


async def test_the_client_first_claim_never_hands_out_an_expired_request(db: Any) -> None:
    help_line = (await _synced(db, hotline=_campaign("client_first", queue="hotline")))["hotline"]
    stale = await _request(db, help_line.id, "+79160000004", age_seconds=EXPIRY + 5)
    claim = load_queries("modes")["claim_client_first"]
    attempt = uuid.uuid4()
    row = await db.fetchrow(claim, help_line.id, attempt, "lab", f"callbackd-{attempt}", "me")
    assert row is None
    assert (await _status(db, stale))[0] == "pending"


async def test_stale_pending_requests_are_closed_as_expired_with_their_webhook(db: Any) -> None:
    campaigns = await _synced(db, sales=_campaign(), other=_campaign(queue="other"))
    sales, other = campaigns["sales"], campaigns["other"]
    stale = await _request(db, sales.id, "+79160000005", age_seconds=EXPIRY + 1)
    fresh = await _request(db, sales.id, "+79160000006", age_seconds=EXPIRY - 60)
    dialing = await _request(db, sales.id, "+79160000007", age_seconds=EXPIRY + 1)
    await db.execute("UPDATE callback_requests SET status = 'dialing' WHERE id = $1", dialing)
    elsewhere = await _request(db, other.id, "+79160000008", age_seconds=EXPIRY + 1)
    rows = await db.fetch(load_queries("dialer")["expire_requests"], [sales.id])
    assert [row["id"] for row in rows] == [stale]
    assert await _status(db, stale) == ("expired", "past_expiry")
    assert await _topics(db, stale) == ["callback.created", "callback.expired"]
    for untouched, status in ((fresh, "pending"), (dialing, "dialing"), (elsewhere, "pending")):
        assert (await _status(db, untouched))[0] == status


async def test_a_campaign_never_synced_since_the_migration_expires_nothing(db: Any) -> None:
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('old', 'lab', 'old', 'operator_first') RETURNING id"
    )
    old = await _request(db, campaign_id, "+79160000009", age_seconds=10 * 365 * 86400)
    assert await db.fetch(load_queries("dialer")["expire_requests"], [campaign_id]) == []
    _attempt, row = await claim_for_operator(db, campaign_id, OP1)
    assert row is not None
    assert row["request"]["id"] == old


@pytest.mark.parametrize("mode", ["operator_first", "crm_task", "client_first"])
async def test_the_dialer_expires_requests_while_no_operator_is_free(pool: Any, mode: str) -> None:
    """No AMI link, no operator on any board: nothing can be claimed, yet the request gets
    its status within a pass of the loop, in every mode."""
    async with pool.acquire() as conn:
        campaign = (await _synced(conn, sales=_campaign(mode)))["sales"]
        stale = await _request(conn, campaign.id, "+79160000010", age_seconds=EXPIRY + 1)
    kind = ClientFirstDialer if mode == "client_first" else Dialer
    dialer = kind(
        pool=pool, links={}, boards={}, campaigns=[campaign], instance="me", poll_interval=0.05
    )
    task = asyncio.create_task(dialer.run())
    try:
        async with asyncio.timeout(10):
            while (await _status(pool, stale))[0] != "expired":
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await _topics(pool, stale) == ["callback.created", "callback.expired"]


async def test_an_attempt_that_ends_past_expiry_closes_the_request_as_expired(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = (await _synced(conn, sales=_campaign()))["sales"]
        request_id = await _request(conn, campaign.id, "+79160000011", age_seconds=EXPIRY - 1)
        await conn.execute(D["register_instance"], "me", "host", 1)
        _attempt, row = await claim_for_operator(conn, campaign.id, OP1)
    assert row is not None
    assert row["request"]["id"] == request_id
    dialer = Dialer(pool=pool, links={}, boards={}, campaigns=[campaign], instance="me")
    call = _Call(
        attempt=Attempt.model_validate(row["attempt"]),
        campaign=campaign,
        operator=OP1,
        result=asyncio.get_running_loop().create_future(),
    )
    await asyncio.sleep(1.1)  # the client was busy; the call outlived the request's expiry
    await dialer._finish(call, AttemptOutcome.BUSY, None, structlog.get_logger("test"))
    assert await _status(pool, request_id) == ("expired", "past_expiry")
    assert await _topics(pool, request_id) == [
        "callback.created",
        "callback.attempted",
        "callback.expired",
    ]


D = load_queries("dialer")
