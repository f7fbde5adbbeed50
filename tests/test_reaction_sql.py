"""The one-round-trip statements of the reaction path, on the real Postgres.

The dialer claims with ``claim_for_operator`` (call-now first, then the ordinary order, one
statement) and capture stores an abandon with ``callbackd_capture_abandon`` (migration 0010).
They must behave exactly like the statements they replace.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callbackd.db.models import CallbackRequest
from callbackd.db.pool import connect
from callbackd.db.sql import load_queries
from callbackd.domain.capture import CampaignRef, QueueAbandon
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.call_now import assign, request_call_now
from callbackd.services.capture import AbandonCapture, CaptureOutcome
from tests.fixtures_postgres import claim_for_operator

pytestmark = pytest.mark.postgres

D = load_queries("dialer")
OP1, OP2 = "Local/op1@lab-operators", "Local/op2@lab-operators"
# The capture clock reads the real time: the database compares due_at with its own now(),
# so a fixed date here turns "due tomorrow" into "overdue" once that day has come.
NOW = datetime.now(UTC).replace(microsecond=0)


async def _campaign(db: Any, mode: str = "operator_first") -> int:
    campaign_id: int = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) VALUES ('sales', 'pbx', 'sales', $1) "
        "RETURNING id",
        mode,
    )
    return campaign_id


async def _request(db: Any, campaign_id: int, number: str, due_in: timedelta = timedelta(0)) -> int:
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, due_at) "
        "VALUES ($1, $2, 'api', now() + $3::interval) RETURNING id",
        campaign_id,
        number,
        due_in,
    )
    return request_id


async def _claim(
    db: Any, campaign_id: int, operator: str, *, ordinary: bool = True
) -> CallbackRequest | None:
    attempt, row = await claim_for_operator(db, campaign_id, operator, ordinary=ordinary)
    if row is None:
        return None
    assert row["attempt"]["id"] == str(attempt)
    assert row["attempt"]["operator_interface"] == operator
    assert row["attempt"]["state"] == "originating"
    return CallbackRequest.model_validate(row["request"])


async def test_call_now_first_whatever_its_due_time_then_the_ordinary_order(db: Any) -> None:
    campaign = await _campaign(db)
    ordinary = await _request(db, campaign, "+79161234567")
    later = await _request(db, campaign, "+79161234568", due_in=timedelta(hours=3))
    not_due = await _request(db, campaign, "+79161234569", due_in=timedelta(hours=1))
    await request_call_now(db, later)
    first = await _claim(db, campaign, OP1)
    assert first is not None
    assert (first.id, first.status, first.call_now_requested_at) == (later, "dialing", None)
    second = await _claim(db, campaign, OP2)
    assert second is not None
    assert second.id == ordinary
    assert await _claim(db, campaign, "Local/op3@lab-operators") is None
    status = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", not_due)
    assert status == "pending"


async def test_the_ordinary_order_keeps_a_call_now_ask_it_did_not_serve(db: Any) -> None:
    # A call-now request assigned to OP2 is not for OP1 (in neither branch): OP1 gets the
    # ordinary head, and the ask stays for OP2.
    campaign = await _campaign(db)
    mine = await _request(db, campaign, "+79161234567")
    theirs = await _request(db, campaign, "+79161234568")
    await assign(db, theirs, OP2)
    await request_call_now(db, theirs)
    claimed = await _claim(db, campaign, OP1)
    assert claimed is not None
    assert claimed.id == mine
    assert claimed.call_now_requested_at is None
    asked = await db.fetchval(
        "SELECT call_now_requested_at FROM callback_requests WHERE id = $1", theirs
    )
    assert asked is not None
    claimed = await _claim(db, campaign, OP2)
    assert claimed is not None
    assert (claimed.id, claimed.assigned_operator) == (theirs, OP2)


async def test_crm_task_mode_claims_only_call_now_requests(db: Any) -> None:
    campaign = await _campaign(db, "crm_task")
    ordinary = await _request(db, campaign, "+79161234567")
    assert await _claim(db, campaign, OP1, ordinary=False) is None
    await request_call_now(db, ordinary)
    claimed = await _claim(db, campaign, OP1, ordinary=False)
    assert claimed is not None
    assert claimed.id == ordinary


async def test_a_call_now_claim_leaves_the_ordinary_candidate_unlocked(database: str) -> None:
    """The ordinary branch does not run when the call-now branch found a request: another
    instance can claim the ordinary head while this claim's transaction is still open."""
    one, two = await connect(database), await connect(database)
    try:
        campaign = await _campaign(one)
        ordinary = await _request(one, campaign, "+79161234567")
        asked = await _request(one, campaign, "+79161234568")
        await request_call_now(one, asked)
        async with one.transaction():
            claimed = await _claim(one, campaign, OP1)
            assert claimed is not None
            assert claimed.id == asked
            other = await asyncio.wait_for(_claim(two, campaign, OP2), timeout=5)
            assert other is not None
            assert other.id == ordinary
    finally:
        await one.close()
        await two.close()


async def test_a_declined_request_is_not_offered_to_the_same_operator_again(db: Any) -> None:
    campaign = await _campaign(db)
    request_id = await _request(db, campaign, "+79161234567")
    claimed = await _claim(db, campaign, OP1)
    assert claimed is not None
    await db.execute(
        "UPDATE attempts SET state = 'finished', outcome = 'operator_declined', "
        "ended_at = now() WHERE request_id = $1",
        request_id,
    )
    await db.execute("UPDATE callback_requests SET status = 'pending' WHERE id = $1", request_id)
    assert await _claim(db, campaign, OP1) is None
    again = await _claim(db, campaign, OP2)
    assert again is not None
    assert again.id == request_id


# ----------------------------------------------------------------- capture in one call


async def test_one_sighting_wins_when_live_event_and_replay_race(pool: Any) -> None:
    """Two concurrent writes of the same abandon (its live event and its queue_log replay):
    one request, one abandon counted, the abandon linked to it."""
    campaign_id = await _campaign(pool)
    ref = CampaignRef(
        id=campaign_id,
        name="sales",
        pbx="pbx",
        queue="sales",
        min_hold_seconds=3,
        priority=0,
        initial_delay=timedelta(0),
        expiry=timedelta(hours=24),
    )
    policy = NumberPolicy.build("RU")
    captures = [
        AbandonCapture(pool, {("pbx", "sales"): ref}, policy, clock=lambda: NOW) for _ in range(2)
    ]
    abandon = QueueAbandon(
        pbx="pbx",
        queue="sales",
        uniqueid="1700000000.7",
        caller_number="89161234567",
        abandoned_at=NOW,
        hold_seconds=30,
    )
    outcomes = await asyncio.gather(*(c.on_abandon(abandon) for c in captures))
    assert sorted(outcomes) == sorted([CaptureOutcome.CREATED, CaptureOutcome.DUPLICATE])
    request = await pool.fetchrow("SELECT id, abandon_count FROM callback_requests")
    assert request["abandon_count"] == 1
    link = await pool.fetchrow("SELECT request_id, outcome FROM queue_abandons")
    assert (link["request_id"], link["outcome"]) == (request["id"], "stored")
    second = QueueAbandon(
        pbx="pbx",
        queue="sales",
        uniqueid="1700000000.9",
        caller_number="89161234567",
        abandoned_at=NOW,
        hold_seconds=40,
    )
    assert await captures[0].on_abandon(second) is CaptureOutcome.MERGED
    merged = await pool.fetchrow(
        "SELECT request_id, outcome FROM queue_abandons WHERE uniqueid = '1700000000.9'"
    )
    assert (merged["request_id"], merged["outcome"]) == (request["id"], "merged")
    assert await pool.fetchval("SELECT abandon_count FROM callback_requests") == 2
