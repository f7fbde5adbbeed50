"""Caller-pays calls callbackd did not hear, recovered from the real Asterisk's queue_log.

The real daemon, the real lab Asterisk (running the shipped dialplan unchanged) and the real
Postgres: a call to the caller-pays DID while callbackd is stopped or its AMI link is dead
becomes one request at the next start or reconnect; a call heard live and replayed later
stays one request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import closed_window, lab_settings, running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from callbackd.settings import Settings
from tests.tcp_proxy import SilentableProxy
from tests.test_dialer_e2e import fresh_number
from tests.test_modes_e2e import hotline

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

LINE_TAIL = "|callbackd|NONE|CALLBACKD_CALLERPAYS|hotline|"
"""What the shipped routine writes after the Uniqueid, up to the number."""


def _settings(database: str, pbx: LabAsterisk, account: AmiAccount | None = None) -> Settings:
    """The lab hotline (client first) with queue_log replay; its calling window is closed,
    so requests are stored and never dialled: what is counted is what was stored."""
    return lab_settings(
        database,
        account or pbx.ami_callbackd,
        queue_log_path=str(pbx.queue_log_path),
        campaigns={"hotline": hotline(window=closed_window())},
    )


async def _call_the_did(driver: LabDriver, extension: str) -> str:
    """A caller dials the lab's caller-pays DID (caller id = ``extension``); returns the
    Uniqueid of the channel that ran the shipped routine. The call must be rejected at
    once and never answered, whoever listens."""
    channel_id = f"lab-did-{time.monotonic_ns()}"
    async with driver.events("Newstate", "Hangup") as events:
        started = time.monotonic()
        replies = await driver.action_list(
            {
                "Action": "Originate",
                "Channel": f"Local/{extension}@lab-did",
                "Application": "Wait",
                "Data": "5",
                "Async": "true",
                "Timeout": "5000",
                "ChannelId": channel_id,
                "OtherChannelId": f"{channel_id};2",
            },
            timeout=10,
        )
        rejected_after = time.monotonic() - started
        hangup = await events.next(
            "Hangup", lambda e: e.get("Uniqueid") == f"{channel_id};2", timeout=5
        )
        ours = [e for e in events.pending if channel_id in str(e.get("Uniqueid"))]
    outcome = next(m for m in replies if m.event == "OriginateResponse")
    assert outcome.get("Response") == "Failure"
    assert hangup.get("Cause") == "21"  # rejected ("call rejected"), by the routine
    assert "6" not in [e.get("ChannelState") for e in ours]  # never Up: the caller pays nothing
    assert rejected_after < 2.0  # nothing waited for callbackd
    return f"{channel_id};2"


async def _queue_log_line(pbx: LabAsterisk, uniqueid: str, timeout: float = 5.0) -> str:
    async def written() -> bool:
        return any(f"|{uniqueid}|" in line for line in _lines(pbx))

    await wait_until(written, timeout=timeout, what=f"the queue_log line of {uniqueid}")
    return next(line for line in _lines(pbx) if f"|{uniqueid}|" in line)


def _lines(pbx: LabAsterisk) -> list[str]:
    return pbx.queue_log_path.read_text(encoding="utf-8").splitlines()


def _replays(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == "queue_log replayed"]


async def _requests_for(db: Any, number: str) -> list[Any]:
    rows: list[Any] = await db.fetch(
        "SELECT * FROM callback_requests WHERE number = $1", f"+{number}"
    )
    return rows


async def _wait_request(db: Any, number: str, timeout: float = 10.0) -> Any:
    async def stored() -> bool:
        return bool(await _requests_for(db, number))

    await wait_until(stored, timeout=timeout, what=f"a request for {number}")
    [row] = await _requests_for(db, number)
    return row


async def _catch_up(settings: Settings) -> None:
    """One start and stop: the session's earlier lab history is replayed out of the way."""
    with capture_logs() as logs:
        async with running_daemon(settings):
            await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the first replay")


async def test_a_call_while_callbackd_is_stopped_is_stored_once_when_it_starts(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = _settings(database, pbx)
    await _catch_up(settings)
    before = await db.fetchval("SELECT count(*) FROM callback_requests")
    # callbackd is stopped: one caller, and one whose caller id would split a dial string.
    number = fresh_number()
    uniqueid = await _call_the_did(ami_driver, number)
    hostile = await _call_the_did(ami_driver, f"{number[:4]}&{number[4:]}")
    line = await _queue_log_line(pbx, uniqueid)
    hostile_line = await _queue_log_line(pbx, hostile)
    assert line.split("|", 1)[1] == f"{uniqueid}{LINE_TAIL}{number}"
    assert hostile_line.split("|", 1)[1] == f"{hostile}{LINE_TAIL}"  # blanked by the routine
    assert await db.fetchval("SELECT count(*) FROM caller_pays_calls") == before
    called_at = datetime.fromtimestamp(int(line.split("|", 1)[0]), UTC)

    with capture_logs() as logs:
        async with running_daemon(settings):
            row = await _wait_request(db, number)
            await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the replay")
    assert row["source"] == "caller_pays"
    assert row["status"] == "pending"
    assert row["uniqueid"] == uniqueid
    assert row["first_joined_at"] == called_at  # the call's time, from its line
    assert row["due_at"] <= datetime.now(UTC)  # due at once, like a live call
    campaign = await db.fetchval("SELECT name FROM campaigns WHERE id = $1", row["campaign_id"])
    assert campaign == "hotline"
    assert [e["caller_pays_created"] for e in _replays(logs)] == [1]
    outcomes = dict(
        await db.fetch(
            "SELECT uniqueid, outcome FROM caller_pays_calls WHERE uniqueid = ANY ($1::text[])",
            [uniqueid, hostile],
        )
    )
    assert outcomes == {uniqueid: "stored", hostile: "withheld"}
    assert await db.fetchval("SELECT count(*) FROM callback_requests") == before + 1
    created = [e for e in logs if e["event"] == "callback request created"]
    assert [(e["uniqueid"], e["replayed"]) for e in created] == [(uniqueid, True)]

    # Another start replays the same lines: nothing new.
    with capture_logs() as logs:
        async with running_daemon(settings):
            await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the third replay")
    assert [e["caller_pays_created"] for e in _replays(logs)] == [0]
    assert [e["caller_pays_already_known"] >= 2 for e in _replays(logs)] == [True]
    assert len(await _requests_for(db, number)) == 1
    assert await db.fetchval("SELECT count(*) FROM callback_requests") == before + 1


async def test_a_call_heard_live_and_replayed_later_is_one_request(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = _settings(database, pbx)
    number = fresh_number()
    with capture_logs() as logs:
        async with running_daemon(settings), ami_driver.events("UserEvent") as events:
            await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the first replay")
            uniqueid = await _call_the_did(ami_driver, number)
            reported = await events.next(
                "UserEvent",
                lambda e: (
                    e.get("UserEvent") == "CallbackdCallerPays" and e.get("Uniqueid") == uniqueid
                ),
            )
            live = await _wait_request(db, number)

            def created() -> list[Any]:
                return [
                    e
                    for e in logs
                    if e["event"] == "callback request created" and e.get("uniqueid") == uniqueid
                ]

            # The row is visible from the commit on; the daemon logs it once it has the
            # commit's reply. Stopping the daemon in between would lose only the line.
            await wait_until(lambda: bool(created()), timeout=5, what="the created line")
    await _queue_log_line(pbx, uniqueid)
    assert [e["replayed"] for e in created()] == [False]
    assert reported.get("Number") == number

    # The next start replays the line of the call it already stored.
    with capture_logs() as logs:
        async with running_daemon(settings):
            await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the replay")
    [replay] = _replays(logs)
    assert replay["caller_pays_created"] == 0
    assert replay["caller_pays_already_known"] >= 1
    assert [row["id"] for row in await _requests_for(db, number)] == [live["id"]]
    calls = await db.fetch("SELECT outcome FROM caller_pays_calls WHERE uniqueid = $1", uniqueid)
    assert [c["outcome"] for c in calls] == ["stored"]


async def test_a_call_while_the_ami_link_is_dead_is_stored_at_the_reconnect(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    account = pbx.ami_callbackd
    proxy = SilentableProxy(account.host, account.port)
    proxied = AmiAccount(account.host, await proxy.start(), account.username, account.secret)
    settings = _settings(database, pbx, proxied)
    number = fresh_number()
    try:
        with capture_logs() as logs:
            async with running_daemon(settings) as app:
                link = app.links["lab"]
                await wait_until(lambda: bool(_replays(logs)), timeout=10, what="the replay")
                proxy.freeze()  # half-open: the UserEvent of the next call goes nowhere
                uniqueid = await _call_the_did(ami_driver, number)
                await wait_until(
                    lambda: link.is_up and link.stats.connects >= 2,
                    timeout=15,
                    what="the link reconnected",
                )
                row = await _wait_request(db, number)
                await wait_until(
                    lambda: len(_replays(logs)) >= 2, timeout=10, what="the reconnect replay"
                )
    finally:
        await proxy.stop()
    assert row["uniqueid"] == uniqueid
    assert row["source"] == "caller_pays"
    # Stored by the replay the reconnect ran (the live event was swallowed), once.
    created = [e for e in logs if e["event"] == "callback request created"]
    assert [e["replayed"] for e in created if e["uniqueid"] == uniqueid] == [True]
    assert len(await _requests_for(db, number)) == 1
