"""One rule for "a queue-member interface callbackd may ring", used everywhere an operator
is taken, and FreePBX's Local members (``Local/101@from-queue/n`` with a StateInterface)."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from panoramisk.message import Message
from pydantic import TypeAdapter, ValidationError

from callbackd import dialplan_contract
from callbackd.ami.queue_events import member_from_ami
from callbackd.domain.inbound import CallerFacts, decide_inbound, safe_interface
from callbackd.domain.operators import (
    DeviceState,
    OperatorBoard,
    is_queue_member_interface,
)
from callbackd.http.schemas import Operator
from callbackd.services.call_now import InvalidOperator, check_operator

FREEPBX = "Local/101@from-queue/n"
ACCEPTED = [
    "PJSIP/101",
    "SIP/trunk/101",
    "IAX2/office-2",
    "Local/op1@lab-operators",
    FREEPBX,
    "Local/101@from-queue/nj",
    "PJSIP/" + "a" * (dialplan_contract.MAX_INTERFACE_LENGTH - len("PJSIP/")),
]
REFUSED = [
    "",
    "PJSIP",
    "/101",
    "PJSIP/",
    "Local/101@from-queue/",
    "Local/101@from-queue//n",
    "PJSIP/1&PJSIP/2",
    "PJSIP/1,60",
    "Local/x@y/n ",
    "PJSIP/${EVIL}",
    "PJSIP/1\n",
    "1PJSIP/101",
    "PJSIP/" + "a" * (dialplan_contract.MAX_INTERFACE_LENGTH - len("PJSIP/") + 1),
]
_OPERATOR = TypeAdapter(Operator)


@pytest.mark.parametrize("interface", ACCEPTED)
def test_accepted_everywhere_an_operator_is_taken(interface: str) -> None:
    assert is_queue_member_interface(interface)
    assert safe_interface(interface) == interface
    assert check_operator(interface) == interface
    assert _OPERATOR.validate_python(interface) == interface
    decision = decide_inbound(CallerFacts(last_operator=interface), sticky_ok=True)
    assert decision.sticky_member == interface


@pytest.mark.parametrize("interface", REFUSED)
def test_refused_everywhere_an_operator_is_taken(interface: str) -> None:
    assert not is_queue_member_interface(interface)
    assert safe_interface(interface) == ""
    with pytest.raises(InvalidOperator):
        check_operator(interface)
    with pytest.raises(ValidationError):
        _OPERATOR.validate_python(interface)


def test_the_rule_uses_only_the_characters_the_dialplan_admits() -> None:
    admitted = {ch for ch in string.printable if is_queue_member_interface(f"PJSIP/a{ch}b")} | {"/"}
    assert admitted == set(dialplan_contract.INTERFACE_CHARACTERS)


def _member_event(queue: str, interface: str, state_interface: str, status: int) -> Any:
    return Message(
        {
            "Event": "QueueMemberStatus",
            "Queue": queue,
            "Interface": interface,
            "StateInterface": state_interface,
            "MemberName": "Operator 101",
            "Status": str(status),
            "Paused": "0",
            "InCall": "0",
        }
    )


def test_a_local_member_is_followed_through_its_state_interface() -> None:
    """app_queue reports a Local member with its StateInterface's device state; the board
    keeps the member by interface and its phone by the state interface, so a callback
    ringing the phone from one queue holds the same phone in the other."""
    now = datetime.now(UTC)
    board = OperatorBoard(settle_seconds=0)
    for queue, interface in (("sales", FREEPBX), ("support", "PJSIP/101")):
        member = member_from_ami(_member_event(queue, interface, "PJSIP/101", 1))
        assert member is not None
        board.update_member(member)
    [sales] = board.members("sales")
    assert (sales.interface, sales.device) == (FREEPBX, "PJSIP/101")
    assert [m.interface for m in board.free_members("sales", now)] == [FREEPBX]
    board.reserve("support", "PJSIP/101", until=now + timedelta(seconds=30))
    assert board.free_members("sales", now) == []
    busy = member_from_ami(_member_event("sales", FREEPBX, "PJSIP/101", DeviceState.INUSE))
    assert busy is not None
    board.update_member(busy)
    assert board.free_members("sales", now + timedelta(minutes=1)) == []
    hint = member_from_ami(_member_event("sales", FREEPBX, "hint:101@ext-local", 1))
    assert hint is not None
    assert hint.device == "hint:101@ext-local"
