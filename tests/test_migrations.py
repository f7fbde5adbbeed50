"""Migrations against the real Postgres: order, idempotence, checksums, locking, schema shape."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callbackd.db import models
from callbackd.db.migrations import (
    MigrationError,
    apply_migrations,
    default_migrations_dir,
    discover,
)
from callbackd.db.pool import connect
from callbackd.db.sql import load_queries
from tests.fixtures_postgres import claim_for_operator

pytestmark = pytest.mark.postgres

EXPECTED_TABLES = {
    "schema_migrations",
    "campaigns",
    "callback_requests",
    "queue_abandons",
    "attempts",
    "interactions",
    "customers",
    "outbox",
    "instances",
    "outbox_deliveries",
    "api_idempotency_keys",
    "caller_pays_calls",
    "operator_reminders",
    "reminder_calls",
    "customer_categories",
}

MODEL_TABLES: dict[type[models.Row], str] = {
    models.CampaignRow: "campaigns",
    models.CallbackRequest: "callback_requests",
    models.Attempt: "attempts",
    models.Interaction: "interactions",
    models.Customer: "customers",
    models.OutboxMessage: "outbox",
    models.Instance: "instances",
    models.OutboxDelivery: "outbox_deliveries",
    models.IdempotencyKey: "api_idempotency_keys",
    models.CallerPaysCall: "caller_pays_calls",
    models.OperatorReminder: "operator_reminders",
    models.ReminderCall: "reminder_calls",
}


async def _tables(conn: Any) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {r["table_name"] for r in rows}


async def test_migrations_apply_on_an_empty_database(empty_database: str) -> None:
    conn = await connect(empty_database)
    try:
        assert await _tables(conn) == set()
        report = await apply_migrations(conn, discover(default_migrations_dir()))
        assert [m.file_name for m in report.applied] == [
            m.file_name for m in discover(default_migrations_dir())
        ]
        assert report.already_applied == 0
        assert await _tables(conn) == EXPECTED_TABLES
        recorded = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        assert {(r["version"], r["checksum"]) for r in recorded} == {
            (m.version, m.checksum) for m in discover(default_migrations_dir())
        }
    finally:
        await conn.close()


async def test_second_run_is_a_no_op(database: str) -> None:
    conn = await connect(database)
    try:
        before = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        report = await apply_migrations(conn, discover(default_migrations_dir()))
        assert report.applied == ()
        assert report.already_applied == len(before)
        after = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        assert before == after
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(database: str, tmp_path: Path) -> None:
    edited = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), edited)
    first = sorted(edited.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
    conn = await connect(database)
    try:
        with pytest.raises(MigrationError, match=r"0001_initial\.sql was changed after"):
            await apply_migrations(conn, discover(edited))
    finally:
        await conn.close()


async def test_unknown_applied_migration_is_refused(database: str, tmp_path: Path) -> None:
    conn = await connect(database)
    try:
        with pytest.raises(MigrationError, match="newer than the code"):
            await apply_migrations(conn, [])
    finally:
        await conn.close()


async def test_a_new_migration_applies_alone(database: str, tmp_path: Path) -> None:
    extended = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), extended)
    (extended / "9999_probe.sql").write_text("CREATE TABLE probe (id int);")
    conn = await connect(database)
    try:
        report = await apply_migrations(conn, discover(extended))
        assert [m.file_name for m in report.applied] == ["9999_probe.sql"]
        assert "probe" in await _tables(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(database: str, tmp_path: Path) -> None:
    extended = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), extended)
    (extended / "9999_broken.sql").write_text("CREATE TABLE half (id int); SELECT 1/0;")
    conn = await connect(database)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await apply_migrations(conn, discover(extended))
        assert "half" not in await _tables(conn)
        versions = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        assert versions < 9999
        # The advisory lock was released: a later run is not blocked.
        (extended / "9999_broken.sql").write_text("CREATE TABLE half (id int);")
        report = await apply_migrations(conn, discover(extended), lock_timeout_seconds=2)
        assert [m.version for m in report.applied] == [9999]
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_file_once(empty_database: str) -> None:
    migrations = discover(default_migrations_dir())

    async def migrate() -> int:
        conn = await connect(empty_database)
        try:
            return len((await apply_migrations(conn, migrations)).applied)
        finally:
            await conn.close()

    results = await asyncio.gather(*(migrate() for _ in range(4)))
    assert sorted(results) == [0, 0, 0, len(migrations)]


def test_misnamed_migration_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


def test_duplicate_version_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="also used by"):
        discover(tmp_path)


@pytest.mark.parametrize(("model", "table"), MODEL_TABLES.items())
async def test_row_models_match_the_schema(db: Any, model: type[models.Row], table: str) -> None:
    columns = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
    )
    assert {c["column_name"] for c in columns} == set(model.model_fields)


async def _campaign(db: Any) -> int:
    campaign_id: int = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'pbx', 'sales', 'operator_first') RETURNING id"
    )
    return campaign_id


async def test_one_open_request_per_number_and_campaign(db: Any) -> None:
    campaign_id = await _campaign(db)
    insert = (
        "INSERT INTO callback_requests (campaign_id, number, source, status, closed_at) "
        "VALUES ($1, $2, 'abandon', $3, $4) RETURNING *"
    )
    row = await db.fetchrow(insert, campaign_id, "+79161234567", "pending", None)
    request = models.CallbackRequest.from_record(row)
    assert request.status is models.RequestStatus.PENDING
    assert request.status.is_open
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, campaign_id, "+79161234567", "pending", None)
    # Closed requests do not count: history may hold many.
    await db.execute(
        "UPDATE callback_requests SET status = 'completed', closed_at = now() WHERE id = $1",
        request.id,
    )
    await db.execute(insert, campaign_id, "+79161234567", "pending", None)


@pytest.mark.parametrize(
    "number",
    ["79161234567", "+7916&1234567", "+7916/123", "+7916@ctx", "+0123456789", "", "+1 202 555"],
)
async def test_numbers_that_are_not_e164_cannot_be_stored(db: Any, number: str) -> None:
    campaign_id = await _campaign(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO callback_requests (campaign_id, number, source) "
            "VALUES ($1, $2, 'abandon')",
            campaign_id,
            number,
        )


async def test_one_attempt_in_flight_per_number_operator_and_request(db: Any) -> None:
    campaign_id = await _campaign(db)
    first = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "VALUES ($1, '+79161234567', 'abandon') RETURNING id",
        campaign_id,
    )
    second = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "VALUES ($1, '+79161234568', 'abandon') RETURNING id",
        campaign_id,
    )
    insert = (
        "INSERT INTO attempts (id, request_id, number, pbx, operator_interface, "
        "operator_channel_id, client_channel_id, claimed_by) "
        "VALUES (gen_random_uuid(), $1, $2, 'pbx', $3, gen_random_uuid()::text, "
        "gen_random_uuid()::text, 'test') RETURNING *"
    )
    attempt = models.Attempt.from_record(
        await db.fetchrow(insert, first, "+79161234567", "Local/op1@ops")
    )
    assert attempt.state is models.AttemptState.CLAIMED
    assert attempt.detail == {}
    with pytest.raises(asyncpg.UniqueViolationError):  # same operator, other client
        await db.execute(insert, second, "+79161234568", "Local/op1@ops")
    with pytest.raises(asyncpg.UniqueViolationError):  # same client, other operator
        await db.execute(insert, second, "+79161234567", "Local/op2@ops")
    with pytest.raises(asyncpg.CheckViolationError):  # finished needs an outcome and an end
        await db.execute("UPDATE attempts SET state = 'finished' WHERE id = $1", attempt.id)
    await db.execute(
        "UPDATE attempts SET state = 'finished', outcome = 'busy', ended_at = now() WHERE id = $1",
        attempt.id,
    )
    await db.execute(insert, second, "+79161234568", "Local/op1@ops")


async def test_outbox_indexes(db: Any) -> None:
    """Each index of the outbox serves a statement of queries/outbox.sql or a constraint."""
    rows = await db.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outbox' ORDER BY 1"
    )
    definitions = {row["indexname"]: row["indexdef"] for row in rows}
    assert set(definitions) == {
        "outbox_pkey",
        "outbox_dedupe_key_key",  # one SMS per event, one attempted event per attempt
        "outbox_not_fanned_out",  # events_to_fan_out
        "outbox_sms_once_per_window",  # the exclusion constraint
        "outbox_created_at",  # prune_finished walks old events in creation order (0013)
    }
    assert definitions["outbox_created_at"].endswith("USING btree (created_at, id)")


DOMAIN_REFUSALS = [
    ("UPDATE callback_requests SET status = 'bogus'", "callbackd_request_status"),
    ("UPDATE callback_requests SET source = 'bogus'", "callbackd_request_source"),
    ("UPDATE callback_requests SET abandon_count = -1", "callbackd_count"),
    ("UPDATE callback_requests SET client_attempts = -1", "callbackd_count"),
    ("UPDATE callback_requests SET operator_declines = -1", "callbackd_count"),
    ("UPDATE attempts SET number = '+7916&Dial'", "callbackd_e164"),
    ("UPDATE attempts SET state = 'bogus'", "callbackd_attempt_state"),
    ("UPDATE attempts SET outcome = 'bogus'", "callbackd_attempt_outcome"),
    ("UPDATE attempts SET mode = 'bogus'", "callbackd_attempt_mode"),
    ("INSERT INTO customers (number) VALUES ('79161234567')", "callbackd_e164"),
    (
        "INSERT INTO interactions (number, pbx, operator_interface, source) "
        "VALUES ('+7916@ctx', 'pbx', 'Local/op1@ops', 'inbound')",
        "callbackd_e164",
    ),
    (
        "INSERT INTO outbox (channel, topic, payload) VALUES ('bogus', 't', '{}')",
        "callbackd_outbox_channel",
    ),
]


@pytest.mark.parametrize(("statement", "domain"), DOMAIN_REFUSALS)
async def test_value_rules_are_domains_that_refuse_what_the_checks_refused(
    db: Any, statement: str, domain: str
) -> None:
    campaign_id = await _campaign(db)
    request_id = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "VALUES ($1, '+79161234567', 'abandon') RETURNING id",
        campaign_id,
    )
    await db.execute(
        "INSERT INTO attempts (id, request_id, number, pbx, operator_interface, "
        "operator_channel_id, client_channel_id, claimed_by) "
        "VALUES (gen_random_uuid(), $1, '+79161234567', 'pbx', 'Local/op1@ops', 'a', 'b', 't')",
        request_id,
    )
    with pytest.raises(asyncpg.CheckViolationError, match=f"domain {domain} "):
        await db.execute(statement)


async def test_no_single_column_check_is_left_on_the_hot_tables(db: Any) -> None:
    """Table CHECKs are read back and evaluated on every write (0015): only the ones that
    relate two columns stay."""
    rows = await db.fetch(
        "SELECT conrelid::regclass::text AS relation, conkey FROM pg_constraint "
        "WHERE contype = 'c' AND conrelid::regclass::text = ANY($1::text[])",
        ["callback_requests", "attempts", "outbox", "queue_abandons"],
    )
    assert rows, "the two-column CHECKs are still there"
    assert all(len(row["conkey"]) > 1 for row in rows), rows


async def test_a_session_open_across_the_domains_migration_keeps_working(
    empty_database: str, tmp_path: Path
) -> None:
    """Sessions had compiled the PL/pgSQL functions against text columns; 0015 makes them
    compile again instead of failing on every later call."""
    before = _migrations_before(15, tmp_path)
    session = await connect(empty_database)
    migrator = await connect(empty_database)
    insert = (
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "SELECT id, $1, 'api' FROM campaigns"
    )
    try:
        await apply_migrations(session, discover(before))
        await _campaign(session)
        await session.execute(insert, "+79161234567")  # compiles the request trigger
        report = await apply_migrations(migrator, discover(default_migrations_dir()))
        assert 15 in [m.version for m in report.applied]
        await session.execute(insert, "+79161234568")
        await session.execute(insert, "+79161234569")
        assert await session.fetchval("SELECT count(*) FROM outbox") == 3
    finally:
        await session.close()
        await migrator.close()


def _migrations_before(version: int, tmp_path: Path) -> Path:
    before = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), before)
    for later in before.glob("*.sql"):
        if int(later.name.split("_", 1)[0]) >= version:
            later.unlink()
    return before


async def _call_once(session: Any, campaign_id: int, number: str) -> None:
    """A request stored, claimed by the dialer's statement, its attempt finished, the
    request completed: every trigger and function 0017 touches runs once."""
    await session.execute(
        "INSERT INTO callback_requests (campaign_id, number, source) VALUES ($1, $2, 'api')",
        campaign_id,
        number,
    )
    attempt_id, claimed = await claim_for_operator(session, campaign_id, f"Local/{number}@ops")
    assert claimed is not None
    await session.execute(
        "UPDATE attempts SET state = 'finished', outcome = 'completed', ended_at = now() "
        "WHERE id = $1",
        attempt_id,
    )
    await session.execute(
        "UPDATE callback_requests SET status = 'completed', closed_at = now() WHERE id = $1",
        claimed["request"]["id"],
    )


async def test_a_session_open_across_the_lighter_writes_migration_keeps_working(
    empty_database: str, tmp_path: Path
) -> None:
    """0017 replaces the event functions and drops constraints under running daemons: a
    session that had compiled and prepared everything before goes on working after it."""
    before = _migrations_before(17, tmp_path)
    session = await connect(empty_database)
    migrator = await connect(empty_database)
    try:
        await apply_migrations(session, discover(before))
        campaign_id = await _campaign(session)
        await _call_once(session, campaign_id, "+79161234567")
        report = await apply_migrations(migrator, discover(default_migrations_dir()))
        assert 17 in [m.version for m in report.applied]
        await _call_once(session, campaign_id, "+79161234568")
        events = await session.fetch("SELECT topic, payload FROM outbox ORDER BY id")
        topics = ["callback.created", "callback.attempted", "callback.completed"]
        assert [e["topic"] for e in events] == topics * 2
        old, new = events[:3], events[3:]
        for earlier, later in zip(old, new, strict=True):
            assert set(earlier["payload"]) == set(later["payload"])
            assert later["payload"]["event"] == later["topic"]
    finally:
        await session.close()
        await migrator.close()


async def test_a_daemon_session_open_across_the_expiry_and_category_migrations_keeps_working(
    empty_database: str, tmp_path: Path
) -> None:
    """0018 replaces the claim and 0019 the capture function (same signatures) and add what
    they read; a running daemon's session, with both compiled, goes on working after them,
    and an old daemon (which never syncs the new columns) expires nothing."""
    before = _migrations_before(18, tmp_path)
    session = await connect(empty_database)
    migrator = await connect(empty_database)
    capture = load_queries("capture")["capture_abandon"]
    now = datetime.now(UTC)

    async def abandon(number: str, uniqueid: str) -> None:
        stored = await session.fetchrow(
            capture, "pbx", uniqueid, "sales", campaign_id, number, 0,
            now, now, now, None, None, None, None, None,
        )  # fmt: skip
        assert stored is not None

    try:
        await apply_migrations(session, discover(before))
        campaign_id = await _campaign(session)
        await abandon("+79161234567", "1.1")
        await _call_once(session, campaign_id, "+79161234568")
        report = await apply_migrations(migrator, discover(default_migrations_dir()))
        assert [m.version for m in report.applied] == [18, 19]
        await abandon("+79161234569", "1.2")
        await session.execute(
            "UPDATE callback_requests SET created_at = now() - interval '400 days'"
        )
        expire = load_queries("dialer")["expire_requests"]
        assert await session.fetch(expire, [campaign_id]) == []  # expiry never synced
        await _call_once(session, campaign_id, "+79161234570")
    finally:
        await session.close()
        await migrator.close()
