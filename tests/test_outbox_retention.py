"""Outbox retention: the pure decisions, and the pruner against the real Postgres: old
finished events go with their deliveries; young, undelivered and not-fanned-out ones stay;
an SMS stays while its quiet window lasts; batches; concurrent pruners; the log line and the
metric."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from callbackd.db.pool import connect
from callbackd.db.sql import load_queries
from callbackd.domain.retention import PruneBatch, PruneTally, pruning_enabled
from callbackd.http.metrics import ApiMetrics
from callbackd.lab.daemon import wait_until
from callbackd.services.outbox import OutboxWorker
from callbackd.services.outbox_retention import OutboxPruner
from callbackd.settings import load_settings

A = "+79161234567"
B = "+79167654321"
RETENTION_DAYS = 7
OLD = 8.0  # days: past the retention
YOUNG = 6.0  # days: inside it

Q = load_queries("outbox")

postgres = pytest.mark.postgres


def pruner(pool: Any, *, batch_size: int = 1000, **kw: Any) -> OutboxPruner:
    options: dict[str, Any] = {"interval": 3600.0, "pause": 0.0, **kw}
    return OutboxPruner(
        pool, retention_days=RETENTION_DAYS, timeout=10.0, batch_size=batch_size, **options
    )


async def add_event(
    db: Any,
    *,
    age_days: float,
    fanned_out: bool = True,
    deliveries: tuple[str, ...] = (),
    topic: str = "callback.created",
) -> int:
    """An event written *age_days* ago; each delivery 'delivered', 'given_up' or 'pending'."""
    event_id: int = await db.fetchval(
        "INSERT INTO outbox (channel, topic, payload, created_at, fanned_out_at) "
        "VALUES ('event', $1, '{}', now() - make_interval(secs => $2), "
        "CASE WHEN $3 THEN now() - make_interval(secs => $2) END) RETURNING id",
        topic,
        age_days * 86400,
        fanned_out,
    )
    await add_deliveries(db, event_id, deliveries)
    return event_id


async def add_sms(
    db: Any, number: str, *, age_days: float, quiet_for_hours: float, delivery: str = "delivered"
) -> int:
    """An SMS written *age_days* ago whose quiet window ends *quiet_for_hours* from now."""
    sms_id: int = await db.fetchval(
        "INSERT INTO outbox (channel, topic, number, quiet_until, payload, created_at, "
        "fanned_out_at) VALUES ('sms', 'sms.caller', $1, now() + make_interval(secs => $3), "
        "'{}', now() - make_interval(secs => $2), now() - make_interval(secs => $2)) "
        "RETURNING id",
        number,
        age_days * 86400,
        quiet_for_hours * 3600,
    )
    await add_deliveries(db, sms_id, (delivery,), targets=("sms",))
    return sms_id


async def add_deliveries(
    db: Any, outbox_id: int, states: tuple[str, ...], targets: tuple[str, ...] | None = None
) -> None:
    names = targets or tuple(f"crm{index}" for index in range(len(states)))
    for target, state in zip(names, states, strict=True):
        await db.execute(
            "INSERT INTO outbox_deliveries (outbox_id, target, delivered_at, given_up_at) "
            "VALUES ($1, $2, CASE WHEN $3 = 'delivered' THEN now() END, "
            "CASE WHEN $3 = 'given_up' THEN now() END)",
            outbox_id,
            target,
            state,
        )


async def outbox_ids(db: Any) -> set[int]:
    return {row["id"] for row in await db.fetch("SELECT id FROM outbox")}


async def delivery_count(db: Any) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM outbox_deliveries")
    return count


# -- pure decisions ------------------------------------------------------------------------------
def test_zero_days_keeps_the_outbox_forever() -> None:
    assert pruning_enabled(0) is False
    assert pruning_enabled(1) is True
    assert pruning_enabled(7) is True
    with pytest.raises(ValueError, match="negative"):
        pruning_enabled(-1)


def test_a_walk_ends_at_the_first_batch_that_read_fewer_rows_than_it_could() -> None:
    cursor = (datetime(2026, 1, 1, tzinfo=UTC), 42)
    assert PruneBatch(scanned=10, events=0, sms=0, deliveries=0, cursor=cursor).ends_walk(10) is (
        False
    )
    assert PruneBatch(scanned=9, events=9, sms=0, deliveries=0, cursor=cursor).ends_walk(10)
    assert PruneBatch(scanned=0, events=0, sms=0, deliveries=0, cursor=None).ends_walk(10)


def test_a_tally_sums_its_batches() -> None:
    tally = PruneTally()
    assert not tally.deleted_anything
    tally = tally.add(PruneBatch(scanned=5, events=3, sms=1, deliveries=4, cursor=None))
    tally = tally.add(PruneBatch(scanned=5, events=0, sms=0, deliveries=0, cursor=None))
    assert tally == PruneTally(events=3, sms=1, deliveries=4, batches=2)
    assert tally.deleted_anything


def test_retention_days_zero_starts_no_pruner() -> None:
    with pytest.raises(ValueError, match="forever"):
        OutboxPruner(object(), retention_days=0, timeout=1.0)


def test_metrics_count_the_pruned_rows_by_kind() -> None:
    stand_in = SimpleNamespace(
        capture=None,
        dialer=None,
        links={},
        outbox_pruner=SimpleNamespace(total=PruneTally(events=12, sms=2, deliveries=20, batches=3)),
    )
    metrics = ApiMetrics(lambda: stand_in)
    text = generate_latest(metrics.registry).decode()
    assert 'callbackd_outbox_pruned_total{kind="event"} 12.0' in text
    assert 'callbackd_outbox_pruned_total{kind="sms"} 2.0' in text
    assert 'callbackd_outbox_pruned_total{kind="delivery"} 20.0' in text


async def test_an_unreachable_database_pauses_pruning_until_the_next_run() -> None:
    class DownPool:
        def acquire(self, *, timeout: float) -> Any:
            raise OSError("connection refused")

    job = pruner(DownPool(), interval=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(job.run())
        try:
            await wait_until(
                lambda: sum(e["log_level"] == "error" for e in logs) >= 2,
                timeout=5,
                what="two runs that found the database down",
            )
            assert not task.done()  # the task keeps running: the next run tries again
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert {e["event"] for e in logs} == {
        "database unavailable; outbox pruning resumes at the next run"
    }
    assert job.total == PruneTally()


# -- against the real Postgres -----------------------------------------------------------------
@postgres
async def test_old_finished_events_go_with_their_deliveries(pool: Any, db: Any) -> None:
    delivered = await add_event(db, age_days=OLD, deliveries=("delivered", "delivered"))
    given_up = await add_event(db, age_days=30, deliveries=("delivered", "given_up"))
    without_targets = await add_event(db, age_days=OLD)
    kept = await add_event(db, age_days=YOUNG, deliveries=("delivered",))

    tally = await pruner(pool).prune_once()

    assert tally == PruneTally(events=3, sms=0, deliveries=4, batches=1)
    assert await outbox_ids(db) == {kept}
    assert await delivery_count(db) == 1
    gone = [delivered, given_up, without_targets]
    left = await db.fetchval(
        "SELECT count(*) FROM outbox_deliveries WHERE outbox_id = ANY ($1::bigint[])", gone
    )
    assert left == 0


@postgres
async def test_young_events_are_kept_however_finished(pool: Any, db: Any) -> None:
    young = {
        await add_event(db, age_days=YOUNG, deliveries=("delivered",)),
        await add_event(db, age_days=0, deliveries=("given_up",)),
        await add_event(db, age_days=RETENTION_DAYS - 0.01),
    }
    old = await add_event(db, age_days=RETENTION_DAYS + 0.01)

    tally = await pruner(pool).prune_once()

    assert (tally.events, tally.deliveries) == (1, 0)
    assert await outbox_ids(db) == young
    assert old not in await outbox_ids(db)
    # A longer retention keeps what a shorter one would delete.
    ten_days = OutboxPruner(pool, retention_days=10, timeout=10.0, pause=0.0)
    await add_event(db, age_days=9, deliveries=("delivered",))
    assert (await ten_days.prune_once()).events == 0


@postgres
async def test_old_events_still_being_delivered_or_not_fanned_out_are_kept(
    pool: Any, db: Any
) -> None:
    kept = {
        await add_event(db, age_days=OLD, fanned_out=False),
        await add_event(db, age_days=365, fanned_out=False),
        await add_event(db, age_days=OLD, deliveries=("pending",)),
        await add_event(db, age_days=90, deliveries=("delivered", "pending", "given_up")),
    }
    finished = await add_event(db, age_days=OLD, deliveries=("delivered",))

    tally = await pruner(pool).prune_once()

    assert tally == PruneTally(events=1, sms=0, deliveries=1, batches=1)
    assert await outbox_ids(db) == kept
    assert finished not in await outbox_ids(db)
    assert await delivery_count(db) == 4  # every delivery of the kept events is still there


@postgres
async def test_an_sms_is_kept_while_its_quiet_window_lasts(pool: Any, db: Any) -> None:
    # Sent 8 days ago to A, with a 10-day window (sms.window_hours = 240): delivered and old,
    # but the row is what keeps the next SMS to A out for two more days.
    quiet = await add_sms(db, A, age_days=OLD, quiet_for_hours=48)
    # Sent 8 days ago to B with a one-day window, long over.
    over = await add_sms(db, B, age_days=OLD, quiet_for_hours=-24 * 7)
    # An old SMS still being retried stays whatever its window.
    retried = await add_sms(
        db, "+79160000001", age_days=OLD, quiet_for_hours=-1, delivery="pending"
    )

    tally = await pruner(pool).prune_once()

    assert tally == PruneTally(events=0, sms=1, deliveries=1, batches=1)
    assert await outbox_ids(db) == {quiet, retried}
    assert over not in await outbox_ids(db)

    async def plan_sms(number: str, key: str) -> Any:
        return await db.fetchrow(
            Q["add_sms"], "sms.caller", key, None, None, number, 3600.0, {"text": "hello"}
        )

    # The guarantee still holds: the worker's statement refuses a second SMS to A...
    assert await plan_sms(A, "sms:after-prune-a") is None
    # ...while B, whose window is over, may be texted again.
    assert await plan_sms(B, "sms:after-prune-b") is not None


@postgres
async def test_a_run_deletes_more_rows_than_one_batch(pool: Any, db: Any) -> None:
    for _ in range(25):
        await add_event(db, age_days=OLD, deliveries=("delivered",))
    young = await add_event(db, age_days=YOUNG)

    tally = await pruner(pool, batch_size=10).prune_once()

    assert tally == PruneTally(events=25, sms=0, deliveries=25, batches=3)  # 10, 10, then 5
    assert await outbox_ids(db) == {young}

    for _ in range(20):  # an exact multiple: the third batch reads nothing and ends the walk
        await add_event(db, age_days=OLD)
    assert await pruner(pool, batch_size=10).prune_once() == PruneTally(events=20, batches=3)
    assert await outbox_ids(db) == {young}


@postgres
async def test_more_undeliverable_rows_than_a_batch_do_not_stall_the_walk(
    pool: Any, db: Any
) -> None:
    """The oldest rows are stuck (say, to an endpoint since removed): read past, not deleted."""
    stuck = {await add_event(db, age_days=60, deliveries=("pending",)) for _ in range(15)}
    for _ in range(5):
        await add_event(db, age_days=OLD, deliveries=("delivered",))

    tally = await pruner(pool, batch_size=10).prune_once()

    # 20 old rows: two full batches (the first all stuck), then an empty one ends the walk.
    assert (tally.events, tally.deliveries, tally.batches) == (5, 5, 3)
    assert await outbox_ids(db) == stuck


@postgres
async def test_concurrent_pruners_delete_each_row_once(pool: Any, db: Any, database: str) -> None:
    await db.execute(
        "INSERT INTO outbox (channel, topic, payload, created_at, fanned_out_at) "
        "SELECT 'event', 'callback.created', '{}', now() - interval '8 days' + make_interval("
        "secs => n), now() FROM generate_series(1, 600) AS n"
    )
    await db.execute(
        "INSERT INTO outbox_deliveries (outbox_id, target, delivered_at) "
        "SELECT id, 'crm', now() FROM outbox"
    )
    pruners = [pruner(pool, batch_size=25) for _ in range(3)]
    tallies = await asyncio.wait_for(
        asyncio.gather(*(job.prune_once() for job in pruners)), timeout=60
    )
    assert sum(t.events for t in tallies) == 600
    assert sum(t.deliveries for t in tallies) == 600
    assert await outbox_ids(db) == set()
    assert await delivery_count(db) == 0


@postgres
async def test_a_row_another_transaction_holds_is_skipped_not_waited_for(
    pool: Any, db: Any, database: str
) -> None:
    held = await add_event(db, age_days=OLD, deliveries=("delivered",))
    free = await add_event(db, age_days=OLD, deliveries=("delivered",))
    other = await connect(database)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", held)
            tally = await asyncio.wait_for(pruner(pool).prune_once(), timeout=5)
            assert (tally.events, tally.deliveries) == (1, 1)
            assert await outbox_ids(db) == {held}
    finally:
        await other.close()
    assert free not in await outbox_ids(db)
    assert (await pruner(pool).prune_once()).events == 1  # the next run takes it
    assert await outbox_ids(db) == set()


@postgres
async def test_events_of_real_state_changes_go_once_delivered(
    pool: Any, db: Any, database: str
) -> None:
    settings = load_settings(
        None,
        env={},
        database={"dsn": database, "min_connections": 1, "max_connections": 4},
        webhooks={
            "allow_private_targets": True,
            "endpoints": [
                {
                    "name": "crm",
                    "url": "http://127.0.0.1:9/hooks",
                    "secret": "crm-secret-0123456789abcdef",
                    "topics": ["callback.completed"],
                }
            ],
        },
        campaigns={"sales": {"queue": "sales", "caller_id": "+15551234567"}},
    )
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'pbx', 'sales', 'operator_first') RETURNING id"
    )
    request_id = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, queue) "
        "VALUES ($1, $2, 'abandon', 'sales') RETURNING id",
        campaign_id,
        A,
    )
    await db.execute(
        "UPDATE callback_requests SET status = 'completed', closed_at = now() WHERE id = $1",
        request_id,
    )
    assert await OutboxWorker(pool, settings, {}).fan_out_once() == 2
    await db.execute("UPDATE outbox SET created_at = created_at - interval '8 days'")

    # created: no endpoint wants it, finished at fan-out; completed: the CRM's delivery pends.
    assert (await pruner(pool).prune_once()).events == 1
    topics = await db.fetch("SELECT topic FROM outbox")
    assert [row["topic"] for row in topics] == ["callback.completed"]

    await db.execute("UPDATE outbox_deliveries SET given_up_at = now()")
    assert await pruner(pool).prune_once() == PruneTally(events=1, deliveries=1, batches=1)
    assert await outbox_ids(db) == set()


@postgres
async def test_one_log_line_per_run_that_deleted_something(pool: Any, db: Any) -> None:
    for _ in range(3):
        await add_event(db, age_days=OLD, deliveries=("delivered",))
    await add_sms(db, A, age_days=OLD, quiet_for_hours=-1)
    job = pruner(pool, batch_size=2)
    with capture_logs() as logs:
        await job.prune_once()
        await job.prune_once()  # nothing left: no line
    lines = [e for e in logs if e["event"] == "outbox pruned"]
    assert len(lines) == 1
    [line] = lines
    assert (line["events"], line["sms"], line["deliveries"], line["batches"]) == (3, 1, 4, 3)
    assert line["retention_days"] == RETENTION_DAYS
    assert line["complete"] is True
    assert len(logs) == 1
    assert job.total == PruneTally(events=3, sms=1, deliveries=4, batches=4)


@postgres
async def test_the_supervised_task_prunes_at_start_and_then_every_interval(
    pool: Any, db: Any
) -> None:
    await add_event(db, age_days=OLD)
    job = pruner(pool, interval=0.05)
    task = asyncio.create_task(job.run())
    try:
        await wait_until(lambda: job.total.events == 1, timeout=10, what="the first run at start")
        await add_event(db, age_days=OLD, deliveries=("given_up",))
        await wait_until(lambda: job.total.events == 2, timeout=10, what="a later run")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await outbox_ids(db) == set()


@postgres
async def test_the_walk_reads_the_outbox_through_its_creation_order_index(db: Any) -> None:
    await db.execute(
        "INSERT INTO outbox (channel, topic, payload, created_at, fanned_out_at) "
        "SELECT 'event', 'callback.created', '{}', now() - make_interval(secs => n), now() "
        "FROM generate_series(1, 20000) AS n"
    )
    await db.execute("ANALYZE outbox")
    plan = "\n".join(
        row[0]
        for row in await db.fetch(
            "EXPLAIN " + Q["prune_finished"], datetime(2020, 1, 1, tzinfo=UTC), 0, 7, 1000
        )
    )
    assert "outbox_created_at" in plan
