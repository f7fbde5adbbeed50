"""AMI queue events -> operator board updates. Translation only: the board decides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from panoramisk.message import Message

from callbackd.ami.link import AmiLink, EventHandler
from callbackd.domain.operators import LiveCall, LiveCallStage, MemberState, OperatorBoard

MEMBER_EVENTS = ("QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded")
LIVE_CALL_STAGES = {
    "agentcalled": LiveCallStage.RUNG,
    "agentconnect": LiveCallStage.CONNECTED,
    "agentringnoanswer": LiveCallStage.ENDED,
    "agentdump": LiveCallStage.ENDED,
    "agentcomplete": LiveCallStage.ENDED,
}
"""app_queue's events about one member and one live caller, by lower-case name."""
LIVE_CALL_EVENTS = ("AgentCalled", "AgentRingNoAnswer", "AgentDump", "AgentComplete")
"""The ones this handler alone routes; ``AgentConnect`` is shared with capture
(see :func:`in_order`)."""
QUEUE_EVENTS = (
    *MEMBER_EVENTS,
    "QueueMemberRemoved",
    "QueueCallerJoin",
    "QueueCallerLeave",
    *LIVE_CALL_EVENTS,
)


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def member_from_ami(message: Message, *, wrapup_default: int = 0) -> MemberState | None:
    """QueueMember (QueueStatus list) and QueueMember* events share these headers."""
    queue = message.get("queue")
    interface = message.get("interface") or message.get("location")
    if not isinstance(queue, str) or not isinstance(interface, str) or not interface:
        return None
    last_call = _int(message.get("lastcall"))
    state_interface = message.get("stateinterface")
    name = message.get("membername") or message.get("name")
    return MemberState(
        queue=queue,
        interface=interface,
        state_interface=state_interface if isinstance(state_interface, str) else interface,
        name=name if isinstance(name, str) else interface,
        status=_int(message.get("status")),
        paused=_int(message.get("paused")) == 1,
        in_call=_int(message.get("incall")) == 1,
        last_call_end=datetime.fromtimestamp(last_call, UTC) if last_call > 0 else None,
        wrapup_seconds=_int(message.get("wrapuptime"), wrapup_default),
    )


def live_call_from_ami(message: Message) -> LiveCall | None:
    """``AgentCalled``/``AgentConnect``/``AgentRingNoAnswer``/``AgentDump``/``AgentComplete``:
    the member by its ``Interface``, the live caller by their ``Uniqueid``."""
    stage = LIVE_CALL_STAGES.get(str(message.get("event", "")).lower())
    queue, interface = message.get("queue"), message.get("interface")
    caller = _caller_id(message)
    if stage is None or caller is None:
        return None
    if not isinstance(queue, str) or not queue or not isinstance(interface, str) or not interface:
        return None
    return LiveCall(queue=queue, interface=interface, caller=caller, stage=stage)


def _caller_id(message: Message) -> str | None:
    uniqueid = message.get("uniqueid")
    return uniqueid if isinstance(uniqueid, str) and uniqueid else None


def _event_time(message: Message) -> datetime:
    """When Asterisk sent the event (``Timestamp``, timestampevents=yes), else now."""
    try:
        return datetime.fromtimestamp(float(str(message.get("timestamp"))), UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


class QueueEventHandler:
    """Keeps one PBX's OperatorBoard current from live events; wakes the dialer on change."""

    def __init__(self, boards: dict[str, OperatorBoard], wake: Callable[[], None]) -> None:
        self._boards = boards
        self._wake = wake

    async def __call__(self, link: AmiLink, message: Message) -> None:
        board = self._boards[link.name]
        name = str(message.get("event", "")).lower()
        queue = message.get("queue")
        if not isinstance(queue, str):
            return
        if name in ("queuememberstatus", "queuememberpause", "queuememberadded"):
            member = member_from_ami(message)
            if member is not None:
                board.update_member(member)
        elif name == "queuememberremoved":
            interface = message.get("interface")
            if isinstance(interface, str):
                board.remove_member(queue, interface)
        elif name == "queuecallerjoin":
            board.caller_joined(queue, _caller_id(message), _event_time(message))
        elif name in ("queuecallerleave",):
            board.caller_left(queue, _caller_id(message), now=datetime.now(UTC))
        elif name == "queuecallerabandon":
            caller = _caller_id(message)
            if caller is not None:
                board.caller_abandoned(queue, caller, now=datetime.now(UTC))
            # No wake: the abandon's callback request does not exist yet; capture wakes
            # the dialer once it is stored.
            return
        elif name in LIVE_CALL_STAGES:
            call = live_call_from_ami(message)
            if call is None:
                return
            board.live_call(call, datetime.now(UTC))
        self._wake()

    async def resync(self, link: AmiLink) -> None:
        """After every (re)connect: the whole picture from QueueStatus."""
        messages: list[Any] = await link.action({"Action": "QueueStatus"}, as_list=True)
        board = self._boards[link.name]
        members: dict[str, list[MemberState]] = {}
        waiting: dict[str, int] = {}
        callers: dict[str, dict[str, datetime]] = {}
        now = datetime.now(UTC)
        for message in messages:
            event = str(message.get("event", "")).lower()
            if event == "queueparams":
                queue = str(message.get("queue"))
                waiting[queue] = _int(message.get("calls"))
                members.setdefault(queue, [])
            elif event == "queuemember":
                member = member_from_ami(message)
                if member is not None:
                    members.setdefault(member.queue, []).append(member)
            elif event == "queueentry":
                caller = _caller_id(message)
                if caller is not None:
                    joined = now - timedelta(seconds=_int(message.get("wait")))
                    callers.setdefault(str(message.get("queue")), {})[caller] = joined
        for queue, queue_members in members.items():
            board.replace_queue(
                queue, queue_members, waiting.get(queue, 0), callers.get(queue, {}), now=now
            )
        self._wake()


def in_order(*handlers: EventHandler) -> EventHandler:
    """One event, several handlers, one after the other. For ``QueueCallerAbandon`` the
    operator board counts the caller out before capture stores the request: the dialer,
    woken by the stored request, then already sees the free operator's slot (it does not
    wait for the caller's QueueCallerLeave). For ``QueueCallerJoin`` the board counts the
    caller in before capture judges their number. For ``AgentConnect`` the board holds the
    member for the live caller before capture's database work lets the dialer run."""

    async def handle(link: AmiLink, message: Message) -> None:
        for handler in handlers:
            await handler(link, message)

    return handle
