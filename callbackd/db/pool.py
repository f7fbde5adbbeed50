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
    )
