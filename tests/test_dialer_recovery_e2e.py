"""Crash safety end to end: a dead instance's call is adopted by a live one; SIGTERM lets a
live call finish within the grace period, or leaves it to the next start. Real daemons
(subprocesses, so they can be killed), the real lab Asterisk and Postgres."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import (
    daemon_process,
    lab_config_toml,
    lab_settings,
    running_daemon,
    wait_until,
)
from callbackd.lab.driver import LabDriver
from tests.test_dialer_e2e import (
    add_request,
    attempts_of,
    campaign,
    fresh_number,
    noon_zone,
    wait_status,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

FAST_BEATS = {"heartbeat_seconds": 0.5, "orphan_after_seconds": 2.0}


def daemon_config(database: str, account: AmiAccount, *, instance: str, grace: float = 5.0) -> str:
    return lab_config_toml(
        database,
        account,
        rest=f"""
[daemon]
instance_name = "{instance}"
shutdown_grace_seconds = {grace}
heartbeat_seconds = {FAST_BEATS["heartbeat_seconds"]}
orphan_after_seconds = {FAST_BEATS["orphan_after_seconds"]}
[campaigns.sales]
queue = "lab-sales"
dial_template = "Local/{{number}}@lab-clients"
operator_ring_seconds = 4
client_ring_seconds = 4
min_talk_seconds = 1
announce = "beep"
operator_confirm_timeout_seconds = 3
[campaigns.sales.window]
timezone = "{noon_zone()}"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "08:00"
end = "20:00"
""",
    )


async def registered(db: Any, instance: str) -> None:
    async def seen() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM instances WHERE name = $1", instance))

    await wait_until(seen, timeout=15, what=f"instance {instance} registered")


async def bridged(db: Any, request_id: int, timeout: float = 30) -> None:
    async def check() -> bool:
        rows = await attempts_of(db, request_id)
        return bool(rows) and rows[0]["state"] == "bridged"

    await wait_until(check, timeout=timeout, what="operator and client bridged")


async def log_says(path: Path, text: str, timeout: float = 15) -> None:
    await wait_until(
        lambda: text in path.read_text(errors="replace"), timeout=timeout, what=repr(text)
    )


def client_legs(events: list[Any], number: str) -> set[str]:
    """The client channels Asterisk created for ``number`` (one per dial)."""
    return {
        str(e.get("Channel"))
        for e in events
        if e.event == "Newchannel"
        and f"/{number}@lab-clients" in str(e.get("Channel"))
        and str(e.get("Channel")).endswith(";1")
    }


async def test_a_live_instance_adopts_the_call_of_a_killed_one(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any, tmp_path: Path
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer")  # stays on the line until the test hangs up
    config = tmp_path / "a.toml"
    config.write_text(daemon_config(database, pbx.ami_callbackd, instance="a"))
    b_settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(min_talk_seconds=1)},
        daemon={"instance_name": "b", **FAST_BEATS},
    )
    async with ami_driver.events("Newchannel") as events:
        with daemon_process(config, tmp_path / "a.log") as a:
            await registered(db, "a")
            request_id = await add_request(db, number)
            await bridged(db, request_id)
            async with running_daemon(b_settings) as b:
                a.send_signal(signal.SIGKILL)
                a.wait(timeout=10)

                async def adopted() -> bool:
                    rows = await attempts_of(db, request_id)
                    return rows[0]["claimed_by"] == "b"

                # A's last beat is at most 0.5 s old; B takes over 2 s after it.
                await wait_until(adopted, timeout=10, what="b adopted a's attempt")
                assert b.dialer is not None
                await wait_until(
                    lambda: b.dialer is not None and b.dialer.stats.adopted == 1,
                    timeout=5,
                    what="b follows the call",
                )
                await asyncio.sleep(1.0)  # b asked Asterisk: the call is still up
                assert pbx.active_channels() > 0
                [attempt] = await attempts_of(db, request_id)
                assert attempt["state"] == "bridged"  # not finished as "unknown"
                await asyncio.to_thread(pbx.wait_for_no_channels, 10.0)  # the call ends
                row = await wait_status(db, request_id, "completed", timeout=15)
                assert b.dialer.stats.finished == {"completed": 1}
        seen = list(events.pending)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert attempt["claimed_by"] == "b"
    assert attempt["talk_seconds"] >= 1
    assert row["client_attempts"] == 1
    assert len(client_legs(seen, number)) == 1  # the client was dialled once, by a


async def test_sigterm_lets_the_live_call_finish_and_claims_nothing_new(
    pbx: LabAsterisk, database: str, db: Any, tmp_path: Path
) -> None:
    pbx.set_operator("default", "accept")
    number, later = fresh_number(), fresh_number()
    pbx.set_client(number, "answer", 4)  # hangs up 4 s after answering
    config = tmp_path / "c.toml"
    config.write_text(daemon_config(database, pbx.ami_callbackd, instance="c", grace=20))
    log = tmp_path / "c.log"
    with daemon_process(config, log) as process:
        await registered(db, "c")
        request_id = await add_request(db, number)
        await bridged(db, request_id)
        process.send_signal(signal.SIGTERM)
        await log_says(log, '"stopping"')
        # Two operators are free, but a draining daemon starts nothing new.
        later_id = await add_request(db, later)
        code = await asyncio.to_thread(process.wait, 25)
    assert code == 0
    row = await db.fetchrow("SELECT * FROM callback_requests WHERE id = $1", request_id)
    assert row["status"] == "completed"
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert await attempts_of(db, later_id) == []
    assert await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", later_id) == (
        "pending"
    )
    text = log.read_text()
    assert '"calls_left_in_flight": 0' in text


async def test_sigterm_shorter_than_the_call_leaves_it_to_the_next_start(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any, tmp_path: Path
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer")  # stays on the line until the test hangs up
    config = tmp_path / "d.toml"
    config.write_text(daemon_config(database, pbx.ami_callbackd, instance="d", grace=1))
    first_log, second_log = tmp_path / "d1.log", tmp_path / "d2.log"
    async with ami_driver.events("Newchannel") as events:
        with daemon_process(config, first_log) as first:
            await registered(db, "d")
            request_id = await add_request(db, number)
            await bridged(db, request_id)
            first.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(first.wait, 15)
        assert code == 0
        [attempt] = await attempts_of(db, request_id)
        assert attempt["state"] == "bridged"  # left in flight, not guessed
        assert "callback left in flight at shutdown" in first_log.read_text()
        assert '"calls_left_in_flight": 1' in first_log.read_text()
        assert pbx.active_channels() > 0  # the call goes on without callbackd
        with daemon_process(config, second_log):
            await log_says(second_log, "adopted an in-flight attempt")
            await asyncio.sleep(1.0)  # it asked Asterisk: the call is still up
            assert len(await attempts_of(db, request_id)) == 1
            await asyncio.to_thread(pbx.wait_for_no_channels, 10.0)  # the call ends
            row = await wait_status(db, request_id, "completed", timeout=15)
        seen = list(events.pending)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert row["client_attempts"] == 1
    assert len(client_legs(seen, number)) == 1
