"""Which in-flight attempts a live instance adopts (the dialer's SQL, real Postgres)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from callbackd.db.sql import load_queries

pytestmark = pytest.mark.postgres

Q = load_queries("dialer")


async def _attempt(
    db: Any, campaign: int, owner: str, *, pbx: str = "lab", done: bool = False
) -> uuid.UUID:
    number = f"+7916{uuid.uuid4().int % 10**7:07d}"
    request = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, status) "
        "VALUES ($1, $2, 'abandon', 'dialing') RETURNING id",
        campaign,
        number,
    )
    attempt_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO attempts (id, request_id, campaign_id, number, pbx, operator_channel_id, "
        "client_channel_id, claimed_by, state, outcome, ended_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        attempt_id,
        request,
        campaign,
        number,
        pbx,
        f"callbackd-{attempt_id}",
        f"callbackd-{attempt_id}-client",
        owner,
        "finished" if done else "bridged",
        "completed" if done else None,
        await db.fetchval("SELECT now()") if done else None,
    )
    return attempt_id


async def test_a_live_instance_adopts_only_dead_owners_calls_it_can_follow(db: Any) -> None:
    ours, other = [
        await db.fetchval(
            "INSERT INTO campaigns (name, pbx, queue, mode) "
            "VALUES ($1, $2, $1, 'operator_first') RETURNING id",
            name,
            pbx,
        )
        for name, pbx in (("sales", "lab"), ("elsewhere", "other"))
    ]
    await db.execute(
        "INSERT INTO instances (name, hostname, pid, heartbeat_at) VALUES "
        "('me', 'h', 1, now()), ('alive', 'h', 2, now()), "
        "('dead', 'h', 3, now() - interval '1 minute')"
    )
    dead = await _attempt(db, ours, "dead")
    vanished = await _attempt(db, ours, "never-registered")
    alive = await _attempt(db, ours, "alive")
    mine = await _attempt(db, ours, "me")
    finished = await _attempt(db, ours, "dead", done=True)
    foreign = await _attempt(db, other, "dead", pbx="other")
    rows = await db.fetch(Q["adopt_dead_instances"], "me", timedelta(seconds=20), [ours], ["lab"])
    assert {r["id"] for r in rows} == {dead, vanished}
    assert {r["claimed_by"] for r in rows} == {"me"}
    owners = dict(await db.fetch("SELECT id, claimed_by FROM attempts"))
    assert (owners[alive], owners[mine], owners[finished], owners[foreign]) == (
        "alive",
        "me",
        "dead",
        "dead",
    )
    # Taken once: a second round finds nothing left to adopt.
    assert (
        await db.fetch(Q["adopt_dead_instances"], "me", timedelta(seconds=20), [ours], ["lab"])
        == []
    )
