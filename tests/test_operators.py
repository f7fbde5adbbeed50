"""Operator availability, release slots and the release rate limiter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbackd.domain.operators import (
    DeviceState,
    LiveCall,
    LiveCallStage,
    MemberState,
    OperatorBoard,
    ReleaseLimiter,
    release_slots,
)

NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)
Q = "support"


def member(interface: str = "PJSIP/101", **changes: Any) -> MemberState:
    base = MemberState(
        queue=Q,
        interface=interface,
        state_interface=interface,
        name=interface.rsplit("/", 1)[-1],
        status=DeviceState.NOT_INUSE,
    )
    return replace(base, **changes)


def interfaces(members: list[MemberState]) -> list[str]:
    return [m.interface for m in members]


def board_with(*members: MemberState, waiting: int = 0) -> OperatorBoard:
    board = OperatorBoard()
    board.replace_queue(Q, members, waiting)
    return board


# --------------------------------------------------------------------------- member state


def test_member_state_is_frozen_and_validated() -> None:
    m = member()
    with pytest.raises(AttributeError):
        m.paused = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="wrapup"):
        member(wrapup_seconds=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        member(last_call_end=datetime(2024, 6, 5, 11))


def test_device_is_the_state_interface_when_there_is_one() -> None:
    local = member("Local/101@agents/n", state_interface="PJSIP/101")
    assert local.device == "PJSIP/101"
    assert member("PJSIP/102", state_interface="").device == "PJSIP/102"


# --------------------------------------------------------------------------- free members


@pytest.mark.parametrize(
    ("status", "free"),
    [
        (DeviceState.UNKNOWN, True),
        (DeviceState.NOT_INUSE, True),
        (DeviceState.INUSE, False),
        (DeviceState.BUSY, False),
        (DeviceState.INVALID, False),
        (DeviceState.UNAVAILABLE, False),
        (DeviceState.RINGING, False),
        (DeviceState.RINGINUSE, False),
        (DeviceState.ONHOLD, False),
        (42, False),  # a code from a future Asterisk is not "free"
    ],
)
def test_only_idle_devices_are_free(status: int, free: bool) -> None:
    board = board_with(member(status=status))
    assert bool(board.free_members(Q, NOW)) is free


def test_plain_ints_from_the_adapter_work() -> None:
    assert interfaces(board_with(member(status=1)).free_members(Q, NOW)) == ["PJSIP/101"]


def test_unknown_state_in_a_call_is_not_free() -> None:
    assert board_with(member(status=DeviceState.UNKNOWN, in_call=True)).free_members(Q, NOW) == []


def test_paused_and_in_call_members_are_not_free() -> None:
    board = board_with(member("PJSIP/1", paused=True), member("PJSIP/2", in_call=True))
    assert board.free_members(Q, NOW) == []


def test_wrapup_after_the_last_call() -> None:
    m = member(last_call_end=NOW - timedelta(seconds=20), wrapup_seconds=30)
    board = board_with(m)
    assert board.free_members(Q, NOW) == []
    assert board.free_members(Q, NOW + timedelta(seconds=9)) == []
    assert board.free_members(Q, NOW + timedelta(seconds=10)) == [m]


def test_the_longer_of_member_and_campaign_wrapup_wins() -> None:
    m = member(last_call_end=NOW - timedelta(seconds=20), wrapup_seconds=10)
    board = board_with(m)
    assert board.free_members(Q, NOW) == [m]
    assert board.free_members(Q, NOW, wrapup_seconds=25) == []
    assert board.free_members(Q, NOW, wrapup_seconds=20) == [m]
    assert board.free_members(Q, NOW, wrapup_seconds=5) == [m]


def test_free_members_longest_idle_first() -> None:
    board = board_with(
        member("PJSIP/recent", last_call_end=NOW - timedelta(minutes=1)),
        member("PJSIP/old", last_call_end=NOW - timedelta(hours=1)),
        member("PJSIP/never-b"),
        member("PJSIP/never-a"),
        member("PJSIP/busy", status=DeviceState.INUSE, last_call_end=NOW - timedelta(days=1)),
    )
    assert interfaces(board.free_members(Q, NOW)) == [
        "PJSIP/never-a",
        "PJSIP/never-b",
        "PJSIP/old",
        "PJSIP/recent",
    ]


def test_unknown_queue_has_nobody_and_nobody_waiting() -> None:
    board = OperatorBoard()
    assert board.free_members("nope", NOW) == []
    assert board.callers_waiting("nope") == 0
    assert board.members("nope") == []


# --------------------------------------------------------------------------- feeding


def test_snapshot_replaces_the_queue() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"), waiting=4)
    board.replace_queue(Q, [member("PJSIP/2", paused=True), member("PJSIP/3")], 1)
    assert sorted(interfaces(board.members(Q))) == ["PJSIP/2", "PJSIP/3"]
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/3"]
    assert board.callers_waiting(Q) == 1


def test_snapshot_of_one_queue_leaves_others_alone() -> None:
    board = board_with(member("PJSIP/1"))
    board.replace_queue("sales", [member("PJSIP/9", queue="sales")], 2)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]
    assert interfaces(board.free_members("sales", NOW)) == ["PJSIP/9"]
    assert board.callers_waiting(Q) == 0


def test_snapshot_refuses_members_of_another_queue_and_negative_counts() -> None:
    board = OperatorBoard()
    with pytest.raises(ValueError, match="belongs to"):
        board.replace_queue(Q, [member(queue="sales")], 0)
    with pytest.raises(ValueError, match="negative"):
        board.replace_queue(Q, [], -1)


def test_update_member_adds_and_changes() -> None:
    board = OperatorBoard()
    board.update_member(member("PJSIP/1"))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]
    board.update_member(member("PJSIP/1", paused=True))
    assert board.free_members(Q, NOW) == []
    board.update_member(member("PJSIP/1", paused=False, status=DeviceState.INUSE))
    assert board.free_members(Q, NOW) == []
    board.update_member(member("PJSIP/1"))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_remove_member() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    board.remove_member(Q, "PJSIP/1")
    board.remove_member(Q, "PJSIP/absent")
    board.remove_member("other", "PJSIP/2")
    assert interfaces(board.members(Q)) == ["PJSIP/2"]


def test_callers_join_and_leave_never_below_zero() -> None:
    board = OperatorBoard()
    board.caller_joined(Q)
    board.caller_joined(Q)
    assert board.callers_waiting(Q) == 2
    board.caller_left(Q, now=NOW)
    board.caller_left(Q, now=NOW)
    board.caller_left(Q, now=NOW)  # a lost join event must not make the count negative
    assert board.callers_waiting(Q) == 0
    board.caller_joined(Q)
    assert board.callers_waiting(Q) == 1


# --------------------------------------------------------------------------- reservations


def test_a_reserved_operator_is_not_free_until_the_deadline() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=5))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]
    assert interfaces(board.free_members(Q, NOW + timedelta(seconds=4))) == ["PJSIP/2"]
    assert interfaces(board.free_members(Q, NOW + timedelta(seconds=5))) == ["PJSIP/1", "PJSIP/2"]


def test_an_idle_update_does_not_end_a_reservation() -> None:
    # The snapshot/event may still say "idle" in the instant after the Originate.
    board = board_with(member("PJSIP/1"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=5))
    board.update_member(member("PJSIP/1"))
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    assert board.free_members(Q, NOW) == []


@pytest.mark.parametrize(
    "status",
    [
        DeviceState.RINGING,
        DeviceState.INUSE,
        DeviceState.BUSY,
        DeviceState.RINGINUSE,
        DeviceState.ONHOLD,
    ],
)
def test_the_device_state_takes_over_from_a_reservation(status: DeviceState) -> None:
    board = board_with(member("PJSIP/1"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=30))
    board.update_member(member("PJSIP/1", status=status))
    assert board.free_members(Q, NOW) == []
    # The call is over (the operator rejected it, say): free again before the deadline.
    board.update_member(member("PJSIP/1"))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_in_call_in_a_snapshot_also_ends_the_reservation() -> None:
    board = board_with(member("PJSIP/1"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=30))
    board.replace_queue(Q, [member("PJSIP/1", in_call=True)], 0)
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_release_ends_a_reservation_early() -> None:
    board = board_with(member("PJSIP/1"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(minutes=1))
    board.release(Q, "PJSIP/1")
    board.release(Q, "PJSIP/1")  # twice is harmless
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_a_reservation_covers_the_same_phone_in_every_queue() -> None:
    board = board_with(member("Local/101@agents/n", state_interface="PJSIP/101"))
    board.replace_queue(
        "sales", [member("PJSIP/101", queue="sales", state_interface="PJSIP/101")], 0
    )
    board.reserve(Q, "Local/101@agents/n", NOW + timedelta(seconds=10))
    assert board.free_members(Q, NOW) == []
    assert board.free_members("sales", NOW) == []
    board.release("sales", "PJSIP/101")
    assert len(board.free_members(Q, NOW)) == 1


def test_a_reservation_made_before_the_member_is_known_still_holds() -> None:
    board = OperatorBoard()
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=10))
    board.update_member(member("PJSIP/1"))
    assert board.free_members(Q, NOW) == []
    board.release(Q, "PJSIP/1")
    assert len(board.free_members(Q, NOW)) == 1


def test_a_new_reservation_replaces_the_old_deadline() -> None:
    board = board_with(member("PJSIP/1"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=60))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=5))
    assert len(board.free_members(Q, NOW + timedelta(seconds=5))) == 1


# --------------------------------------------------------------------------- settling


def test_after_our_call_ends_the_operator_waits_for_a_fresh_report() -> None:
    # Our call ended before Asterisk's report of it came: the board still says "idle" from
    # before the call, and the phone may meanwhile have taken another call.
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=30))
    board.settle(Q, "PJSIP/1", NOW, after=board.report_mark())
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]
    # The late report: the phone is in use (another call) -- still not free.
    board.update_member(member("PJSIP/1", status=DeviceState.INUSE))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]
    board.update_member(member("PJSIP/1"))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1", "PJSIP/2"]


def test_a_fresh_idle_report_frees_a_settling_operator_at_once() -> None:
    board = board_with(member("PJSIP/1"))
    board.settle(Q, "PJSIP/1", NOW, after=board.report_mark())
    board.update_member(member("PJSIP/1"))
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_a_snapshot_settles_too() -> None:
    board = board_with(member("PJSIP/1"))
    board.settle(Q, "PJSIP/1", NOW, after=board.report_mark())
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_without_a_report_the_operator_is_free_after_the_settle_time() -> None:
    # A phone whose state never changed (the Originate failed at once) sends no report.
    board = OperatorBoard(settle_seconds=2.5)
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    board.settle(Q, "PJSIP/1", NOW, after=board.report_mark())
    assert board.free_members(Q, NOW + timedelta(seconds=2.4)) == []
    assert len(board.free_members(Q, NOW + timedelta(seconds=2.5))) == 1


def test_settling_covers_the_same_phone_in_every_queue() -> None:
    board = board_with(member("Local/101@agents/n", state_interface="PJSIP/101"))
    board.replace_queue(
        "sales", [member("PJSIP/101", queue="sales", state_interface="PJSIP/101")], 0
    )
    board.settle(Q, "Local/101@agents/n", NOW, after=board.report_mark())
    assert board.free_members("sales", NOW) == []
    board.update_member(member("PJSIP/101", queue="sales", state_interface="PJSIP/101"))
    assert len(board.free_members(Q, NOW)) == 1


def test_a_report_that_came_after_the_call_ended_counts() -> None:
    # The report may be handled between the event that ended our call and the moment the
    # call's task settles the operator: it is fresh all the same.
    board = board_with(member("PJSIP/1"))
    ended = board.report_mark()
    board.update_member(member("PJSIP/1", status=DeviceState.INUSE))
    board.update_member(member("PJSIP/1"))
    board.settle(Q, "PJSIP/1", NOW, after=ended)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_a_report_on_another_phone_does_not_count() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    ended = board.report_mark()
    board.update_member(member("PJSIP/2"))
    board.settle(Q, "PJSIP/1", NOW, after=ended)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]


def test_next_hold_end_is_the_earliest_running_hold() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    assert board.next_hold_end(NOW) is None
    board.reserve(Q, "PJSIP/1", NOW + timedelta(seconds=9))
    board.settle(Q, "PJSIP/2", NOW, after=board.report_mark())
    assert board.next_hold_end(NOW) == NOW + timedelta(seconds=2)  # the default settle time
    assert board.next_hold_end(NOW + timedelta(seconds=2)) == NOW + timedelta(seconds=9)
    assert board.next_hold_end(NOW + timedelta(seconds=9)) is None


def test_settle_time_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        OperatorBoard(settle_seconds=-1)


# --------------------------------------------------------------------------- live calls

RUNG, CONNECTED, ENDED = LiveCallStage.RUNG, LiveCallStage.CONNECTED, LiveCallStage.ENDED


def live(stage: LiveCallStage, interface: str = "PJSIP/1", caller: str = "c1") -> LiveCall:
    return LiveCall(queue=Q, interface=interface, caller=caller, stage=stage)


def test_a_member_rung_for_a_live_caller_is_not_free() -> None:
    board = board_with(member("PJSIP/1"), member("PJSIP/2"))
    board.caller_joined(Q, "c1", NOW)
    board.live_call(live(RUNG), NOW)
    assert interfaces(board.free_members(Q, NOW + timedelta(hours=1))) == ["PJSIP/2"]


def test_the_answered_caller_leaves_before_the_connect_and_the_busy_report() -> None:
    # The order Asterisk sends them in: AgentCalled, QueueCallerLeave, AgentConnect, and
    # the report that the phone is in use last (late under load).
    board = board_with(member("PJSIP/1"))
    board.caller_joined(Q, "c1", NOW)
    board.live_call(live(RUNG), NOW)
    board.caller_left(Q, "c1", now=NOW)
    assert board.callers_waiting(Q) == 0
    assert board.free_members(Q, NOW) == []  # between the leave and the AgentConnect
    board.live_call(live(CONNECTED), NOW)
    assert board.free_members(Q, NOW + timedelta(minutes=10)) == []  # no report yet
    board.update_member(member("PJSIP/1", status=DeviceState.INUSE))
    assert board.free_members(Q, NOW + timedelta(minutes=10)) == []
    board.update_member(member("PJSIP/1"))  # the live call is over
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]
    board.live_call(live(ENDED), NOW)  # its AgentComplete changes nothing
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


def test_a_stale_idle_report_does_not_free_a_rung_member() -> None:
    # A QueueMemberPause of the same member carries the state from before the ring.
    board = board_with(member("PJSIP/1"))
    board.live_call(live(RUNG), NOW)
    board.update_member(member("PJSIP/1"))
    assert board.free_members(Q, NOW + timedelta(minutes=1)) == []


def test_a_connected_member_whose_phone_is_never_reported_is_held_until_the_call_ends() -> None:
    board = OperatorBoard(settle_seconds=2)
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    board.caller_joined(Q, "c1", NOW)
    board.live_call(live(RUNG), NOW)
    board.caller_left(Q, "c1", now=NOW)
    board.live_call(live(CONNECTED), NOW)
    assert board.free_members(Q, NOW + timedelta(minutes=30)) == []
    board.live_call(live(ENDED), NOW)  # AgentComplete: settles like callbackd's own call
    assert board.free_members(Q, NOW + timedelta(seconds=1)) == []
    assert board.next_hold_end(NOW) == NOW + timedelta(seconds=2)
    assert len(board.free_members(Q, NOW + timedelta(seconds=2))) == 1


def test_a_connect_after_the_busy_report_needs_no_hold() -> None:
    board = board_with(member("PJSIP/1"))
    board.live_call(live(RUNG), NOW)
    board.update_member(member("PJSIP/1", status=DeviceState.INUSE))
    board.caller_left(Q, "c1", now=NOW)
    board.live_call(live(CONNECTED), NOW)
    board.update_member(member("PJSIP/1"))  # the call is over: free at once
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/1"]


@pytest.mark.parametrize("reported", [True, False])
def test_a_ring_no_answer_frees_the_member_promptly(reported: bool) -> None:
    board = OperatorBoard(settle_seconds=2)
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    board.live_call(live(RUNG), NOW)
    if reported:
        board.update_member(member("PJSIP/1", status=DeviceState.RINGING))
    board.live_call(live(ENDED), NOW)  # AgentRingNoAnswer (or AgentDump)
    if reported:
        # The ringing was reported: the device state holds it until the idle report.
        assert board.free_members(Q, NOW + timedelta(minutes=1)) == []
        board.update_member(member("PJSIP/1"))
        assert len(board.free_members(Q, NOW)) == 1
    else:
        # Nothing reported: held until a report on the phone, or for the settle time.
        assert board.free_members(Q, NOW) == []
        assert len(board.free_members(Q, NOW + timedelta(seconds=2))) == 1
        board.live_call(live(RUNG), NOW)
        board.live_call(live(ENDED), NOW)
        board.update_member(member("PJSIP/1"))
        assert len(board.free_members(Q, NOW)) == 1


def test_a_ring_end_for_another_caller_keeps_the_hold() -> None:
    board = board_with(member("PJSIP/1"))
    board.live_call(live(RUNG, caller="c2"), NOW)
    board.live_call(live(ENDED, caller="c1"), NOW)
    assert board.free_members(Q, NOW + timedelta(minutes=1)) == []


def test_ringall_the_members_not_connected_are_free_when_the_ringing_stops() -> None:
    board = OperatorBoard(settle_seconds=2)
    ops = [member(f"PJSIP/{n}") for n in (1, 2, 3)]
    board.replace_queue(Q, ops, 0)
    board.caller_joined(Q, "c1", NOW)
    for op in ops:
        board.live_call(live(RUNG, op.interface), NOW)
    # PJSIP/2's ringing is reported, then its idle state once the ring is cancelled;
    # PJSIP/3's never is. PJSIP/1 answers.
    board.update_member(member("PJSIP/2", status=DeviceState.RINGING))
    assert board.free_members(Q, NOW) == []
    board.update_member(member("PJSIP/2"))
    board.caller_left(Q, "c1", now=NOW)
    board.live_call(live(CONNECTED, "PJSIP/1"), NOW)
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]
    assert interfaces(board.free_members(Q, NOW + timedelta(seconds=2))) == ["PJSIP/2", "PJSIP/3"]
    board.update_member(member("PJSIP/3"))  # or a report on PJSIP/3 ends its hold sooner
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2", "PJSIP/3"]


def test_a_caller_who_gives_up_while_rung_frees_the_members() -> None:
    board = OperatorBoard(settle_seconds=2)
    board.replace_queue(Q, [member("PJSIP/1")], 0)
    board.caller_joined(Q, "c1", NOW)
    board.live_call(live(RUNG), NOW)
    board.caller_abandoned(Q, "c1", now=NOW)
    board.caller_left(Q, "c1", now=NOW)
    board.update_member(member("PJSIP/1"))
    assert len(board.free_members(Q, NOW)) == 1


def test_a_live_hold_covers_the_same_phone_in_every_queue() -> None:
    board = board_with(member("Local/101@agents/n", state_interface="PJSIP/101"))
    board.replace_queue(
        "sales", [member("PJSIP/101", queue="sales", state_interface="PJSIP/101")], 0
    )
    board.live_call(live(RUNG, "Local/101@agents/n"), NOW)
    assert board.free_members("sales", NOW) == []
    board.update_member(member("PJSIP/101", queue="sales", state_interface="PJSIP/101"))
    assert board.free_members("sales", NOW) == []  # idle, but from before the ring
    board.update_member(
        member("PJSIP/101", queue="sales", state_interface="PJSIP/101", status=DeviceState.INUSE)
    )
    board.update_member(member("PJSIP/101", queue="sales", state_interface="PJSIP/101"))
    assert len(board.free_members(Q, NOW)) == 1


def test_a_snapshot_settles_the_live_holds_it_does_not_confirm() -> None:
    # After a reconnect the events that ended a live call may have been lost.
    board = OperatorBoard(settle_seconds=2)
    board.replace_queue(Q, [member("PJSIP/1"), member("PJSIP/2")], 0)
    board.live_call(live(RUNG, "PJSIP/1"), NOW)
    board.live_call(live(RUNG, "PJSIP/2", caller="c2"), NOW)
    snapshot = [member("PJSIP/1"), member("PJSIP/2", status=DeviceState.INUSE)]
    board.replace_queue(Q, snapshot, 0, now=NOW)
    assert board.free_members(Q, NOW) == []
    assert interfaces(board.free_members(Q, NOW + timedelta(seconds=2))) == ["PJSIP/1"]
    board.update_member(member("PJSIP/2"))  # confirmed busy, then idle: free at once
    assert interfaces(board.free_members(Q, NOW)) == ["PJSIP/2"]


# --------------------------------------------------------------------------- release_slots


@pytest.mark.parametrize(
    ("free", "waiting", "slots"),
    [(0, 0, 0), (3, 0, 3), (3, 1, 2), (3, 3, 0), (1, 5, 0), (0, 2, 0), (5, 2, 3)],
)
def test_live_callers_come_first(free: int, waiting: int, slots: int) -> None:
    assert release_slots(free, waiting) == slots


OLD = NOW - timedelta(minutes=10)
NEW = NOW - timedelta(minutes=1)


@pytest.mark.parametrize(
    ("free", "waiting", "callback", "caller", "slots"),
    [
        (1, 1, OLD, NEW, 1),  # the callback joined first: it is at the head of the line
        (2, 5, OLD, NEW, 1),  # one slot only, even with several operators free
        (0, 3, OLD, NEW, 0),  # no operator, no slot
        (1, 1, NEW, OLD, 0),  # the live caller joined first
        (1, 1, OLD, OLD, 0),  # a tie goes to the live caller
        (1, 1, None, NEW, 0),  # unknown join times never jump the line
        (1, 1, OLD, None, 0),
        (4, 1, OLD, NEW, 3),  # spare operators: interleave changes nothing
        (2, 0, OLD, None, 2),
    ],
)
def test_interleave_by_join_time(
    free: int,
    waiting: int,
    callback: datetime | None,
    caller: datetime | None,
    slots: int,
) -> None:
    assert (
        release_slots(
            free,
            waiting,
            interleave=True,
            oldest_callback_joined=callback,
            oldest_caller_joined=caller,
        )
        == slots
    )


def test_without_interleave_join_times_are_ignored() -> None:
    assert release_slots(1, 1, oldest_callback_joined=OLD, oldest_caller_joined=NEW) == 0


def test_release_slots_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        release_slots(-1, 0)
    with pytest.raises(ValueError, match="negative"):
        release_slots(1, -1)


join_times = st.none() | st.datetimes(datetime(2024, 1, 1), datetime(2024, 1, 2)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@given(st.integers(0, 50), st.integers(0, 50), st.booleans(), join_times, join_times)
def test_release_slots_properties(
    free: int,
    waiting: int,
    interleave: bool,
    callback: datetime | None,
    caller: datetime | None,
) -> None:
    slots = release_slots(
        free,
        waiting,
        interleave=interleave,
        oldest_callback_joined=callback,
        oldest_caller_joined=caller,
    )
    base = max(0, free - waiting)
    assert 0 <= slots <= free  # never more callbacks than free operators
    assert base <= slots <= base + 1  # interleave adds at most one over "callers first"
    if not interleave:
        assert slots == base
    if slots > base:
        assert callback is not None
        assert caller is not None
        assert callback < caller


# --------------------------------------------------------------------------- ReleaseLimiter


def test_limiter_allows_a_burst_of_capacity_then_refills() -> None:
    limiter = ReleaseLimiter(capacity=3, per_minute=6)  # one token every 10 s
    assert [limiter.take(NOW) for _ in range(4)] == [True, True, True, False]
    assert not limiter.take(NOW + timedelta(seconds=9))
    assert limiter.take(NOW + timedelta(seconds=10))
    assert not limiter.take(NOW + timedelta(seconds=10))


def test_a_long_outage_refills_only_up_to_capacity() -> None:
    limiter = ReleaseLimiter(capacity=2, per_minute=60)
    assert limiter.take(NOW)
    later = NOW + timedelta(hours=5)
    assert limiter.available(later) == 2
    assert [limiter.take(later) for _ in range(3)] == [True, True, False]


def test_clock_stepping_back_refills_nothing() -> None:
    limiter = ReleaseLimiter(capacity=1, per_minute=1)
    assert limiter.take(NOW)
    assert not limiter.take(NOW - timedelta(hours=1))
    assert not limiter.take(NOW + timedelta(seconds=59))
    assert limiter.take(NOW + timedelta(seconds=60))


def test_next_available() -> None:
    limiter = ReleaseLimiter(capacity=1, per_minute=7)  # awkward rate on purpose
    assert limiter.next_available(NOW) == NOW
    assert limiter.take(NOW)
    at = limiter.next_available(NOW)
    assert at > NOW
    assert not limiter.take(at - timedelta(microseconds=1))
    assert limiter.take(at)


def test_fractional_rates() -> None:
    limiter = ReleaseLimiter(capacity=1, per_minute=0.5)
    assert limiter.take(NOW)
    assert limiter.next_available(NOW) == NOW + timedelta(minutes=2)


def test_limiter_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReleaseLimiter(0, 10)
    for rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="per_minute"):
            ReleaseLimiter(1, rate)


@given(
    st.integers(1, 20),
    st.floats(0.01, 10_000),
    st.lists(st.integers(0, 120_000_000), min_size=1, max_size=60),
)
@settings(deadline=None)
def test_limiter_never_exceeds_its_budget(capacity: int, rate: float, gaps: list[int]) -> None:
    limiter = ReleaseLimiter(capacity, rate)
    now = NOW
    taken = 0
    for gap in gaps:
        now += timedelta(microseconds=gap)
        expected_at = limiter.next_available(now)
        assert expected_at >= now
        if limiter.take(now):
            taken += 1
        else:
            assert expected_at > now
            assert limiter.take(expected_at)  # next_available is exact
            taken += 1
            now = expected_at
    elapsed_minutes = (now - NOW).total_seconds() / 60
    assert taken <= capacity + rate * elapsed_minutes + 1e-6


# --------------------------------------------------------------------------- live callers' ages


def test_the_oldest_waiting_callers_join_time_is_kept() -> None:
    board = OperatorBoard()
    assert board.oldest_caller_joined(Q) is None
    board.caller_joined(Q, "c1", NOW)
    board.caller_joined(Q, "c2", NOW - timedelta(seconds=30))
    board.caller_joined(Q)  # a join without an id still counts as a waiting caller
    assert board.callers_waiting(Q) == 3
    assert board.oldest_caller_joined(Q) == NOW - timedelta(seconds=30)
    board.caller_left(Q, "c2", now=NOW)
    assert board.oldest_caller_joined(Q) == NOW
    board.caller_left(Q, "unknown", now=NOW)  # a leave for a caller not waiting changes nothing
    assert board.oldest_caller_joined(Q) == NOW
    assert board.callers_waiting(Q) == 2
    board.caller_left(Q, now=NOW)  # the caller who joined without an id
    assert board.callers_waiting(Q) == 1


def test_a_leave_without_an_id_never_counts_out_a_caller_known_by_id() -> None:
    board = OperatorBoard()
    board.caller_joined(Q, "c1", NOW)
    board.caller_left(Q, now=NOW)
    assert board.callers_waiting(Q) == 1
    board.caller_left(Q, "c1", now=NOW)
    assert board.callers_waiting(Q) == 0
    assert board.oldest_caller_joined(Q) is None  # no stale age holds callbacks back


def test_a_snapshot_replaces_the_callers() -> None:
    board = OperatorBoard()
    board.caller_joined(Q, "gone", NOW - timedelta(hours=1))
    board.replace_queue(Q, [member()], 1, {"c9": NOW - timedelta(seconds=5)})
    assert board.oldest_caller_joined(Q) == NOW - timedelta(seconds=5)
    assert board.callers_waiting(Q) == 1
    board.replace_queue(Q, [member()], 2, {"c9": NOW - timedelta(seconds=5)})
    assert board.callers_waiting(Q) == 2  # one more counted without an id
    board.replace_queue(Q, [member()], 0)
    assert board.callers_waiting(Q) == 0
    assert board.oldest_caller_joined(Q) is None


def test_an_abandoning_caller_is_counted_out_once_at_the_abandon() -> None:
    board = OperatorBoard()
    for caller in ("c1", "c2", "c3"):
        board.caller_joined(Q, caller, NOW)
    board.caller_abandoned(Q, "c1", now=NOW)
    assert board.callers_waiting(Q) == 2  # at once, before c1's QueueCallerLeave
    board.caller_abandoned(Q, "c1", now=NOW)  # the same abandon seen twice
    board.caller_left(Q, "c1", now=NOW)  # its leave
    board.caller_left(Q, "c1", now=NOW)  # and the leave seen twice
    assert board.callers_waiting(Q) == 2
    board.caller_left(Q, "c2", now=NOW)
    assert board.callers_waiting(Q) == 1


def test_a_join_handled_after_the_snapshot_that_holds_it_is_counted_once() -> None:
    """QueueStatus at connect races the events: the caller's own QueueCallerJoin, sent
    before the snapshot was taken, may be handled after it. Counted twice, the queue would
    owe its one free operator to a caller who is not there, for as long as the link lives."""
    board = board_with(member("PJSIP/1"))
    board.replace_queue(Q, [member("PJSIP/1")], 1, {"c1": NOW - timedelta(seconds=2)})
    board.caller_joined(Q, "c1", NOW - timedelta(seconds=1))
    assert board.callers_waiting(Q) == 1
    assert board.oldest_caller_joined(Q) == NOW - timedelta(seconds=2)
    board.caller_abandoned(Q, "c1", now=NOW)
    board.caller_left(Q, "c1", now=NOW)
    assert board.callers_waiting(Q) == 0
    assert release_slots(len(board.free_members(Q, NOW)), board.callers_waiting(Q)) == 1


def test_a_resync_after_an_abandon_whose_leave_never_came() -> None:
    board = OperatorBoard()
    board.caller_joined(Q, "c1", NOW)
    board.caller_abandoned(Q, "c1", now=NOW)
    board.replace_queue(Q, [], 1, {"c1": NOW})  # c1 again, e.g. a new call with that id
    board.caller_left(Q, "c1", now=NOW)
    assert board.callers_waiting(Q) == 0


# Caller event streams as Asterisk sends them: every caller joins once, then leaves, or
# abandons and leaves, or is still waiting at the end. Caller c<i> may be rung to its own
# member PJSIP/<i> (the queue rings no phone in use): answered -- the leave comes before the
# AgentConnect -- and talking at the end or done, rung without an answer, or rung until the
# caller gives up. The phones' states are never reported during the stream (they lag
# behind it): only the board's holds keep the members off.
_CALLER_FATES = st.lists(
    st.sampled_from(
        ["waits", "leaves", "abandons", "talking", "talked", "no_answer", "gives_up_rung"]
    ),
    min_size=1,
    max_size=8,
)


def _fate_events(fate: str, caller: str) -> list[tuple[str, str]]:
    return [("join", caller)] + {
        "waits": [],
        "leaves": [("leave", caller)],
        "abandons": [("abandon", caller), ("leave", caller)],
        "talking": [("rung", caller), ("leave", caller), ("connected", caller)],
        "talked": [("rung", caller), ("leave", caller), ("connected", caller), ("ended", caller)],
        "no_answer": [("rung", caller), ("ended", caller)],
        "gives_up_rung": [("rung", caller), ("abandon", caller), ("leave", caller)],
    }[fate]


@st.composite
def _caller_events(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    fates = draw(_CALLER_FATES)
    pending = [_fate_events(fate, f"c{i}") for i, fate in enumerate(fates)]
    events: list[tuple[str, str]] = []
    while any(pending):
        stream = draw(st.sampled_from([p for p in pending if p]))
        events.append(stream.pop(0))
    return fates, events


def _phone(caller: str) -> str:
    return f"PJSIP/{caller[1:]}"


def _apply(board: OperatorBoard, kind: str, caller: str) -> None:
    stages = {"rung": RUNG, "connected": CONNECTED, "ended": ENDED}
    if kind == "join":
        board.caller_joined(Q, caller, NOW)
    elif kind == "abandon":
        board.caller_abandoned(Q, caller, now=NOW)
    elif kind in stages:
        board.live_call(live(stages[kind], _phone(caller), caller), NOW)
    else:
        board.caller_left(Q, caller, now=NOW)


@settings(max_examples=300, deadline=None)
@given(streams=_caller_events(), data=st.data())
def test_a_snapshot_racing_the_events_converges_to_the_truth(
    streams: tuple[list[str], list[tuple[str, str]]], data: st.DataObject
) -> None:
    """Asterisk takes the snapshot after event *taken*; the board handled only the first
    *handled* of those before the snapshot arrived and handles the rest after it. Whatever
    the race, the waiting callers are counted right, a member talking to a live caller is
    never free, and no hold outlives the calls by more than the settle time."""
    fates, events = streams
    taken = data.draw(st.integers(0, len(events)), label="taken")
    handled = data.draw(st.integers(0, taken), label="handled")
    waiting_at: set[str] = set()
    in_call_at: set[str] = set()  # QueueStatus shows InCall=1 whatever the device state
    for kind, caller in events[:taken]:
        if kind == "join":
            waiting_at.add(caller)
        elif kind in ("abandon", "leave"):
            waiting_at.discard(caller)
        elif kind == "connected":
            in_call_at.add(_phone(caller))
        elif kind == "ended":
            in_call_at.discard(_phone(caller))
    phones = [member(_phone(f"c{i}")) for i in range(len(fates))]
    board = OperatorBoard(settle_seconds=2)
    board.replace_queue(Q, phones, 0)
    for kind, caller in events[:handled]:
        _apply(board, kind, caller)
    snapshot = [replace(m, in_call=m.interface in in_call_at) for m in phones]
    board.replace_queue(Q, snapshot, len(waiting_at), dict.fromkeys(waiting_at, NOW), now=NOW)
    for kind, caller in events[handled:]:
        _apply(board, kind, caller)
    still_waiting = {c for kind, c in events if kind == "join"} - {
        c for kind, c in events if kind in ("abandon", "leave")
    }
    assert board.callers_waiting(Q) == len(still_waiting)
    talking = {_phone(f"c{i}") for i, fate in enumerate(fates) if fate == "talking"}
    free_now = set(interfaces(board.free_members(Q, NOW)))
    assert not free_now & talking
    # Held no longer than the settle time after the calls, unless the snapshot saw the
    # member in a call: then until Asterisk reports it again.
    later = NOW + timedelta(seconds=2)
    held = talking | in_call_at
    assert set(interfaces(board.free_members(Q, later))) == {m.interface for m in phones} - held
    for phone in talking:  # Asterisk reports the live calls at last
        board.update_member(member(phone, status=DeviceState.INUSE))
        assert phone not in interfaces(board.free_members(Q, later))
    for idle in phones:  # and then every phone idle: nothing holds anybody any more
        board.update_member(idle)
    assert len(board.free_members(Q, NOW)) == len(phones)
