"""Abandon capture against the real Postgres: idempotence, merging, refusals, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect, create_pool
from callbackd.domain.capture import AgentConnected, CampaignRef, QueueAbandon
from callbackd.domain.numbers import NumberPolicy
from callbackd.lab.postgres import LabPostgres
from callbackd.services.capture import AbandonCapture, CaptureOutcome
from callbackd.services.queue_log import QueueLogReplayer, parse_queue_log

pytestmark = pytest.mark.postgres

POLICY = NumberPolicy.build("RU")
# The capture clock reads the real time: the database compares due_at with its own now(),
# so a fixed date here turns "due tomorrow" into "overdue" once that day has come.
NOW = datetime.now(UTC).replace(microsecond=0)


async def _campaign(conn: Any, name: str = "sales", queue: str = "sales") -> CampaignRef:
    campaign_id = await conn.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) VALUES ($1, 'pbx', $2, 'operator_first') "
        "RETURNING id",
        name,
        queue,
    )
    return CampaignRef(
        id=campaign_id,
        name=name,
        pbx="pbx",
        queue=queue,
        min_hold_seconds=3,
        priority=0,
        initial_delay=timedelta(0),
        expiry=timedelta(hours=24),
    )


def _abandon(uniqueid: str, number: str | None = "8 (916) 123-45-67", **kw: Any) -> QueueAbandon:
    values: dict[str, Any] = {
        "pbx": "pbx",
        "queue": "sales",
        "uniqueid": uniqueid,
        "caller_number": number,
        "abandoned_at": NOW,
        "hold_seconds": 30,
        "position": 2,
        "original_position": 3,
        "caller_name": "Иван Петров",
        "linkedid": uniqueid,
    }
    values.update(kw)
    return QueueAbandon(**values)


async def _capture(pool: Any, *campaigns: CampaignRef, **kw: Any) -> AbandonCapture:
    return AbandonCapture(
        pool, {(c.pbx, c.queue): c for c in campaigns}, POLICY, clock=lambda: NOW, **kw
    )


async def test_first_abandon_creates_one_request(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    assert await capture.on_abandon(_abandon("1700000000.1")) is CaptureOutcome.CREATED
    rows = await pool.fetch("SELECT * FROM callback_requests")
    assert len(rows) == 1
    row = rows[0]
    assert row["number"] == "+79161234567"
    assert row["status"] == "pending"
    assert row["source"] == "abandon"
    assert row["queue"] == "sales"
    assert row["hold_seconds"] == 30
    assert row["caller_name"] == "Иван Петров"
    assert (row["position"], row["original_position"]) == (2, 3)
    assert row["first_joined_at"] == NOW - timedelta(seconds=30)
    assert row["due_at"] == NOW
    assert row["abandon_count"] == 1


async def test_same_event_twice_is_one_row(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    assert await capture.on_abandon(_abandon("1700000000.1")) is CaptureOutcome.CREATED
    assert await capture.on_abandon(_abandon("1700000000.1")) is CaptureOutcome.DUPLICATE
    assert await pool.fetchval("SELECT count(*) FROM callback_requests") == 1
    assert await pool.fetchval("SELECT abandon_count FROM callback_requests") == 1


async def test_second_abandon_of_a_number_merges_and_keeps_the_earliest_join(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    await capture.on_abandon(_abandon("1.1", hold_seconds=60))
    later = _abandon("2.2", number="+79161234567", abandoned_at=NOW + timedelta(minutes=5))
    assert await capture.on_abandon(later) is CaptureOutcome.MERGED
    row = await pool.fetchrow("SELECT * FROM callback_requests")
    assert row["abandon_count"] == 2
    assert row["first_joined_at"] == NOW - timedelta(seconds=60)
    assert row["last_abandon_at"] == NOW + timedelta(minutes=5)
    assert row["uniqueid"] == "2.2"
    links = await pool.fetch("SELECT uniqueid, outcome, request_id FROM queue_abandons ORDER BY 1")
    assert [(r["uniqueid"], r["outcome"]) for r in links] == [("1.1", "stored"), ("2.2", "merged")]
    assert {r["request_id"] for r in links} == {row["id"]}


async def test_short_hold_and_withheld_are_not_stored_and_logged_once(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    with capture_logs() as logs:
        assert await capture.on_abandon(_abandon("1.1", hold_seconds=1)) is CaptureOutcome.SKIPPED
        assert await capture.on_abandon(_abandon("2.2", number="anonymous")) is (
            CaptureOutcome.SKIPPED
        )
        assert await capture.on_abandon(_abandon("2.2", number="anonymous")) is (
            CaptureOutcome.DUPLICATE
        )
    assert await pool.fetchval("SELECT count(*) FROM callback_requests") == 0
    reasons = [e["reason"] for e in logs if e["event"] == "abandon not stored"]
    assert reasons == ["short_hold", "withheld"]


async def test_queues_without_a_campaign_are_not_ours(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    outcome = await capture.on_abandon(_abandon("1.1", queue="other"))
    assert outcome is CaptureOutcome.NOT_OURS
    assert await pool.fetchval("SELECT count(*) FROM queue_abandons") == 0


async def test_agent_connect_resolves_the_pending_request(pool: Any) -> None:
    async with pool.acquire() as conn:
        sales = await _campaign(conn)
        support = await _campaign(conn, "support", "support")
    capture = await _capture(pool, sales, support)
    await capture.on_abandon(_abandon("1.1"))
    await capture.on_abandon(_abandon("2.2", queue="support"))
    connected = AgentConnected(
        pbx="pbx",
        queue="sales",
        uniqueid="3.3",
        caller_number="+79161234567",
        member_interface="Local/op1@ops",
        connected_at=NOW,
    )
    assert await capture.on_agent_connect(connected) == 1
    rows = await pool.fetch("SELECT queue, status FROM callback_requests ORDER BY id")
    assert [(r["queue"], r["status"]) for r in rows] == [
        ("sales", "resolved_inbound"),
        ("support", "pending"),
    ]
    interaction = await pool.fetchrow("SELECT * FROM interactions")
    assert interaction["operator_interface"] == "Local/op1@ops"
    assert interaction["source"] == "inbound"
    # The same AgentConnect seen again records nothing new.
    assert await capture.on_agent_connect(connected) == 0
    assert await pool.fetchval("SELECT count(*) FROM interactions") == 1


async def test_agent_connect_can_resolve_in_every_campaign(pool: Any) -> None:
    async with pool.acquire() as conn:
        sales = await _campaign(conn)
        support = await _campaign(conn, "support", "support")
    capture = await _capture(pool, sales, support, resolve_in_all_campaigns=True)
    await capture.on_abandon(_abandon("1.1"))
    await capture.on_abandon(_abandon("2.2", queue="support"))
    connected = AgentConnected("pbx", "sales", "3.3", "+79161234567", "Local/op1@ops", NOW)
    assert await capture.on_agent_connect(connected) == 2


async def test_dialing_requests_are_left_to_the_dialer(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    await capture.on_abandon(_abandon("1.1"))
    await pool.execute("UPDATE callback_requests SET status = 'dialing'")
    connected = AgentConnected("pbx", "sales", "3.3", "+79161234567", "Local/op1@ops", NOW)
    assert await capture.on_agent_connect(connected) == 0
    assert await pool.fetchval("SELECT status FROM callback_requests") == "dialing"


# -- Postgres going away: a private cluster, so the other tests keep theirs -----------------


@pytest.fixture
def own_cluster() -> Iterator[LabPostgres]:
    cluster = LabPostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


async def _migrated(cluster: LabPostgres) -> str:
    dsn = cluster.create_database("capture")
    conn = await connect(dsn)
    try:
        await apply_migrations(conn, discover(default_migrations_dir()))
    finally:
        await conn.close()
    return dsn


async def test_abandons_survive_a_database_outage(own_cluster: LabPostgres) -> None:
    dsn = await _migrated(own_cluster)
    pool = await create_pool(dsn, min_size=1, max_size=2, timeout=1, command_timeout=2)
    try:
        async with pool.acquire() as conn:
            campaign = await _campaign(conn)
        capture = await _capture(pool, campaign, write_timeout=1.0)
        flusher = asyncio.create_task(capture.run_flusher(retry_seconds=0.1))
        await asyncio.to_thread(own_cluster.kill)
        with capture_logs() as logs:
            assert await capture.on_abandon(_abandon("1.1")) is CaptureOutcome.BUFFERED
            assert await capture.on_abandon(_abandon("2.2", number="+79161230000")) is (
                CaptureOutcome.BUFFERED
            )
        assert not capture.healthy
        assert capture.buffered == 2
        assert any(e["event"] == "database unavailable; abandon kept in memory" for e in logs)
        await asyncio.to_thread(own_cluster.start)
        async with asyncio.timeout(15):
            while capture.buffered:
                await asyncio.sleep(0.05)
        assert capture.healthy
        rows = await pool.fetch("SELECT number FROM callback_requests ORDER BY id")
        assert [r["number"] for r in rows] == ["+79161234567", "+79161230000"]
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
    finally:
        pool.terminate()


async def test_buffer_overflow_is_logged_and_counted(own_cluster: LabPostgres) -> None:
    dsn = await _migrated(own_cluster)
    pool = await create_pool(dsn, min_size=1, max_size=2, timeout=1, command_timeout=2)
    try:
        async with pool.acquire() as conn:
            campaign = await _campaign(conn)
        capture = await _capture(pool, campaign, write_timeout=1.0, buffer_limit=1)
        await asyncio.to_thread(own_cluster.kill)
        with capture_logs() as logs:
            assert await capture.on_abandon(_abandon("1.1")) is CaptureOutcome.BUFFERED
            assert await capture.on_abandon(_abandon("2.2", number="+79161230000")) is (
                CaptureOutcome.LOST
            )
        lost = [e for e in logs if e["event"].startswith("abandon LOST")]
        assert len(lost) == 1
        assert lost[0]["number"] == "+79161230000"  # masked by the logging pipeline, not here
        assert capture.stats.lost == 1
    finally:
        pool.terminate()


# -- queue_log --------------------------------------------------------------------------------

QUEUE_LOG = """\
1763812800|1763812790.5|sales|NONE|ENTERQUEUE||79161234567|1
1763812830|1763812790.5|sales|NONE|ABANDON|1|1|30
1763812840|1763812841.7|sales|NONE|ENTERQUEUE||79161239999|1
1763812845|1763812841.7|sales|Local/op1@ops|CONNECT|5|1763812841.8|2
1763812850|1763812851.1|sales|NONE|ENTERQUEUE||anonymous|1
1763812860|1763812851.1|sales|NONE|ABANDON|1|1|10
1763812100|old.1|sales|NONE|ABANDON|1|1|10
garbage line
"""


def test_queue_log_parsing_pairs_abandon_with_its_caller() -> None:
    since = datetime.fromtimestamp(1763812700, UTC)
    abandons = list(parse_queue_log(QUEUE_LOG.splitlines(), pbx="pbx", since=since))
    assert [(a.uniqueid, a.caller_number, a.hold_seconds) for a in abandons] == [
        ("1763812790.5", "79161234567", 30),
        ("1763812851.1", "anonymous", 10),
    ]
    assert all(a.replayed and a.queue == "sales" for a in abandons)
    assert abandons[0].abandoned_at == datetime.fromtimestamp(1763812830, UTC)


async def test_replay_creates_missed_requests_once(pool: Any, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    now = datetime.now(UTC)
    stamp = int(now.timestamp()) - 60
    log_file = tmp_path / "queue_log"
    log_file.write_text(
        f"{stamp}|{stamp}.1|sales|NONE|ENTERQUEUE||79161234567|1\n"
        f"{stamp + 20}|{stamp}.1|sales|NONE|ABANDON|1|1|20\n"
    )
    capture = AbandonCapture(pool, {("pbx", "sales"): campaign}, POLICY)
    replayer = QueueLogReplayer(capture, pbx="pbx", path=log_file)
    first = await replayer.replay()
    second = await replayer.replay()
    assert (first.created, first.already_known) == (1, 0)
    assert (second.created, second.already_known) == (0, 1)
    assert await pool.fetchval("SELECT count(*) FROM callback_requests") == 1


async def test_replay_after_a_live_abandon_still_recovers_the_older_missed_ones(
    pool: Any, tmp_path: Path
) -> None:
    """The link comes back and a live abandon is stored before the replay starts: the
    abandons missed while the link was down (older than it) are still recovered."""
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = AbandonCapture(pool, {("pbx", "sales"): campaign}, POLICY)
    now = int(datetime.now(UTC).timestamp())
    missed, live = now - 3600, now - 5  # an hour apart: far beyond any overlap
    log_file = tmp_path / "queue_log"
    log_file.write_text(
        f"{missed - 30}|{missed}.7|sales|NONE|ENTERQUEUE||79161234567|1\n"
        f"{missed}|{missed}.7|sales|NONE|ABANDON|1|1|30\n"
        f"{live - 30}|{live}.9|sales|NONE|ENTERQUEUE||79167654321|1\n"
        f"{live}|{live}.9|sales|NONE|ABANDON|1|1|30\n"
    )
    heard_live = QueueAbandon(
        pbx="pbx",
        queue="sales",
        uniqueid=f"{live}.9",
        caller_number="79167654321",
        abandoned_at=datetime.fromtimestamp(live, UTC),
        hold_seconds=30,
    )
    assert await capture.on_abandon(heard_live) is CaptureOutcome.CREATED
    report = await QueueLogReplayer(capture, pbx="pbx", path=log_file).replay()
    assert (report.read, report.created, report.already_known) == (2, 1, 1)
    numbers = await pool.fetch("SELECT number FROM callback_requests ORDER BY number")
    assert [row["number"] for row in numbers] == ["+79161234567", "+79167654321"]


async def test_replay_passes_over_lines_with_a_bad_or_future_time(
    pool: Any, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = AbandonCapture(pool, {("pbx", "sales"): campaign}, POLICY)
    now = int(datetime.now(UTC).timestamp())
    good, future = now - 60, now + 86_400
    log_file = tmp_path / "queue_log"
    log_file.write_text(
        f"99999999999999999999|1.1|sales|NONE|ENTERQUEUE||79160000001|1\n"
        f"99999999999999999999|1.1|sales|NONE|ABANDON|1|1|30\n"
        f"{future}|2.2|sales|NONE|ENTERQUEUE||79160000002|1\n"
        f"{future}|2.2|sales|NONE|ABANDON|1|1|30\n"
        f"{good - 30}|{good}.3|sales|NONE|ENTERQUEUE||79161234567|1\n"
        f"{good}|{good}.3|sales|NONE|ABANDON|1|1|30\n"
    )
    report = await QueueLogReplayer(capture, pbx="pbx", path=log_file).replay()
    assert (report.read, report.created) == (1, 1)
    assert await pool.fetchval("SELECT number FROM callback_requests") == "+79161234567"
    # A line from the future is not an abandon yet: nothing recorded that a later replay,
    # once its time has come, would take for already seen.
    assert await pool.fetchval("SELECT count(*) FROM queue_abandons") == 1


async def test_a_new_request_wakes_the_dialer_once_committed(pool: Any) -> None:
    async with pool.acquire() as conn:
        campaign = await _campaign(conn)
    capture = await _capture(pool, campaign)
    stored: list[int] = []

    def on_stored() -> None:
        stored.append(1)

    capture.on_stored = on_stored
    assert await capture.on_abandon(_abandon("1700000000.7")) is CaptureOutcome.CREATED
    assert await pool.fetchval("SELECT count(*) FROM callback_requests") == 1
    assert stored == [1]
    # A second abandon of the same caller merges: nothing new is due, no wake-up.
    assert await capture.on_abandon(_abandon("1700000000.8")) is CaptureOutcome.MERGED
    assert stored == [1]
