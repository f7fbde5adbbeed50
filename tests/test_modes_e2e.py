"""Dialer modes end to end: the real daemon, the real lab Asterisk and the real Postgres.

Client first (the client rings first, then joins the queue ahead of live callers), the
caller-pays DID (never answered, called back), CRM-task mode (never auto-dialled, reminder
calls with the right count, "call now" to the assigned or a given operator).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

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
from callbackd.services.call_now import assign, request_call_now
from tests.test_dialer_e2e import (
    add_request,
    attempts_of,
    campaign,
    fresh_number,
    noon_zone,
    pause,
    wait_status,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

OP2 = "Local/op2@lab-operators"
OP3 = "Local/op3@lab-operators"


def hotline(**overrides: Any) -> dict[str, Any]:
    """A client-first help line on lab-support (members op3, op4)."""
    client_first = {"queue_priority": 50, **overrides.pop("client_first", {})}
    return campaign(
        queue="lab-support", mode="client_first", client_first=client_first, **overrides
    )


async def test_client_first_rings_the_client_then_queues_them_ahead_of_live_callers(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    # Nobody answers in lab-support: callers wait, and the order of the queue shows.
    pbx.set_operator("default", "away")
    number = fresh_number()
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"hotline": hotline()})
    async with ami_driver.events("QueueCallerJoin", "Newchannel") as events:
        caller = await ami_driver.originate_caller(
            fresh_number(), queue="lab-support", wait_seconds=30
        )
        await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == f"{caller};2")
        async with running_daemon(settings):
            request_id = await add_request(db, number, campaign_name="hotline")
            row = await wait_status(db, request_id, "completed", timeout=20)
            [attempt] = await attempts_of(db, request_id)
            joined = await events.next(
                "QueueCallerJoin",
                lambda e: e.get("Uniqueid") == attempt["client_channel_id"],
                timeout=10,
            )
        ours = [
            str(e.get("Channel"))
            for e in events.pending
            if e.event == "Newchannel"
            and str(e.get("Uniqueid")).startswith("callbackd-")
            and "@callbackd-probe" not in str(e.get("Channel"))
        ]
    assert attempt["mode"] == "client_first"
    assert attempt["outcome"] == "completed"
    assert attempt["operator_interface"] is None
    assert attempt["stage"] == "queued"
    assert row["client_attempts"] == 1
    # The callback's client joined lab-support in FIRST place, ahead of the live caller
    # who was already waiting: QUEUE_PRIO did it.
    assert joined.get("Queue") == "lab-support"
    assert joined.get("Position") == "1"
    assert joined.get("Count") == "2"
    assert joined.get("CallerIDNum") == number  # operators see the client's number
    # The one call callbackd placed went to the client (the queue rings its operators for
    # the live caller, not for callbackd).
    assert ours
    assert all(f"{number}@lab-clients" in c for c in ours)


async def test_client_first_busy_client_is_retried(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "away")
    number = fresh_number()
    pbx.set_client(number, "busy")
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"hotline": hotline()})
    async with running_daemon(settings):
        request_id = await add_request(db, number, campaign_name="hotline")

        async def one_busy() -> bool:
            return any(a["outcome"] == "busy" for a in await attempts_of(db, request_id))

        await wait_until(one_busy, timeout=15, what="a busy attempt")
        pbx.set_client(number, "answer")
        row = await wait_status(db, request_id, "completed", timeout=20)
    assert [a["outcome"] for a in await attempts_of(db, request_id)] == ["busy", "completed"]
    assert row["client_attempts"] == 2


async def test_caller_pays_call_is_never_answered_and_the_caller_is_called_back(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "away")
    number = fresh_number()
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"hotline": hotline()})
    async with (
        running_daemon(settings),
        ami_driver.events("Newstate", "Newchannel", "UserEvent") as events,
    ):
        replies = await ami_driver.action_list(
            {
                "Action": "Originate",
                "Channel": f"Local/{number}@lab-did",
                "Application": "Wait",
                "Data": "5",
                "Async": "true",
                "Timeout": "5000",
                "ChannelId": f"lab-did-{number}",
                "OtherChannelId": f"lab-did-{number};2",
            },
            timeout=10,
        )
        reported = await events.next(
            "UserEvent", lambda e: e.get("UserEvent") == "CallbackdCallerPays"
        )

        async def stored() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM callback_requests"))

        await wait_until(stored, timeout=10, what="the caller-pays request")
        request = await db.fetchrow("SELECT * FROM callback_requests")
        row = await wait_status(db, request["id"], "completed", timeout=20)
        [attempt] = await attempts_of(db, request["id"])
        seen = list(events.pending)
    # The DID call: rejected, never answered (no channel of it ever went Up, state 6).
    outcome = next(m for m in replies if m.event == "OriginateResponse")
    assert outcome.get("Response") == "Failure"
    did_states = [
        e.get("ChannelState")
        for e in seen
        if e.event == "Newstate" and f"{number}@lab-did" in str(e.get("Channel"))
    ]
    assert "6" not in did_states
    assert reported.get("Number") == number
    assert reported.get("Campaign") == "hotline"
    assert reported.get("Uniqueid") == f"lab-did-{number};2"
    # The callback: stored once, source caller_pays, the client rung and queued.
    assert request["source"] == "caller_pays"
    assert request["number"] == f"+{number}"
    assert attempt["mode"] == "client_first"
    assert attempt["outcome"] == "completed"
    assert row["status"] == "completed"
    assert any(
        e.event == "Newchannel" and f"{number}@lab-clients" in str(e.get("Channel")) for e in seen
    )
    calls = await db.fetch("SELECT * FROM caller_pays_calls")
    assert [(c["uniqueid"], c["outcome"]) for c in calls] == [(f"lab-did-{number};2", "stored")]


async def test_client_first_lands_the_client_in_a_configured_context(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"hotline": hotline(client_first={"landing_context": "lab-landing"})},
    )
    async with ami_driver.events("UserEvent") as events, running_daemon(settings):
        request_id = await add_request(db, number, campaign_name="hotline")
        await wait_status(db, request_id, "completed", timeout=20)
        landed = await events.next("UserEvent", lambda e: e.get("UserEvent") == "LabLanded")
    [attempt] = await attempts_of(db, request_id)
    assert attempt["stage"] == "landed"
    assert landed.get("Uniqueid") == attempt["client_channel_id"]


async def test_crm_task_mode_reminds_and_calls_now_but_never_dials_by_itself(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "away")
    pbx.set_operator("op2", "talk")  # op2's phone answers the reminder
    crm = campaign(
        mode="crm_task",
        crm={
            "reminder_after_seconds": 1,
            "reminder_interval_seconds": 600,
            "reminder_ring_seconds": 5,
        },
    )
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"crm": crm})
    numbers = [fresh_number() for _ in range(3)]
    for number in numbers:
        pbx.set_client(number, "answer", 4)
    async with ami_driver.events("UserEvent") as events, running_daemon(settings):
        await pause(ami_driver, OP2, True)
        ids = [await add_request(db, number, campaign_name="crm") for number in numbers]
        await assign(db, ids[0], OP2)
        await assign(db, ids[1], OP2)
        await asyncio.sleep(3.5)  # due after 1 s, looked for every 2 s: but op2 is paused
        assert await db.fetchval("SELECT count(*) FROM reminder_calls") == 0
        await pause(ami_driver, OP2, False)
        # The reminder: op2 is idle with two requests older than 1 s waiting.
        heard = await events.next(
            "UserEvent",
            lambda e: (
                e.get("UserEvent") == "CallbackdReminder" and str(e.get("Channel")).startswith(OP2)
            ),
            timeout=20,
        )
        assert heard.get("Count") == "2"
        await asyncio.sleep(3)
        # Never auto-dialled: no attempt for any request; one reminder for op2 only.
        assert await db.fetchval("SELECT count(*) FROM attempts") == 0
        reminders = await db.fetch(
            "SELECT * FROM reminder_calls WHERE operator_interface = $1", OP2
        )
        assert len(reminders) == 1
        assert reminders[0]["pending_count"] == 2
        assert reminders[0]["outcome"] == "answered"
        assert reminders[0]["heard_at"] is not None
        assert heard.get("Uniqueid") == reminders[0]["channel_id"]
        # Call now, assigned request: to op2, operator first, bridged with the client.
        pbx.set_operator("op2", "accept")
        await request_call_now(db, ids[0])
        await wait_status(db, ids[0], "completed", timeout=30)
        # Call now to a given operator: an unassigned request goes to op3 and nobody else.
        pbx.set_operator("op3", "accept")
        await request_call_now(db, ids[2], OP3)
        await wait_status(db, ids[2], "completed", timeout=30)
        still = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", ids[1])
    [first] = await attempts_of(db, ids[0])
    assert first["operator_interface"] == OP2
    assert first["outcome"] == "completed"
    assert first["dial_status"] == "ANSWER"
    [third] = await attempts_of(db, ids[2])
    assert third["operator_interface"] == OP3
    assert third["outcome"] == "completed"
    assert still == "pending"  # nobody asked to call it: CRM mode leaves it alone
    assert await attempts_of(db, ids[1]) == []


async def test_call_now_in_an_operator_first_campaign_dials_a_request_due_later(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"sales": campaign()})
    async with running_daemon(settings):
        request_id = await db.fetchval(
            "INSERT INTO callback_requests (campaign_id, number, source, due_at) "
            "SELECT id, $1, 'abandon', now() + interval '1 hour' FROM campaigns RETURNING id",
            f"+{number}",
        )
        await asyncio.sleep(2)
        assert await attempts_of(db, request_id) == []  # not due for an hour
        asked = await request_call_now(db, request_id)
        row = await wait_status(db, request_id, "completed", timeout=30)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert attempt["mode"] == "operator_first"
    assert asked.call_now_requested_at is not None
    assert row["call_now_requested_at"] is None  # cleared when claimed
    assert (attempt["created_at"] - asked.call_now_requested_at).total_seconds() < 5


async def test_kill_9_while_the_client_rings_is_adopted_and_finished(
    pbx: LabAsterisk, database: str, db: Any, tmp_path: Path
) -> None:
    pbx.set_operator("default", "away")
    number = fresh_number()
    pbx.set_client(number, "confirm", 6)  # answers, presses 1 after 6 s
    config = tmp_path / "callbackd.toml"
    config.write_text(
        lab_config_toml(
            database,
            pbx.ami_callbackd,
            rest=f"""
[daemon]
instance_name = "survivor"
[campaigns.hotline]
queue = "lab-support"
mode = "client_first"
dial_template = "Local/{{number}}@lab-clients"
client_ring_seconds = 5
client_confirm = true
operator_confirm_timeout_seconds = 8
[campaigns.hotline.window]
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
        request_id = await add_request(db, number, campaign_name="hotline")

        async def answered() -> bool:
            rows = await attempts_of(db, request_id)
            return bool(rows) and rows[0]["stage"] == "client_answered"

        await wait_until(answered, timeout=15, what="the client answered")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = spawn_daemon(config, tmp_path / "two.log")
        row = await wait_status(db, request_id, "completed", timeout=20)
    finally:
        for process in (first, second):
            stop_daemon(process)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["outcome"] == "completed"
    assert attempt["stage"] == "queued"
    assert row["client_attempts"] == 1
    log = (tmp_path / "two.log").read_text()
    assert "adopted an in-flight attempt" in log
    assert "unknown campaign" not in log
    # The subprocess ran this checkout's code (the one with client-first support).
    assert "client_first" in log


async def test_client_first_can_wait_for_a_free_operator(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "away")
    members = [OP3, "Local/op4@lab-operators"]

    async def pause_support(interface: str, paused: bool) -> None:
        reply = await ami_driver.action(
            {
                "Action": "QueuePause",
                "Queue": "lab-support",
                "Interface": interface,
                "Paused": "true" if paused else "false",
            }
        )
        assert reply.success, reply

    for member in members:
        await pause_support(member, True)
    number = fresh_number()
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"hotline": hotline(client_first={"require_free_operator": True})},
    )
    async with running_daemon(settings):
        request_id = await add_request(db, number, campaign_name="hotline")
        await asyncio.sleep(3)
        assert await attempts_of(db, request_id) == []  # nobody free: the client waits
        await pause_support(OP3, False)
        await wait_status(db, request_id, "completed", timeout=20)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["mode"] == "client_first"
    assert attempt["stage"] == "queued"
