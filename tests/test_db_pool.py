"""The daemon's pool against the real Postgres: releasing a connection costs no round trip,
and what the release must still undo (an open transaction) is undone."""

from __future__ import annotations

from typing import Any

from callbackd.db.pool import create_pool


async def _last_statement(db: Any, pid: int) -> str:
    return str(await db.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))


async def test_release_sends_nothing_to_the_server(database: str, db: Any) -> None:
    pool = await create_pool(database, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid() /* before release */")
        # asyncpg's default reset would now show "RESET ALL" (or the advisory unlock).
        assert await _last_statement(db, pid) == "SELECT pg_backend_pid() /* before release */"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid  # the same session
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database: str) -> None:
    pool = await create_pool(database, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_probe (n int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()
