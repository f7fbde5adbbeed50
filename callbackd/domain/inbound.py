"""What the shipped dialplan does with an inbound caller: pure decisions for ``inbound``.

The service gathers facts (the customer row, the operator who last talked with the number,
whether a callback is open, whether that operator can take a call now); this module turns
them into the channel variables. Every value is checked here so nothing odd reaches a dial
string: the dialplan checks them again anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callbackd.domain.operators import DeviceState, MemberState, is_queue_member_interface

__all__ = [
    "CallerFacts",
    "InboundDecision",
    "decide_inbound",
    "safe_category",
    "safe_interface",
    "sticky_available",
]

MAX_PRIORITY = 999
VIP_PRIORITY = MAX_PRIORITY
"""Queue priority of a caller marked skip_queue: ahead of everybody."""

_CATEGORY = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NOT_TAKING_CALLS = frozenset(
    {
        DeviceState.INVALID,
        DeviceState.UNAVAILABLE,
        DeviceState.INUSE,
        DeviceState.BUSY,
        DeviceState.RINGINUSE,
        DeviceState.ONHOLD,
    }
)


@dataclass(frozen=True)
class CallerFacts:
    category: str | None = None
    priority: int = 0
    skip_queue: bool = False
    last_operator: str | None = None
    """Queue-member interface of the last operator within the sticky horizon, if any."""
    pending: bool = False
    category_priority: int | None = None
    category_skip_queue: bool | None = None
    category_sticky_ring_seconds: int | None = None
    """The customer's category's rule ([categories.<name>]); None: the key is unset."""


@dataclass(frozen=True)
class InboundDecision:
    sticky_member: str = ""
    category: str = ""
    priority: int = 0
    skip_queue: bool = False
    pending: bool = False
    sticky_ring_seconds: int | None = None
    """The category's ring time for the sticky operator / VIP target; None: the default."""


def safe_interface(value: str | None) -> str:
    """A queue-member interface fit for Dial() (the one rule of
    :func:`~callbackd.domain.operators.is_queue_member_interface`), or ""."""
    return value if value and is_queue_member_interface(value) else ""


def safe_category(value: str | None) -> str:
    return value if value and _CATEGORY.fullmatch(value) else ""


def sticky_available(member: MemberState | None) -> bool:
    """The operator is logged in to the queue (a member), not paused, and not on a call."""
    if member is None or member.paused or member.in_call:
        return False
    return member.status not in _NOT_TAKING_CALLS


def decide_inbound(facts: CallerFacts, *, sticky_ok: bool) -> InboundDecision:
    """The variables for one caller; *sticky_ok* says the last operator can take the call.

    The customer's category's rule fills in what the customer does not set: their own
    priority wins unless it is 0, and skip_queue holds if the customer or the category says
    so (a customer's own values are explicit only when they differ from the defaults).
    """
    own = facts.priority if facts.priority != 0 else (facts.category_priority or 0)
    skip_queue = facts.skip_queue or bool(facts.category_skip_queue)
    priority = VIP_PRIORITY if skip_queue else min(max(own, 0), MAX_PRIORITY)
    sticky = safe_interface(facts.last_operator) if sticky_ok else ""
    return InboundDecision(
        sticky_member=sticky,
        category=safe_category(facts.category),
        priority=priority,
        skip_queue=skip_queue,
        pending=facts.pending,
        sticky_ring_seconds=facts.category_sticky_ring_seconds,
    )
