"""Connections to Postgres with callbackd's codecs and timeouts."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: Any) -> None:
    """jsonb/json as Python objects; every connection gets this before use."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(_conn: Any) -> None:
    """Release hook: nothing to undo, so no round trip on every release.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; CLOSE ALL;`` and an advisory
    unlock each time a connection goes back to the pool: a round trip on the hot paths
    (a claim, a capture, an AGI lookup) before their caller gets the result. The daemon's
    pool never takes session state: LISTEN and advisory locks use connections of their own
    (``db/notify.py``, migrations), and no statement run through it changes a session setting.
    asyncpg still rolls back a transaction left open and drops listeners before this hook.
    """


async def connect(dsn: str, *, timeout: float = 5.0, command_timeout: float = 10.0) -> Any:
    """One connection (CLI commands, migrations)."""
    conn = await asyncpg.connect(dsn, timeout=timeout, command_timeout=command_timeout)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout: float = 5.0,
    command_timeout: float = 10.0,
) -> Any:
    """The daemon's pool; ``timeout`` bounds connecting, ``command_timeout`` every query."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        command_timeout=command_timeout,
        init=_init_connection,
        reset=_keep_session,
    )
