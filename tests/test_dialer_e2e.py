"""The dialer end to end: the real daemon calls lab operators first, then lab clients."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import (
    lab_config_toml,
    lab_settings,
    running_daemon,
    spawn_daemon,
    stop_daemon,
    wait_until,
)
from callbackd.lab.driver import LabDriver

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]


def noon_zone() -> str:
    """A fixed-offset zone where it is around midday now, so a 08:00-20:00 window is open."""
    offset = (12 - datetime.now(UTC).hour) % 24
    if offset > 12:
        offset -= 24
    # Etc/GMT-N is UTC+N (POSIX sign convention).
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def campaign(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "queue": "lab-sales",
        "min_hold_seconds": 1,
        "dial_template": "Local/{number}@lab-clients",
        "operator_ring_seconds": 4,
        "client_ring_seconds": 3,
        "operator_confirm": True,
        "operator_confirm_timeout_seconds": 3,
        "min_talk_seconds": 2,
        "announce": "beep",
        "retry": {
            "max_attempts": 3,
            "busy_delay_seconds": 1,
            "no_answer_delay_seconds": 1,
            "congestion_delay_seconds": 1,
            "unavailable_delay_seconds": 1,
            "backoff_factor": 2.0,
        },
        "window": {
            "timezone": noon_zone(),
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "08:00",
            "end": "20:00",
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def fresh_number() -> str:
    return f"7916{secrets.randbelow(10**7):07d}"


async def add_request(db: Any, number: str, *, campaign_name: str = "sales") -> int:
    """A pending request as capture would store it, once the daemon has synced the campaign
    row (a daemon started as a subprocess may still be importing)."""

    async def campaign_synced() -> bool:
        found = await db.fetchval("SELECT 1 FROM campaigns WHERE name = $1", campaign_name)
        return found is not None

    await wait_until(campaign_synced, timeout=30, what=f"campaign {campaign_name} synced")
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, first_joined_at) "
        "SELECT id, $2, 'abandon', now() FROM campaigns WHERE name = $1 RETURNING id",
        campaign_name,
        f"+{number}",
    )
    assert request_id is not None
    return request_id


async def wait_status(db: Any, request_id: int, status: str, timeout: float = 30) -> Any:
    async def reached() -> bool:
        got = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", request_id)
        return bool(got == status)

    await wait_until(reached, timeout=timeout, what=f"request {request_id} {status}")
    return await db.fetchrow("SELECT * FROM callback_requests WHERE id = $1", request_id)


async def attempts_of(db: Any, request_id: int) -> list[Any]:
    rows: list[Any] = await db.fetch(
        "SELECT * FROM attempts WHERE request_id = $1 ORDER BY created_at", request_id
    )
    return rows


async def pause(driver: LabDriver, interface: str, paused: bool) -> None:
    reply = await driver.action(
        {
            "Action": "QueuePause",
            "Queue": "lab-sales",
            "Interface": interface,
            "Paused": "true" if paused else "false",
        }
    )
    assert reply.success, reply


OPS = [f"Local/op{n}@lab-operators" for n in (1, 2, 3)]


async def test_operator_first_then_client_then_completed(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(caller_id='"Example Shop" <+74951234567>')},
    )
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        async with running_daemon(settings):
            request_id = await add_request(db, number)
            row = await wait_status(db, request_id, "completed")
        seen = list(events.pending)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert attempt["operator_interface"] in OPS
    assert attempt["dial_status"] == "ANSWER"
    assert attempt["talk_seconds"] >= 2
    assert row["client_attempts"] == 1
    assert row["closed_at"] is not None
    # The operator's channel existed before the client's: operator first.
    channels = [str(e.get("Channel")) for e in seen if e.event == "Newchannel"]
    operator_at = next(i for i, c in enumerate(channels) if "@lab-operators" in c)
    client_at = next(i for i, c in enumerate(channels) if f"{number}@lab-clients" in c)
    assert operator_at < client_at
    stages = [
        str(e.get("Stage"))
        for e in seen
        if e.event == "UserEvent" and e.get("UserEvent") == "CallbackdAttempt"
    ]
    assert stages[:2] == ["operator_answered", "client_dialing"]
    # The operator's phone shows the client and the queue; the client sees the campaign.
    [rung] = lab_events(seen, "LabOperatorRung")
    assert (rung["CallerIDName"], rung["CallerIDNum"]) == ("Callback lab-sales", number)
    assert (rung["ConnectedLineName"], rung["ConnectedLineNum"]) == ("Callback lab-sales", number)
    [called] = lab_events(seen, "LabClientCalled")
    assert (called["CallerIDName"], called["CallerIDNum"]) == ("Example Shop", "+74951234567")


def lab_events(seen: list[Any], name: str) -> list[Any]:
    return [e for e in seen if e.event == "UserEvent" and e.get("UserEvent") == name]


async def test_the_default_dial_template_reaches_the_client_in_national_format(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    # The shipped [from-callbackd] hands the number to the lab's outbound context
    # (CALLBACKD_OUTBOUND_CONTEXT=lab-clients), as a site's to from-internal or a trunk.
    pbx.set_operator("default", "accept", 0.5)
    number = fresh_number()
    national = "8" + number[1:]  # RU: +7 916 ... is dialled 8 916 ...
    pbx.set_client(national, "answer", 3)
    sales = campaign(
        dial_template="Local/{number}@from-callbackd",
        dial_number_format="national",
        caller_id="+74951234567",
        announce=None,
    )
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": sales})
    async with ami_driver.events("UserEvent") as events:
        async with running_daemon(settings):
            request_id = await add_request(db, number)
            await wait_status(db, request_id, "completed")
        seen = list(events.pending)
    [called] = lab_events(seen, "LabClientCalled")
    assert called["Number"] == national
    assert called["Channel"].startswith(f"Local/{national}@from-callbackd-")
    assert called["CallerIDNum"] == "+74951234567"
    [rung] = lab_events(seen, "LabOperatorRung")
    assert rung["CallerIDNum"] == national


async def test_a_declining_operator_hands_the_call_to_another(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op1", "decline")
    pbx.set_operator("op2", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    await pause(ami_driver, OPS[1], True)
    await pause(ami_driver, OPS[2], True)
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        request_id = await add_request(db, number)

        async def declined_once() -> bool:
            return any(
                a["outcome"] == "operator_declined" for a in await attempts_of(db, request_id)
            )

        await wait_until(declined_once, timeout=20, what="op1 declined")
        await asyncio.sleep(1.5)  # op1 is free again, but is not offered the same request
        assert len(await attempts_of(db, request_id)) == 1
        await pause(ami_driver, OPS[1], False)
        row = await wait_status(db, request_id, "completed")
    attempts = await attempts_of(db, request_id)
    assert [(a["operator_interface"], a["outcome"]) for a in attempts] == [
        (OPS[0], "operator_declined"),
        (OPS[1], "completed"),
    ]
    assert row["client_attempts"] == 1  # the decline cost the client nothing
    assert row["operator_declines"] == 1


async def test_after_its_call_an_operator_waits_for_asterisk_to_report_the_phone_again(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    # Under load Asterisk reports device states late: when callbackd's call ends, the board
    # may still hold the state from before it rang while the phone has taken another call.
    # Here the operator's phone state comes from a custom device the test sets, so callbackd's
    # own call changes nothing Asterisk reports, as when that report is late.
    device = f"Custom:cbtest-{secrets.token_hex(4)}"
    operator = "Local/op5@lab-operators"
    pbx.set_operator("op5", "busy")  # every call ends at once; the request goes back
    pbx.cli(f"devstate change {device} NOT_INUSE")
    for op in OPS:
        await pause(ami_driver, op, True)
    pbx.cli(f"queue add member {operator} to lab-sales penalty 0 as op5 state_interface {device}")
    settle = 4.0
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign()},
        daemon={"shutdown_grace_seconds": 5, "operator_settle_seconds": settle},
    )

    async def finished_calls() -> list[Any]:
        rows: list[Any] = await db.fetch(
            "SELECT * FROM attempts WHERE state = 'finished' ORDER BY created_at"
        )
        return rows

    async def calls_finished(count: int) -> None:
        async def enough() -> bool:
            return len(await finished_calls()) >= count

        await wait_until(enough, timeout=30, what=f"{count} calls to op5 finished")

    async with running_daemon(settings):
        for _ in range(4):
            await add_request(db, fresh_number())
        await calls_finished(2)
        first, second = (await finished_calls())[:2]
        # No report came after the first call: op5 was held for the settle time, not rung
        # again at once on the state from before the call.
        gap = (second["created_at"] - first["ended_at"]).total_seconds()
        assert settle - 0.2 <= gap <= settle + 2.5, gap
        # A report after the second call says the phone is in use: op5 stays off, past the
        # settle time too; the report that it is idle again frees op5 at once.
        pbx.cli(f"devstate change {device} INUSE")
        await asyncio.sleep(settle + 1.5)
        assert len(await db.fetch("SELECT id FROM attempts")) == 2
        idle_at = await db.fetchval("SELECT clock_timestamp()")
        pbx.cli(f"devstate change {device} NOT_INUSE")
        await calls_finished(3)
        third = (await finished_calls())[2]
        assert (third["created_at"] - idle_at).total_seconds() < 1.5
        # Right after the third call, the phone is reported busy and then idle: the fresh
        # idle report frees op5 well before the settle time would have.
        pbx.cli(f"devstate change {device} INUSE")
        pbx.cli(f"devstate change {device} NOT_INUSE")
        await calls_finished(4)
        fourth = (await finished_calls())[3]
    assert (fourth["created_at"] - third["ended_at"]).total_seconds() < settle - 1.5
    calls = (first, second, third, fourth)
    assert {a["operator_interface"] for a in calls} == {operator}
    assert [a["outcome"] for a in calls] == ["operator_busy"] * 4


async def test_nothing_is_dialled_until_an_operator_is_free(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    for op in OPS:
        await pause(ami_driver, op, True)
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        request_id = await add_request(db, number)
        await asyncio.sleep(3)
        assert await attempts_of(db, request_id) == []
        await pause(ami_driver, OPS[2], False)
        await wait_status(db, request_id, "completed")
    [attempt] = await attempts_of(db, request_id)
    assert attempt["operator_interface"] == OPS[2]


async def test_a_live_caller_waiting_holds_the_callback(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    # One operator for one live caller: its ringing is never answered, and between two
    # rings (queue retry) op1 is idle -- still the live caller's, not a callback's.
    pbx.set_operator("default", "away")
    await pause(ami_driver, OPS[1], True)
    await pause(ami_driver, OPS[2], True)
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        async with ami_driver.events("QueueCallerJoin", "QueueCallerLeave") as events:
            caller = await ami_driver.originate_caller(fresh_number(), wait_seconds=9)
            await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == f"{caller};2")
            request_id = await add_request(db, number)
            await asyncio.sleep(7)  # spans at least one idle gap between the queue's rings
            assert await attempts_of(db, request_id) == []  # held while the caller waits
            await events.next(
                "QueueCallerLeave", lambda e: e.get("Uniqueid") == f"{caller};2", timeout=10
            )
        pbx.set_operator("default", "accept")
        await wait_status(db, request_id, "completed", timeout=30)


async def test_busy_then_answers_on_the_retry(pbx: LabAsterisk, database: str, db: Any) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "busy")
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        request_id = await add_request(db, number)

        async def one_busy() -> bool:
            return any(a["outcome"] == "busy" for a in await attempts_of(db, request_id))

        await wait_until(one_busy, timeout=20, what="a busy attempt")
        pbx.set_client(number, "answer", 4)
        row = await wait_status(db, request_id, "completed", timeout=30)
    attempts = await attempts_of(db, request_id)
    assert [a["outcome"] for a in attempts] == ["busy", "completed"]
    assert row["client_attempts"] == 2
    gap = (attempts[1]["created_at"] - attempts[0]["ended_at"]).total_seconds()
    assert gap >= 1.0  # busy_delay_seconds


async def test_never_answers_fails_after_max_attempts_with_growing_delays(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "noanswer")
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        request_id = await add_request(db, number)
        row = await wait_status(db, request_id, "failed", timeout=60)
    attempts = await attempts_of(db, request_id)
    assert [a["outcome"] for a in attempts] == ["no_answer"] * 3
    assert row["status_reason"] == "max_attempts"
    assert row["client_attempts"] == 3
    gaps = [
        (later["created_at"] - earlier["ended_at"]).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
    ]
    # no_answer_delay 1 s, backoff factor 2: at least 1 s, then at least 2 s
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0


async def test_closed_calling_window_holds_the_callback(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    today = datetime.now(UTC).astimezone(ZoneInfo(noon_zone()))
    weekday = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][today.weekday()]
    other_days = [d for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] if d != weekday]
    closed = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(window={"days": other_days})},
    )
    async with running_daemon(closed):
        request_id = await add_request(db, number)
        await asyncio.sleep(3)
        assert await attempts_of(db, request_id) == []
    opened = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(opened):
        await wait_status(db, request_id, "completed")


async def test_hostile_number_in_the_database_never_reaches_an_originate(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    # Someone edited the database by hand and removed callbackd's own guard first.
    await db.execute("ALTER TABLE callback_requests ALTER COLUMN number TYPE text")
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with ami_driver.events("Newchannel") as events:
        async with running_daemon(settings):
            request_id: int = await db.fetchval(
                "INSERT INTO callback_requests (campaign_id, number, source) "
                "SELECT id, '+7916&Local/1@evil', 'abandon' FROM campaigns RETURNING id"
            )
            row = await wait_status(db, request_id, "failed", timeout=10)
        channels = [str(e.get("Channel")) for e in events.pending]
    assert row["status_reason"] == "invalid_number"
    assert await attempts_of(db, request_id) == []
    assert not any("lab-operators" in c or "evil" in c for c in channels)


async def test_two_instances_dial_every_request_once_and_never_double_book(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    pbx.set_client("default", "answer", 2)
    one = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(min_talk_seconds=1)},
        daemon={"shutdown_grace_seconds": 10, "instance_name": "one"},
    )
    two = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign(min_talk_seconds=1)},
        daemon={"shutdown_grace_seconds": 10, "instance_name": "two"},
    )
    async with running_daemon(one), running_daemon(two):
        ids = [await add_request(db, fresh_number()) for _ in range(20)]

        async def all_closed() -> bool:
            open_ = await db.fetchval(
                "SELECT count(*) FROM callback_requests WHERE status IN ('pending', 'dialing')"
            )
            return bool(open_ == 0)

        await wait_until(all_closed, timeout=240, what="all 20 requests handled")
    attempts = await db.fetch("SELECT * FROM attempts ORDER BY created_at")
    statuses = dict(await db.fetch("SELECT id, status FROM callback_requests"))
    assert all(statuses[i] == "completed" for i in ids), statuses
    per_request: dict[int, int] = {}
    for a in attempts:
        per_request[a["request_id"]] = per_request.get(a["request_id"], 0) + 1
    completed = [a for a in attempts if a["outcome"] == "completed"]
    assert sorted(a["request_id"] for a in completed) == sorted(ids)  # each exactly once
    assert {a["claimed_by"] for a in attempts} == {"one", "two"}
    by_operator: dict[str, list[Any]] = {}
    for a in attempts:
        by_operator.setdefault(a["operator_interface"], []).append(a)
    for operator, calls in by_operator.items():
        for earlier, later in itertools.pairwise(calls):
            # The claim of the next call waits on the in-flight unique index until the
            # previous attempt's finish commits; its created_at is taken just before that
            # wait, so it may precede the commit by milliseconds. What the operator hears
            # is the Originate, sent after the claim: its leg answers only after the end.
            overlap = (earlier["ended_at"] - later["created_at"]).total_seconds()
            assert overlap < 0.5, f"{operator} double-booked: claims overlap {overlap:.3f} s"
            if later["operator_answered_at"] is not None:
                assert later["operator_answered_at"] > earlier["ended_at"], (
                    f"{operator} double-booked"
                )


async def test_kill_9_during_a_bridged_call_is_not_redialled(
    pbx: LabAsterisk, database: str, db: Any, tmp_path: Path
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer")  # stays on the line until the test hangs up
    account = pbx.ami_callbackd
    config = tmp_path / "callbackd.toml"
    config.write_text(
        lab_config_toml(
            database,
            account,
            rest=f"""
[daemon]
instance_name = "survivor"
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
    )
    first = spawn_daemon(config, tmp_path / "one.log")
    second = None
    try:
        await asyncio.sleep(1.5)
        request_id = await add_request(db, number)

        async def bridged() -> bool:
            rows = await attempts_of(db, request_id)
            return bool(rows) and rows[0]["state"] == "bridged"

        await wait_until(bridged, timeout=30, what="operator and client bridged")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        await asyncio.sleep(1)
        assert pbx.active_channels() > 0  # the call goes on without callbackd
        second = spawn_daemon(config, tmp_path / "two.log")
        await asyncio.sleep(3)  # it adopts the attempt and finds the call still up
        assert len(await attempts_of(db, request_id)) == 1
        await asyncio.to_thread(pbx.wait_for_no_channels, 10.0)  # the call ends (hung up)
        row = await wait_status(db, request_id, "completed", timeout=20)
    finally:
        for process in (first, second):
            stop_daemon(process)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert attempt["claimed_by"] == "survivor"
    assert row["client_attempts"] == 1
    log = (tmp_path / "two.log").read_text()
    assert "adopted an in-flight attempt" in log
