"""LISTEN on a Postgres channel to wake a worker early: a hint, never the guarantee.

Every worker that listens (the dialers, the outbox) also polls, so a lost connection or a
missed NOTIFY only costs the poll interval. The connection is its own (LISTEN state does not
belong in the pool) and is re-opened whenever it drops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from callbackd.db.pool import connect

RECONNECT_SECONDS = 5.0
"""Pause before trying again after the listening connection could not be opened."""


async def listen_for_wakeups(
    dsn: str,
    channel: str,
    wake: Callable[[], None],
    *,
    connect_timeout: float,
    unreachable: tuple[type[BaseException], ...],
) -> None:
    """Call ``wake()`` on every NOTIFY on ``channel``, forever (cancel to stop).

    ``unreachable``: the exceptions that mean the database is away (retried after
    :data:`RECONNECT_SECONDS`); anything else is a bug and propagates to the supervisor.
    """
    while True:
        try:
            conn = await connect(dsn, timeout=connect_timeout)
        except (*unreachable, asyncpg.PostgresError):
            await asyncio.sleep(RECONNECT_SECONDS)
            continue
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
        try:
            await conn.add_listener(channel, lambda *_args: wake())
            await lost.wait()
        finally:
            conn.terminate()
