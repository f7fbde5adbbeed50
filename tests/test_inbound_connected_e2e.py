"""A caller whom the shipped callbackd-inbound puts straight through (sticky operator or VIP
target: a Dial(), no queue, no AgentConnect) gets through in callbackd's eyes too: their
pending callback closes and the operator is recorded, the moment the operator answers.
Also: a FreePBX-style Local member (``Local/<x>@<ctx>/n`` with a StateInterface) as the
sticky operator. The real daemon, the real Asterisk, the real Postgres."""

from __future__ import annotations

from typing import Any

import pytest

from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from tests.agi_lab import free_port, fresh_number, originate
from tests.test_agi_e2e import (
    OP2,
    add_customer,
    add_interaction,
    agi_address,
    board_member,
    settings_for,
)

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

VIP_DESK = "Local/talkdesk@lab-operators"


async def pending_request(db: Any, number: str) -> int:
    async def synced() -> bool:
        return bool(await db.fetchval("SELECT 1 FROM campaigns WHERE name = 'sales'"))

    await wait_until(synced, timeout=10, what="campaign sales synced")
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source) "
        "SELECT id, $1, 'abandon' FROM campaigns WHERE name = 'sales' RETURNING id",
        f"+{number}",
    )
    return request_id


async def resolved(db: Any, request_id: int) -> Any:
    async def closed() -> bool:
        status = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", request_id)
        return bool(status == "resolved_inbound")

    await wait_until(closed, timeout=10, what=f"request {request_id} resolved_inbound")
    return await db.fetchrow("SELECT * FROM callback_requests WHERE id = $1", request_id)


async def interactions(db: Any, number: str) -> list[Any]:
    rows: list[Any] = await db.fetch(
        "SELECT * FROM interactions WHERE number = $1 AND uniqueid IS NOT NULL ORDER BY id",
        f"+{number}",
    )
    return rows


async def test_a_caller_put_through_to_their_sticky_operator_resolves_their_callback(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op2", "talk")
    number = fresh_number()
    await add_interaction(db, number, OP2)
    port = free_port()
    async with running_daemon(settings_for(pbx, database, port)) as app:
        request_id = await pending_request(db, number)
        await board_member(app, "lab-sales", OP2, paused=False)
        async with ami_driver.events("DialBegin", "Hangup") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            dial = await events.next("DialBegin", lambda e: e.get("Uniqueid") == caller)
            row = await resolved(db, request_id)
            # ... while the caller and the operator still talk (op2 stays 600 s).
            assert not any(
                e.event == "Hangup" and e.get("Uniqueid") == caller for e in events.pending
            )
        assert app.capture is not None
        assert app.capture.stats.resolved_inbound == 1
    assert str(dial.get("DestChannel")).startswith(OP2 + "-")
    assert row["status_reason"] == f"answered by {OP2} in lab-sales"
    [interaction] = await interactions(db, number)
    assert (interaction["operator_interface"], interaction["queue"]) == (OP2, "lab-sales")
    assert interaction["source"] == "inbound"


async def test_a_vip_put_through_to_the_vip_target_resolves_their_callback(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    await add_customer(db, number, category="vip", skip_queue=True)
    port = free_port()
    variables = {**agi_address(port), "CALLBACKD_VIP_TARGET": VIP_DESK}
    async with running_daemon(settings_for(pbx, database, port)):
        request_id = await pending_request(db, number)
        async with ami_driver.events("DialBegin") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=variables
            )
            caller = f"{channel_id};2"
            dial = await events.next("DialBegin", lambda e: e.get("Uniqueid") == caller)
            row = await resolved(db, request_id)
    assert str(dial.get("DestChannel")).startswith(VIP_DESK + "-")
    assert row["status_reason"] == f"answered by {VIP_DESK} in lab-sales"
    [interaction] = await interactions(db, number)
    assert interaction["operator_interface"] == VIP_DESK


async def test_an_unanswered_sticky_operator_resolves_nothing(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op2", "away")  # rings, never answers: the caller goes on to the queue
    number = fresh_number()
    await add_interaction(db, number, OP2)
    port = free_port()
    async with running_daemon(settings_for(pbx, database, port)) as app:
        request_id = await pending_request(db, number)
        await board_member(app, "lab-sales", OP2, paused=False)
        async with ami_driver.events("DialEnd", "QueueCallerJoin") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            end = await events.next("DialEnd", lambda e: e.get("Uniqueid") == caller)
            await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == caller)
    assert end.get("DialStatus") == "NOANSWER"
    status = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", request_id)
    assert status == "pending"
    assert await interactions(db, number) == []


# --------------------------------------------------------------------------- FreePBX members

LOCAL_N = "Local/op5@lab-operators/n"
STATE = "Custom:lab-op5"


def add_local_member(pbx: LabAsterisk) -> None:
    """A FreePBX-style member: a Local channel with /n, its phone in its state interface
    (reset() removes it after the test)."""
    pbx.cli(
        f"queue add member {LOCAL_N} to lab-sales penalty 0 as Operator5 state_interface {STATE}"
    )
    assert any(m.interface == LOCAL_N for m in pbx.queue_members("lab-sales"))


def set_state(pbx: LabAsterisk, state: str) -> None:
    pbx.cli(f"devstate change {STATE} {state}")


async def test_a_local_member_with_a_state_interface_is_a_sticky_operator(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("op5", "talk")
    number = fresh_number()
    await add_interaction(db, number, LOCAL_N)
    port = free_port()
    set_state(pbx, "NOT_INUSE")
    add_local_member(pbx)
    async with running_daemon(settings_for(pbx, database, port)) as app:
        request_id = await pending_request(db, number)

        def member_in(state: int) -> bool:
            board = app.boards.get("lab")
            return board is not None and any(
                m.interface == LOCAL_N and m.device == STATE and m.status == state
                for m in board.members("lab-sales")
            )

        await wait_until(lambda: member_in(1), timeout=10, what="op5 idle on the board")
        async with ami_driver.events("DialBegin") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            dial = await events.next("DialBegin", lambda e: e.get("Uniqueid") == caller)
            await resolved(db, request_id)
        # The phone behind the member gets busy: the board follows it through the
        # StateInterface, and the next call from the same caller goes to the queue.
        set_state(pbx, "INUSE")
        await wait_until(lambda: member_in(2), timeout=10, what="op5 in use on the board")
        async with ami_driver.events("Newexten", "QueueCallerJoin") as events:
            channel_id = await originate(
                ami_driver, "lab-inbound-callers", number, variables=agi_address(port)
            )
            again = f"{channel_id};2"
            await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == again)
            seen = list(events.pending)
    assert str(dial.get("DestChannel")).startswith("Local/op5@lab-operators-")
    # No sticky Dial() ran in callbackd-inbound before the caller joined the queue. (Dials
    # by the queue itself to its members are no Newexten, so they cannot blur this.)
    assert [
        e
        for e in seen
        if e.get("Uniqueid") == again
        and e.get("Context") == "callbackd-inbound"
        and e.get("Application") == "Dial"
    ] == []
    assert any(e.get("Uniqueid") == again and e.get("Application") == "AGI" for e in seen)
