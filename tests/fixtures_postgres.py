"""Fixtures for the real, throwaway PostgreSQL cluster the test session starts itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect, create_pool
from callbackd.db.sql import load_queries
from callbackd.lab.postgres import LabPostgres

TEMPLATE_DB = "callbackd_template"


@pytest.fixture(scope="session")
def lab_postgres() -> Iterator[LabPostgres]:
    """One private cluster per test session; a failure to start fails the session loudly."""
    cluster = LabPostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def migrated_template(lab_postgres: LabPostgres) -> str:
    """A database with every shipped migration applied, cloned cheaply for each test."""
    dsn = lab_postgres.create_database(TEMPLATE_DB)

    async def migrate() -> None:
        conn = await connect(dsn)
        try:
            await apply_migrations(conn, discover(default_migrations_dir()))
        finally:
            await conn.close()

    asyncio.run(migrate())
    return TEMPLATE_DB


def _unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def empty_database(lab_postgres: LabPostgres) -> Iterator[str]:
    """DSN of a brand-new database with nothing in it."""
    with lab_postgres.database(_unique_name("empty")) as dsn:
        yield dsn


@pytest.fixture
def database(lab_postgres: LabPostgres, migrated_template: str) -> Iterator[str]:
    """DSN of a fresh database with the current schema (a template clone, ~40 ms)."""
    with lab_postgres.database(_unique_name("test"), template=migrated_template) as dsn:
        yield dsn


@pytest.fixture
async def db(database: str) -> AsyncIterator[Any]:
    """An asyncpg connection to a fresh migrated database."""
    conn = await connect(database)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Any]:
    """The daemon's kind of pool (callbackd.db.pool) on a fresh migrated database."""
    p = await create_pool(database, min_size=2, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def claim_for_operator(
    conn: Any, campaign_id: int, operator: str, *, owner: str = "me", ordinary: bool = True
) -> tuple[uuid.UUID, Any]:
    """The dialer's claim statement for *operator* as instance *owner*, with the channel ids
    named the way the dialer names them: (the attempt id, the row or None)."""
    attempt = uuid.uuid4()
    row = await conn.fetchrow(
        load_queries("dialer")["claim_for_operator"],
        campaign_id,
        attempt,
        "pbx",
        operator,
        f"callbackd-{attempt}",
        f"callbackd-{attempt}-client",
        owner,
        ordinary,
    )
    return attempt, row
