"""Callback requests the caller made in the IVR (``request`` route): one write, at the end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callbackd.db.sql import load_queries

__all__ = ["IvrRequest", "store_ivr_request"]

_QUERIES = load_queries("agi")


@dataclass(frozen=True)
class IvrRequest:
    campaign: str
    number: str
    """E.164."""
    priority: int
    due_at: datetime
    preferred_at: datetime | None
    pbx: str
    queue: str
    caller_name: str | None
    uniqueid: str | None
    linkedid: str | None


async def store_ivr_request(conn: Any, request: IvrRequest) -> tuple[int, bool] | None:
    """Insert (or re-time the open) request in ONE transaction; (id, created) or None when
    the campaign is not in the database."""
    async with conn.transaction():
        row = await conn.fetchrow(
            _QUERIES["store_ivr_request"],
            request.campaign,
            request.number,
            request.priority,
            request.due_at,
            request.preferred_at,
            request.pbx,
            request.queue,
            request.caller_name,
            request.uniqueid,
            request.linkedid,
        )
    if row is None:
        return None
    return int(row["id"]), bool(row["created"])
