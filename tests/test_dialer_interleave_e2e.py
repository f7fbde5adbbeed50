"""Interleaving callbacks with live callers by original join time, end to end."""

from __future__ import annotations

from typing import Any

import pytest

from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from tests.test_dialer_e2e import OPS, attempts_of, campaign, fresh_number, pause

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]


async def test_an_older_callback_goes_before_a_newer_live_caller(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    # The same set-up as "a live caller waiting holds the callback", with interleaving on:
    # the callback's caller joined an hour ago, the live caller just now, so the callback
    # takes op1 in an idle gap between the queue's rings, while the live caller still waits.
    pbx.set_operator("default", "away")
    await pause(ami_driver, OPS[1], True)
    await pause(ami_driver, OPS[2], True)
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(interleave_by_join_time=True, operator_ring_seconds=2)},
    )
    async with (
        running_daemon(settings),
        ami_driver.events("QueueCallerJoin", "QueueCallerLeave") as events,
    ):
        caller = await ami_driver.originate_caller(fresh_number(), wait_seconds=12)
        await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == f"{caller};2")
        request_id: int = await db.fetchval(
            "INSERT INTO callback_requests (campaign_id, number, source, first_joined_at) "
            "SELECT id, $1, 'abandon', now() - interval '1 hour' FROM campaigns "
            "RETURNING id",
            f"+{fresh_number()}",
        )

        async def dialled() -> bool:
            return bool(await attempts_of(db, request_id))

        await wait_until(dialled, timeout=9, what="the older callback dialled")
        left = [
            e
            for e in events.pending
            if e.event == "QueueCallerLeave" and e.get("Uniqueid") == f"{caller};2"
        ]
        assert left == []  # the live caller was still waiting
    [attempt, *_] = await attempts_of(db, request_id)
    assert attempt["operator_interface"] == OPS[0]
