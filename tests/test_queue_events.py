"""The AMI queue-event adapter: live callers' join times reach the operator board."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from panoramisk.message import Message

from callbackd.ami.queue_events import QueueEventHandler, in_order, live_call_from_ami
from callbackd.domain.operators import LiveCall, LiveCallStage, OperatorBoard


class _Link:
    name = "pbx"

    def __init__(self, replies: list[Message] | None = None) -> None:
        self.replies = replies or []

    async def action(self, _headers: dict[str, str], **_kwargs: Any) -> list[Message]:
        return self.replies


def event(**headers: str) -> Message:
    return Message(headers)


async def test_join_and_leave_events_carry_the_callers_id_and_time() -> None:
    board = OperatorBoard()
    woken: list[int] = []
    handler = QueueEventHandler({"pbx": board}, lambda: woken.append(1))
    link: Any = _Link()
    await handler(
        link,
        event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u1", Timestamp="1700000000.250"),
    )
    await handler(link, event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u2"))
    assert board.callers_waiting("sales") == 2
    assert board.oldest_caller_joined("sales") == datetime.fromtimestamp(1700000000.25, UTC)
    await handler(link, event(Event="QueueCallerLeave", Queue="sales", Uniqueid="u1"))
    joined = board.oldest_caller_joined("sales")
    assert joined is not None
    assert joined > datetime.fromtimestamp(1700000000.25, UTC)
    assert len(woken) == 3


async def _resynced(*replies: Message) -> tuple[OperatorBoard, QueueEventHandler, Any]:
    """A board fed by one QueueStatus answer made of *replies*."""
    board = OperatorBoard()
    handler = QueueEventHandler({"pbx": board}, lambda: None)
    link: Any = _Link(list(replies))
    await handler.resync(link)
    return board, handler, link


async def test_resync_takes_join_times_from_queue_entries() -> None:
    before = datetime.now(UTC)
    board, _, _ = await _resynced(
        event(Event="QueueParams", Queue="sales", Calls="1"),
        event(Event="QueueMember", Queue="sales", Location="PJSIP/1", Status="1"),
        event(Event="QueueEntry", Queue="sales", Uniqueid="u7", Wait="120"),
    )
    joined = board.oldest_caller_joined("sales")
    assert joined is not None
    assert 119 <= (before - joined).total_seconds() <= 121
    assert board.callers_waiting("sales") == 1


async def test_an_abandon_counts_the_caller_out_before_capture_runs() -> None:
    board = OperatorBoard()
    woken: list[int] = []
    seen_by_capture: list[int] = []
    handler = QueueEventHandler({"pbx": board}, lambda: woken.append(1))

    async def capture(_link: Any, _message: Message) -> None:
        seen_by_capture.append(board.callers_waiting("sales"))

    on_abandon = in_order(handler, capture)
    link: Any = _Link()
    await handler(link, event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u1"))
    await handler(link, event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u2"))
    await on_abandon(link, event(Event="QueueCallerAbandon", Queue="sales", Uniqueid="u1"))
    assert seen_by_capture == [1]
    assert len(woken) == 2  # the abandon itself wakes nobody: capture does, once stored
    await handler(link, event(Event="QueueCallerLeave", Queue="sales", Uniqueid="u1"))
    assert board.callers_waiting("sales") == 1  # u2 still waits


async def test_a_join_event_handled_after_the_resync_that_saw_the_caller_counts_once() -> None:
    board, handler, link = await _resynced(
        event(Event="QueueParams", Queue="sales", Calls="1"),
        event(Event="QueueEntry", Queue="sales", Uniqueid="u7", Wait="3"),
    )
    # u7's QueueCallerJoin was sent before Asterisk took the snapshot, handled after it.
    await handler(link, event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u7"))
    assert board.callers_waiting("sales") == 1
    await handler(link, event(Event="QueueCallerAbandon", Queue="sales", Uniqueid="u7"))
    await handler(link, event(Event="QueueCallerLeave", Queue="sales", Uniqueid="u7"))
    assert board.callers_waiting("sales") == 0


def test_agent_events_become_live_calls() -> None:
    headers = {"Queue": "sales", "Interface": "PJSIP/1", "Uniqueid": "u1"}
    stages = {
        "AgentCalled": LiveCallStage.RUNG,
        "AgentConnect": LiveCallStage.CONNECTED,
        "AgentRingNoAnswer": LiveCallStage.ENDED,
        "AgentDump": LiveCallStage.ENDED,
        "AgentComplete": LiveCallStage.ENDED,
    }
    for name, stage in stages.items():
        assert live_call_from_ami(event(Event=name, **headers)) == LiveCall(
            queue="sales", interface="PJSIP/1", caller="u1", stage=stage
        )
    assert live_call_from_ami(event(Event="AgentCalled", Queue="sales", Uniqueid="u1")) is None
    assert (
        live_call_from_ami(event(Event="AgentCalled", Queue="sales", Interface="PJSIP/1")) is None
    )
    assert live_call_from_ami(event(Event="QueueCallerJoin", **headers)) is None


async def test_a_member_put_through_to_a_live_caller_is_held_before_capture_runs() -> None:
    # Asterisk's order: AgentCalled, the caller's QueueCallerLeave, AgentConnect; the
    # report that the phone is in use comes later. Capture's AgentConnect work awaits the
    # database, which lets the dialer run: the board must already hold the member.
    board = OperatorBoard()
    handler = QueueEventHandler({"pbx": board}, lambda: None)
    link: Any = _Link()
    free_for_capture: list[int] = []

    async def capture(_link: Any, _message: Message) -> None:
        free_for_capture.append(len(board.free_members("sales", datetime.now(UTC))))

    on_connect = in_order(handler, capture)
    call = {"Queue": "sales", "Interface": "PJSIP/1", "Uniqueid": "u1"}
    await handler(link, event(Event="QueueMemberStatus", Status="1", **call))
    await handler(link, event(Event="QueueCallerJoin", Queue="sales", Uniqueid="u1"))
    await handler(link, event(Event="AgentCalled", **call))
    await handler(link, event(Event="QueueCallerLeave", Queue="sales", Uniqueid="u1"))
    assert board.callers_waiting("sales") == 0
    assert board.free_members("sales", datetime.now(UTC)) == []
    await on_connect(link, event(Event="AgentConnect", **call))
    assert free_for_capture == [0]
    await handler(link, event(Event="QueueMemberStatus", Status="2", **call))
    await handler(link, event(Event="AgentComplete", **call))
    await handler(link, event(Event="QueueMemberStatus", Status="1", **call))
    assert len(board.free_members("sales", datetime.now(UTC))) == 1
