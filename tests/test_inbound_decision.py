"""Inbound routing decisions (pure): sticky operator, priority, VIP, safe values."""

from __future__ import annotations

import pytest

from callbackd.domain.inbound import (
    VIP_PRIORITY,
    CallerFacts,
    InboundDecision,
    decide_inbound,
    safe_interface,
    sticky_available,
)
from callbackd.domain.operators import DeviceState, MemberState

OP = "PJSIP/101"


def member(**overrides: object) -> MemberState:
    values: dict[str, object] = {
        "queue": "sales",
        "interface": OP,
        "state_interface": OP,
        "name": "Anna",
        "status": int(DeviceState.NOT_INUSE),
    }
    values.update(overrides)
    return MemberState(**values)  # type: ignore[arg-type]


def test_unknown_caller_gets_the_defaults() -> None:
    assert decide_inbound(CallerFacts(), sticky_ok=False) == InboundDecision()


def test_returning_caller_gets_the_operator_only_when_available() -> None:
    facts = CallerFacts(last_operator=OP, category="gold", priority=5, pending=True)
    assert decide_inbound(facts, sticky_ok=True) == InboundDecision(
        sticky_member=OP, category="gold", priority=5, pending=True
    )
    assert decide_inbound(facts, sticky_ok=False).sticky_member == ""


def test_vip_goes_to_the_top_priority() -> None:
    decision = decide_inbound(CallerFacts(skip_queue=True, priority=3), sticky_ok=False)
    assert (decision.skip_queue, decision.priority) == (True, VIP_PRIORITY)


@pytest.mark.parametrize(("given", "expected"), [(-4, 0), (0, 0), (1000, 999), (42, 42)])
def test_priority_is_clamped(given: int, expected: int) -> None:
    assert decide_inbound(CallerFacts(priority=given), sticky_ok=False).priority == expected


@pytest.mark.parametrize(
    "interface",
    ["PJSIP/1&PJSIP/2", "PJSIP/1,60", "Local/x@y/n ", "nochannel", "", "PJSIP/${EVIL}"],
)
def test_interfaces_that_would_change_a_dial_string_are_dropped(interface: str) -> None:
    assert safe_interface(interface) == ""
    facts = CallerFacts(last_operator=interface, category="a,b")
    decision = decide_inbound(facts, sticky_ok=True)
    assert (decision.sticky_member, decision.category) == ("", "")


@pytest.mark.parametrize(
    ("overrides", "available"),
    [
        ({}, True),
        ({"status": int(DeviceState.UNKNOWN)}, True),
        ({"paused": True}, False),
        ({"in_call": True}, False),
        ({"status": int(DeviceState.INUSE)}, False),
        ({"status": int(DeviceState.UNAVAILABLE)}, False),
        ({"status": int(DeviceState.INVALID)}, False),
    ],
)
def test_sticky_operator_must_be_logged_in_idle_and_not_paused(
    overrides: dict[str, object], available: bool
) -> None:
    assert sticky_available(member(**overrides)) is available
    assert sticky_available(None) is False  # not a member: logged out
