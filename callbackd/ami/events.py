"""AMI events -> domain events. Translation only: no decisions here."""

from __future__ import annotations

from datetime import datetime

from panoramisk.message import Message

from callbackd.domain.capture import AgentConnected, QueueAbandon

CAPTURE_EVENTS = ("QueueCallerAbandon", "AgentConnect")

DIALER_EVENTS = (
    "QueueMemberStatus",
    "QueueMemberPause",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "AgentCalled",
    "AgentRingNoAnswer",
    "AgentDump",
    "AgentComplete",
    "OriginateResponse",
    "UserEvent",
)

SUBSCRIBED_EVENTS = frozenset({*CAPTURE_EVENTS, *DIALER_EVENTS})
"""Every AMI event callbackd handles; the shipped manager.conf sample filters to exactly these
(dialplan/manager.d/callbackd.conf, kept in step by a test)."""


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _text(message: Message, key: str) -> str | None:
    value = message.get(key)
    return value if isinstance(value, str) and value != "" else None


def abandon_from_ami(pbx: str, message: Message, *, received_at: datetime) -> QueueAbandon | None:
    queue, uniqueid = _text(message, "queue"), _text(message, "uniqueid")
    if queue is None or uniqueid is None:
        return None
    return QueueAbandon(
        pbx=pbx,
        queue=queue,
        uniqueid=uniqueid,
        caller_number=_text(message, "calleridnum"),
        caller_name=_text(message, "calleridname"),
        abandoned_at=received_at,
        hold_seconds=_int(message.get("holdtime")),
        position=_int(message.get("position")),
        original_position=_int(message.get("originalposition")),
        linkedid=_text(message, "linkedid"),
    )


def agent_connect_from_ami(
    pbx: str, message: Message, *, received_at: datetime
) -> AgentConnected | None:
    queue, uniqueid = _text(message, "queue"), _text(message, "uniqueid")
    interface = _text(message, "interface") or _text(message, "membername")
    if queue is None or uniqueid is None or interface is None:
        return None
    return AgentConnected(
        pbx=pbx,
        queue=queue,
        uniqueid=uniqueid,
        caller_number=_text(message, "calleridnum"),
        member_interface=interface,
        connected_at=received_at,
    )


def inbound_connect_from_ami(
    pbx: str, message: Message, *, received_at: datetime
) -> AgentConnected | None:
    """UserEvent CallbackdInboundConnected (dialplan_contract.INBOUND_CONNECTED_EVENT): the
    shipped callbackd-inbound's sticky operator or VIP target answered the caller. The
    event comes from the operator's channel; the call is named by its Linkedid (the
    caller's call), so the same connection seen twice is one interaction."""
    number, interface = _text(message, "number"), _text(message, "interface")
    call = _text(message, "linkedid") or _text(message, "uniqueid")
    if number is None or interface is None or call is None:
        return None
    return AgentConnected(
        pbx=pbx,
        queue=_text(message, "queue") or "",
        uniqueid=call,
        caller_number=number,
        member_interface=interface,
        connected_at=received_at,
    )
