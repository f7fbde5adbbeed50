"""The AGI routes end to end: the real daemon's FastAGI server, the real Asterisk executing
the shipped callbackd-inbound / callbackd-request contexts, and the real Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.classic_agi import install_classic_agi
from callbackd.lab.daemon import lab_config_toml, lab_settings, running_daemon, wait_until
from callbackd.lab.driver import AmiMessage, LabDriver
from callbackd.settings import Settings
from tests.agi_lab import (
    AGI_EVENTS,
    asked,
    crm_campaign,
    fast_agi,
    free_port,
    fresh_number,
    keys_when_asked,
    noon_zone,
    on_channel,
    originate,
    press,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

OP1, OP2 = "Local/op1@lab-operators", "Local/op2@lab-operators"
CLASSIC_CAMPAIGN = """
[campaigns.sales]
queue = "lab-sales"
mode = "crm_task"
caller_id = "+74950000001"
"""


def settings_for(pbx: LabAsterisk, database: str, port: int, **agi: Any) -> Settings:
    return lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": crm_campaign()},
        agi=fast_agi(port, **agi),
    )


def agi_address(port: int) -> dict[str, str]:
    return {"CALLBACKD_AGI": f"agi://127.0.0.1:{port}"}


async def add_interaction(db: Any, number: str, operator: str, *, days_ago: int = 1) -> None:
    await db.execute(
        "INSERT INTO interactions (number, pbx, queue, operator_interface, source, occurred_at) "
        "VALUES ($1, 'lab', 'lab-sales', $2, 'inbound', now() - make_interval(days => $3))",
        f"+{number}",
        operator,
        days_ago,
    )


async def add_customer(db: Any, number: str, **values: Any) -> None:
    await db.execute(
        "INSERT INTO customers (number, category, priority, skip_queue) VALUES ($1, $2, $3, $4)",
        f"+{number}",
        values.get("category", "regular"),
        values.get("priority", 0),
        values.get("skip_queue", False),
    )


async def board_member(app: Any, queue: str, interface: str, *, paused: bool) -> None:
    def ready() -> bool:
        board = app.boards.get("lab")
        return board is not None and any(
            m.interface == interface and m.paused == paused for m in board.members(queue)
        )

    await wait_until(ready, timeout=10, what=f"{interface} paused={paused} on the board")


def first(events: list[AmiMessage], *names: str, uniqueid: str) -> AmiMessage:
    wanted = {n.lower() for n in names}
    return next(e for e in events if e.event.lower() in wanted and e.get("Uniqueid") == uniqueid)


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


# --------------------------------------------------------------------------- inbound


async def test_returning_caller_rings_their_last_operator_first(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op2", "talk")
    number = fresh_number()
    await add_interaction(db, number, OP2)
    port = free_port()
    async with running_daemon(settings_for(pbx, database, port)) as app:
        await board_member(app, "lab-sales", OP2, paused=False)
        async with ami_driver.events("DialBegin", "QueueCallerJoin", "VarSet") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            dial = await events.next("DialBegin", lambda e: e.get("Uniqueid") == caller)
            await asyncio.sleep(0.5)
            seen = list(events.pending)
        assert app.agi_server is not None
        assert app.agi_server.stats["completed"] == 1
    assert str(dial.get("DestChannel")).startswith(OP2 + "-")
    assert not any(e.event == "QueueCallerJoin" and e.get("Uniqueid") == caller for e in seen)


async def test_paused_sticky_operator_means_straight_to_the_queue(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op2", "talk")
    number = fresh_number()
    await add_interaction(db, number, OP2)
    port = free_port()
    await pause(ami_driver, OP2, True)
    async with running_daemon(settings_for(pbx, database, port)) as app:
        await board_member(app, "lab-sales", OP2, paused=True)
        async with ami_driver.events("DialBegin", "QueueCallerJoin") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == caller)
            seen = list(events.pending)
    assert not any(
        e.event == "DialBegin" and str(e.get("DestChannel", "")).startswith(OP2) for e in seen
    )


async def test_vip_skips_the_queue(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    await add_customer(db, number, category="vip", priority=10, skip_queue=True)
    port = free_port()
    variables = {**agi_address(port), "CALLBACKD_VIP_TARGET": "Local/talkdesk@lab-operators"}
    async with (
        running_daemon(settings_for(pbx, database, port)),
        ami_driver.events("DialBegin", "DialEnd", "QueueCallerJoin") as events,
    ):
        channel_id = await originate(ami_driver, "lab-inbound-callers", number, variables=variables)
        caller = f"{channel_id};2"
        dial = await events.next("DialBegin", lambda e: e.get("Uniqueid") == caller)
        end = await events.next("DialEnd", lambda e: e.get("Uniqueid") == caller)
        await asyncio.sleep(0.5)
        seen = list(events.pending)
    assert str(dial.get("DestChannel")).startswith("Local/talkdesk@lab-operators-")
    assert end.get("DialStatus") == "ANSWER"
    assert not any(e.event == "QueueCallerJoin" and e.get("Uniqueid") == caller for e in seen)


async def test_priority_category_joins_ahead_of_earlier_callers(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    gold = fresh_number()
    await add_customer(db, gold, category="gold", priority=5)
    port = free_port()
    async with running_daemon(settings_for(pbx, database, port)):
        async with ami_driver.events("QueueCallerJoin") as events:
            for _ in range(2):
                await ami_driver.originate_caller(fresh_number(), wait_seconds=30)
                await events.next("QueueCallerJoin")
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", gold, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            join = await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == caller)
        variable = await ami_driver.action(
            {"Action": "Getvar", "Channel": join["Channel"], "Variable": "QUEUE_PRIO"}
        )
    assert join["Position"] == "1"
    assert variable.get("Value") == "5"


# --------------------------------------------------------------------------- request


async def request_rows(db: Any, number: str) -> list[Any]:
    rows: list[Any] = await db.fetch(
        "SELECT * FROM callback_requests WHERE number = $1", f"+{number}"
    )
    return rows


async def stored_request(db: Any, number: str) -> Any:
    async def stored() -> bool:
        return bool(await request_rows(db, number))

    await wait_until(stored, timeout=20, what=f"a request for {number}")
    [row] = await request_rows(db, number)
    return row


def get_data_count(events: list[AmiMessage], uniqueid: str) -> int:
    return sum(
        1
        for e in events
        if e.event == "AGIExecStart"
        and e.get("Uniqueid") == uniqueid
        and str(e.get("Command", "")).upper().startswith("GET DATA")
    )


async def test_ivr_request_with_confirmation_and_preferred_time(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    port = free_port()
    zone = ZoneInfo(noon_zone())
    async with (
        running_daemon(settings_for(pbx, database, port)),
        ami_driver.events(*AGI_EVENTS, "Hangup") as events,
    ):
        channel_id = await originate(
            ami_driver, "lab-request-callers", number, variables=agi_address(port)
        )
        caller = f"{channel_id};2"
        await keys_when_asked(ami_driver, events, caller, "1#")  # my number, yes
        await keys_when_asked(ami_driver, events, caller, "21030#")  # tomorrow 10:30
        row = await stored_request(db, number)
        await events.next("Hangup", lambda e: e.get("Uniqueid") == caller)
    tomorrow = datetime.now(zone).date() + timedelta(days=1)
    expected = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 30, tzinfo=zone)
    assert row["source"] == "ivr"
    assert row["status"] == "pending"
    assert row["preferred_at"] == expected
    assert row["due_at"] == expected
    assert row["queue"] == "lab-sales"


async def test_invalid_time_is_asked_again(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    port = free_port()
    async with (
        running_daemon(settings_for(pbx, database, port, ivr_read_back=False)),
        ami_driver.events(*AGI_EVENTS) as events,
    ):
        channel_id = await originate(
            ami_driver, "lab-request-callers", number, variables=agi_address(port)
        )
        caller = f"{channel_id};2"
        await keys_when_asked(ami_driver, events, caller, "1#")
        await keys_when_asked(ami_driver, events, caller, "12500#")  # 25:00: no such time
        asked_again_at = datetime.now(UTC)
        await keys_when_asked(ami_driver, events, caller, "330#")  # in 30 minutes
        row = await stored_request(db, number)
    expected = asked_again_at + timedelta(minutes=30)
    assert abs(row["preferred_at"] - expected) < timedelta(seconds=10)
    assert row["due_at"] == row["preferred_at"]


async def test_hang_up_mid_ivr_writes_nothing(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    port = free_port()
    async with running_daemon(settings_for(pbx, database, port, ivr_read_back=False)) as app:
        server = app.agi_server
        assert server is not None
        async with ami_driver.events(*AGI_EVENTS) as events:
            channel_id = await originate(
                ami_driver, "lab-request-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            await keys_when_asked(ami_driver, events, caller, "1#")
            channel = await asked(events, caller)  # the time question: the caller hangs up
            reply = await ami_driver.action({"Action": "Hangup", "Channel": channel})
            assert reply.success, reply
            await wait_until(
                lambda: server.stats["hangups"] == 1, timeout=10, what="the route saw the hangup"
            )
        assert server.active_sessions == 0
    assert await request_rows(db, number) == []
    assert await db.fetchval("SELECT count(*) FROM callback_requests") == 0


# --------------------------------------------------------------------------- robustness


async def test_without_callbackd_the_shipped_dialplan_still_queues_the_caller(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    nobody = agi_address(free_port())  # callbackd is stopped: nothing listens there
    async with ami_driver.events("QueueCallerJoin", *AGI_EVENTS) as events:
        inbound = await originate(
            ami_driver, "lab-inbound-callers", fresh_number(), variables=nobody
        )
        unset = await originate(ami_driver, "lab-inbound-callers", fresh_number(), variables={})
        request = await originate(
            ami_driver, "lab-request-callers", fresh_number(), variables=nobody
        )
        joins = {
            caller: await events.next("QueueCallerJoin", on_channel(caller))
            for caller in (f"{inbound};2", f"{unset};2", f"{request};2")
        }
        seen = list(events.pending)
    assert {join["Queue"] for join in joins.values()} == {"lab-sales"}
    # The site left CALLBACKD_AGI unset on one: no AGI was even tried for it.
    assert not any(e.get("Uniqueid") == f"{unset};2" for e in seen if e.event.startswith("AGI"))
    assert await db.fetchval("SELECT count(*) FROM callback_requests") == 0


async def _hostile_clients(port: int) -> tuple[asyncio.StreamWriter, int]:
    """A port probe that closes at once, one sending 1 MB of headers, and one that sends
    half an environment and then nothing (left open: the caller closes it)."""
    _, probe = await asyncio.open_connection("127.0.0.1", port)
    probe.close()
    _, flood = await asyncio.open_connection("127.0.0.1", port)
    line = b"agi_request: " + b"x" * 1000 + b"\n"
    sent = 0
    try:
        while sent < 1 << 20:
            flood.write(line)
            await flood.drain()
            sent += len(line)
    except ConnectionError:
        pass
    flood.close()
    _, stuck = await asyncio.open_connection("127.0.0.1", port)
    stuck.write(b"agi_network: yes\nagi_channel: Local/x\n")
    await stuck.drain()
    return stuck, sent


async def test_hostile_fastagi_clients_do_not_disturb_real_calls(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    numbers = [fresh_number() for _ in range(3)]
    for priority, number in enumerate(numbers, start=1):
        await add_customer(db, number, priority=priority)
    port = free_port()
    settings = settings_for(pbx, database, port, header_timeout_seconds=2.0)
    async with running_daemon(settings) as app:
        server = app.agi_server
        assert server is not None
        await wait_until(server.listening.is_set, timeout=5, what="FastAGI listening")
        async with ami_driver.events("QueueCallerJoin") as events:
            # The hostile clients connect while the real calls are placed and served.
            hostile = asyncio.create_task(_hostile_clients(port), name="hostile-clients")
            callers = [
                await originate(ami_driver, "lab-inbound-callers", n, variables=agi_address(port))
                + ";2"
                for n in numbers
            ]
            joins = [await events.next("QueueCallerJoin", on_channel(c)) for c in callers]
            stuck, flooded = await hostile
        priorities = [
            (
                await ami_driver.action(
                    {"Action": "Getvar", "Channel": join["Channel"], "Variable": "QUEUE_PRIO"}
                )
            ).get("Value")
            for join in joins
        ]
        await wait_until(
            lambda: server.stats["bad_headers"] == 3, timeout=5, what="stuck client dropped"
        )
        stuck.close()
        assert server.stats["completed"] == 3
        assert server.stats["failed"] == 0
    assert flooded > settings.agi.max_header_bytes
    assert priorities == ["1", "2", "3"]


# --------------------------------------------------------------------------- classic AGI


async def test_classic_agi_script_runs_the_same_route_for_asterisk(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    """Asterisk starts callbackd-agi per call (AGI(<script>,inbound,<queue>)); the route
    asks Asterisk itself whether the sticky operator is free, and the caller rings them."""
    pbx.set_operator("op2", "talk")
    number = fresh_number()
    await add_interaction(db, number, OP2)
    await add_customer(db, number, category="gold", priority=4)
    toml = lab_config_toml(database, pbx.ami_callbackd, rest=CLASSIC_CAMPAIGN)
    script = await asyncio.to_thread(install_classic_agi, pbx, toml)
    async with ami_driver.events("DialBegin", "UserEvent") as events:
        timing_id = await originate(
            ami_driver, "lab-bench-agi", number, variables={"CALLBACKD_AGI": script}
        )
        timing = await events.next("UserEvent", on_channel(f"{timing_id};2"), timeout=20)
        channel_id = await originate(
            ami_driver, "lab-inbound-callers", number, variables={"CALLBACKD_AGI": script}
        )
        dial = await events.next("DialBegin", on_channel(f"{channel_id};2"), timeout=20)
    assert timing.get("Status") == "SUCCESS"
    assert (timing.get("Sticky"), timing.get("CallerPriority")) == (OP2, "4")
    assert str(dial.get("DestChannel")).startswith(OP2 + "-")


async def test_caller_presses_1_in_the_queue_and_orders_a_callback(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    """lab-offer has queues.conf context=callbackd-queue-exit: 1 leaves for the request IVR."""
    number = fresh_number()
    port = free_port()
    campaigns = {"offer": crm_campaign(queue="lab-offer")}
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns=campaigns,
        agi=fast_agi(port, ivr_read_back=False),
    )
    async with (
        running_daemon(settings),
        ami_driver.events("QueueCallerJoin", "QueueCallerLeave", *AGI_EVENTS) as events,
    ):
        channel_id = await originate(
            ami_driver, "lab-offer-callers", number, variables=agi_address(port)
        )
        caller = f"{channel_id};2"
        join = await events.next("QueueCallerJoin", on_channel(caller))
        await press(ami_driver, join["Channel"], "1")
        await events.next("QueueCallerLeave", on_channel(caller))
        await keys_when_asked(ami_driver, events, caller, "1#")  # my number
        await keys_when_asked(ami_driver, events, caller, "0#")  # as soon as possible
        row = await stored_request(db, number)
    assert (row["source"], row["queue"], row["preferred_at"]) == ("ivr", "lab-offer", None)
    assert row["due_at"] <= datetime.now(UTC)
