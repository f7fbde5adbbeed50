"""The abandon fast lane on the real Postgres: capture stores an abandon and claims for the
free operator the dialer offered, in one statement (migration 0011, capture_and_claim).

The dialer is replaced by a recorder of what capture hands back; the dialer's own side
(placing the call) runs in the end-to-end suites against the real Asterisk.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callbackd.db.pool import connect, create_pool
from callbackd.db.sql import load_queries
from callbackd.domain.capture import CampaignRef, QueueAbandon
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.capture import AbandonCapture, CaptureOutcome, ClaimOffer
from tests.fixtures_postgres import claim_for_operator

pytestmark = pytest.mark.postgres

D = load_queries("dialer")
OP1 = "Local/op1@lab-operators"
# The capture clock reads the real time: the database compares due_at with its own now(),
# so a fixed date here turns "due tomorrow" into "overdue" once that day has come.
NOW = datetime.now(UTC).replace(microsecond=0)


class RecordingClaimer:
    """Offers one operator for every abandon and keeps what capture settled it with."""

    def __init__(self, campaign_id: int, operator: str = OP1) -> None:
        self.campaign_id = campaign_id
        self.operator = operator
        self.offers: list[ClaimOffer] = []
        self.settled: list[tuple[ClaimOffer, Mapping[str, Any] | None]] = []

    def offer_operator(self, campaign_id: int) -> ClaimOffer | None:
        assert campaign_id == self.campaign_id
        offer = ClaimOffer(
            campaign_id=campaign_id,
            operator=self.operator,
            attempt_id=uuid.uuid4(),
            instance="me",
        )
        self.offers.append(offer)
        return offer

    async def take_offer(self, offer: ClaimOffer, result: Mapping[str, Any] | None) -> None:
        self.settled.append((offer, result))


async def _setup(
    pool: Any, initial_delay: timedelta = timedelta(0)
) -> tuple[AbandonCapture, RecordingClaimer, int]:
    campaign_id: int = await pool.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'pbx', 'sales', 'operator_first') RETURNING id"
    )
    await pool.execute(D["register_instance"], "me", "host", 1)
    ref = CampaignRef(
        id=campaign_id,
        name="sales",
        pbx="pbx",
        queue="sales",
        min_hold_seconds=3,
        priority=0,
        initial_delay=initial_delay,
        expiry=timedelta(hours=24),
    )
    capture = AbandonCapture(
        pool, {("pbx", "sales"): ref}, NumberPolicy.build("RU"), clock=lambda: NOW
    )
    claimer = RecordingClaimer(campaign_id)
    capture.claimer = claimer
    return capture, claimer, campaign_id


async def _claim(pool: Any, campaign_id: int, operator: str, owner: str) -> Any:
    """The dialer's own claim (claim_for_operator) for *operator*, as instance *owner*."""
    _attempt, row = await claim_for_operator(pool, campaign_id, operator, owner=owner)
    return row


def _abandon(uniqueid: str = "1700000000.1", number: str = "89161234567") -> QueueAbandon:
    return QueueAbandon(
        pbx="pbx",
        queue="sales",
        uniqueid=uniqueid,
        caller_number=number,
        abandoned_at=NOW,
        hold_seconds=30,
    )


async def test_the_abandon_is_stored_and_claimed_for_the_offered_operator(pool: Any) -> None:
    capture, claimer, _ = await _setup(pool)
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    [(offer, result)] = claimer.settled
    assert result is not None
    assert result["claim"] is not None
    claim = result["claim"]
    assert claim["request"]["number"] == "+79161234567"
    assert claim["request"]["status"] == "dialing"
    assert claim["attempt"]["id"] == str(offer.attempt_id)
    assert claim["attempt"]["operator_interface"] == OP1
    assert claim["attempt"]["operator_channel_id"] == f"callbackd-{offer.attempt_id}"
    assert claim["attempt"]["client_channel_id"] == f"callbackd-{offer.attempt_id}-client"
    assert claim["attempt"]["claimed_by"] == "me"
    row = await pool.fetchrow("SELECT status, abandon_count FROM callback_requests")
    assert (row["status"], row["abandon_count"]) == ("dialing", 1)
    link = await pool.fetchrow("SELECT request_id, outcome FROM queue_abandons")
    assert (link["request_id"], link["outcome"]) == (claim["request"]["id"], "stored")


async def test_an_operator_in_a_call_elsewhere_refuses_the_claim_not_the_abandon(
    pool: Any,
) -> None:
    capture, claimer, campaign_id = await _setup(pool)
    # Another instance is calling OP1 for an earlier request right now.
    earlier = await pool.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "VALUES ($1, '+79160000001', 'api') RETURNING id",
        campaign_id,
    )
    claimed = await _claim(pool, campaign_id, OP1, "me")
    assert claimed["request"]["id"] == earlier
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    [(_offer, result)] = claimer.settled
    assert result is not None
    assert result["claim"] is None
    assert result["claim_refused"] == {
        "sqlstate": "23505",
        "constraint": "attempts_one_in_flight_per_operator",
    }
    stored = await pool.fetchrow(
        "SELECT status FROM callback_requests WHERE number = '+79161234567'"
    )
    assert stored["status"] == "pending"  # kept, for the next free operator
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 1


async def test_a_hostile_number_refuses_the_claim_with_its_check(pool: Any) -> None:
    capture, claimer, campaign_id = await _setup(pool)
    # Someone edited the database by hand and removed callbackd's own guard first.
    await pool.execute("ALTER TABLE callback_requests ALTER COLUMN number TYPE text")
    await pool.execute(
        "INSERT INTO callback_requests (campaign_id, number, source, priority) "
        "VALUES ($1, '+7916&Dial(x)', 'api', 9)",
        campaign_id,
    )
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    [(_offer, result)] = claimer.settled
    assert result is not None
    assert result["claim_refused"]["sqlstate"] == "23514"
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 0
    stored = "SELECT status FROM callback_requests WHERE number = '+79161234567'"
    assert await pool.fetchval(stored) == "pending"


async def test_nothing_due_for_the_operator_claims_nothing(pool: Any) -> None:
    capture, claimer, _ = await _setup(pool, initial_delay=timedelta(days=1))
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    [(_offer, result)] = claimer.settled
    assert result is not None
    assert result["claim"] is None
    assert result["claim_refused"] is None
    assert result["created"] is True
    assert await pool.fetchval("SELECT status FROM callback_requests") == "pending"
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 0


async def test_a_duplicate_sighting_settles_the_offer_with_nothing(pool: Any) -> None:
    capture, claimer, _ = await _setup(pool)
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.DUPLICATE
    assert [result is None for _, result in claimer.settled] == [False, True]
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 1


async def test_a_failed_statement_gives_the_operator_back(pool: Any) -> None:
    capture, claimer, _ = await _setup(pool)
    await pool.execute("ALTER FUNCTION callbackd_capture_and_claim RENAME TO gone")
    with pytest.raises(Exception, match="callbackd_capture_and_claim"):
        await capture.on_abandon(_abandon())
    assert [result for _, result in claimer.settled] == [None]


async def test_the_dialer_claim_and_the_untracked_adoption_queries(pool: Any) -> None:
    """adopt_untracked: this instance's in-flight attempts it does not follow, once older
    than the grace period; not the ones it follows, not other instances'."""
    campaign_id = await pool.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'pbx', 'sales', 'operator_first') RETURNING id"
    )
    await pool.execute(D["register_instance"], "me", "host", 1)
    await pool.execute(D["register_instance"], "other", "host", 2)
    ids = []
    for n, (owner, age) in enumerate([("me", 60), ("me", 60), ("me", 1), ("other", 60)]):
        await pool.execute(
            "INSERT INTO callback_requests (campaign_id, number, source) VALUES ($1, $2, 'api')",
            campaign_id,
            f"+7916000000{n}",
        )
        row = await _claim(pool, campaign_id, f"Local/op{n}@lab-operators", owner)
        assert row is not None
        attempt = uuid.UUID(row["attempt"]["id"])
        await pool.execute(
            "UPDATE attempts SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
            attempt,
            age,
        )
        ids.append(attempt)
    followed = [ids[1]]
    rows = await pool.fetch(
        D["adopt_untracked"], "me", timedelta(seconds=20), followed, [campaign_id], ["pbx"]
    )
    assert [r["id"] for r in rows] == [ids[0]]


# --------------------------------------------------------------------------- wake-ups


class Wakeups:
    """What a worker LISTENing on one channel is told, in commit order."""

    def __init__(self, conn: Any, channel: str) -> None:
        self._conn = conn
        self.channel = channel
        self.payloads: list[str] = []
        self._seen = asyncio.Event()

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(payload)
        self._seen.set()

    async def so_far(self, pool: Any) -> list[str]:
        """Everything committed until now: a marker NOTIFY sent after it arrives last."""
        await pool.execute(f"NOTIFY {self.channel}, 'marker'")
        async with asyncio.timeout(5):
            while "marker" not in self.payloads:
                self._seen.clear()
                await self._seen.wait()
        heard = self.payloads[: self.payloads.index("marker")]
        self.payloads.clear()
        return heard


async def _listen(database: str, channel: str) -> AsyncIterator[Wakeups]:
    conn = await connect(database)
    wakeups = Wakeups(conn, channel)
    await conn.add_listener(channel, wakeups.on_notify)
    try:
        yield wakeups
    finally:
        await conn.close()


@pytest.fixture
async def due_wakeups(database: str) -> AsyncIterator[Wakeups]:
    """The dialers' channel (migration 0012)."""
    async for wakeups in _listen(database, "callbackd_request_due"):
        yield wakeups


@pytest.fixture
async def outbox_wakeups(database: str) -> AsyncIterator[Wakeups]:
    """The outbox worker's channel (migrations 0009, 0014)."""
    async for wakeups in _listen(database, "callbackd_outbox"):
        yield wakeups


async def test_an_abandon_claimed_in_the_same_statement_wakes_no_dialer(
    pool: Any, due_wakeups: Wakeups
) -> None:
    capture, _claimer, _ = await _setup(pool)
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    assert await pool.fetchval("SELECT status FROM callback_requests") == "dialing"
    assert await due_wakeups.so_far(pool) == []


async def test_an_abandon_left_pending_wakes_the_dialers_with_its_campaign(
    pool: Any, due_wakeups: Wakeups
) -> None:
    capture, claimer, campaign_id = await _setup(pool)
    capture.claimer = None  # no operator free: stored only
    assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
    assert await due_wakeups.so_far(pool) == [str(campaign_id)]
    assert claimer.settled == []


async def test_the_wakeup_follows_the_request_as_it_is_at_commit(
    pool: Any, due_wakeups: Wakeups
) -> None:
    _capture, _claimer, campaign_id = await _setup(pool)
    insert = (
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "VALUES ($1, $2, 'api') RETURNING id"
    )
    async with pool.acquire() as conn, conn.transaction():
        gone = await conn.fetchval(insert, campaign_id, "+79160000001")
        await conn.execute(
            "UPDATE callback_requests SET status = 'cancelled', closed_at = now() WHERE id = $1",
            gone,
        )
    assert await due_wakeups.so_far(pool) == []
    request_id = await pool.fetchval(insert, campaign_id, "+79160000002")
    assert await due_wakeups.so_far(pool) == [str(campaign_id)]
    # Due again later (a retry): a change of due_at on a pending request wakes too.
    await pool.execute(
        "UPDATE callback_requests SET due_at = now() + interval '1 minute' WHERE id = $1",
        request_id,
    )
    assert await due_wakeups.so_far(pool) == [str(campaign_id)]


async def test_capture_wakes_its_own_outbox_worker_instead_of_notifying(
    pool: Any, outbox_wakeups: Wakeups
) -> None:
    capture, claimer, _ = await _setup(pool)
    woken: list[str] = []
    capture.on_events_written = lambda: woken.append("outbox")
    assert await capture.on_abandon(_abandon("1700000000.1", "89161234567")) is (
        CaptureOutcome.CREATED
    )
    capture.claimer = None  # stored only, left pending
    assert await capture.on_abandon(_abandon("1700000000.2", "89161234568")) is (
        CaptureOutcome.CREATED
    )
    # Both events are written, in the capture's own transactions; nobody was NOTIFYed...
    topics = await pool.fetch("SELECT topic FROM outbox WHERE channel = 'event' ORDER BY id")
    assert [row["topic"] for row in topics] == ["callback.created", "callback.created"]
    assert await outbox_wakeups.so_far(pool) == []
    # ...the capturing daemon wakes its worker itself, once per new request.
    assert woken == ["outbox", "outbox"]
    assert len(claimer.settled) == 1


async def test_every_other_writer_still_notifies_the_outbox(
    database: str, outbox_wakeups: Wakeups
) -> None:
    # One connection: the capture's mark must end with its transaction, not stay on it.
    pool = await create_pool(database, min_size=1, max_size=1)
    try:
        capture, _claimer, campaign_id = await _setup(pool)
        assert await capture.on_abandon(_abandon()) is CaptureOutcome.CREATED
        assert await outbox_wakeups.so_far(pool) == []
        await pool.fetchval(
            "INSERT INTO callback_requests (campaign_id, number, source) "
            "VALUES ($1, '+79160000009', 'api') RETURNING id",
            campaign_id,
        )
        assert await outbox_wakeups.so_far(pool) == [""]
        await pool.execute(
            "UPDATE callback_requests SET status = 'cancelled', closed_at = now() "
            "WHERE number = '+79160000009'"
        )
        assert await outbox_wakeups.so_far(pool) == [""]
    finally:
        await pool.close()
