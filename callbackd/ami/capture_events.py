"""The AMI event handler for abandon capture: translate the event, call the service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.events import abandon_from_ami, agent_connect_from_ami, inbound_connect_from_ami
from callbackd.ami.link import AmiLink
from callbackd.services.capture import AbandonCapture

_CONNECTED = contract.INBOUND_CONNECTED_EVENT.lower()


class CaptureEventHandler:
    """Feeds QueueCallerAbandon and AgentConnect from any PBX link into the capture service,
    and QueueCallerJoin, whose caller id it judges ahead of a possible abandon. The shipped
    dialplan's CallbackdInboundConnected (a caller put straight through to their sticky
    operator or the VIP target) counts as an AgentConnect."""

    def __init__(
        self,
        capture: AbandonCapture,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._capture = capture
        self._clock = clock

    async def __call__(self, link: AmiLink, message: Message) -> None:
        name = str(message.get("event", "")).lower()
        if name == "queuecallerabandon":
            abandon = abandon_from_ami(link.name, message, received_at=self._clock())
            if abandon is not None:
                await self._capture.on_abandon(abandon)
        elif name == "queuecallerjoin":
            queue, number = message.get("queue"), message.get("calleridnum")
            if isinstance(queue, str):
                self._capture.on_caller_joined(
                    link.name, queue, number if isinstance(number, str) else None
                )
        elif name == "agentconnect":
            connected = agent_connect_from_ami(link.name, message, received_at=self._clock())
            if connected is not None:
                await self._capture.on_agent_connect(connected)
        elif name == "userevent" and str(message.get("userevent", "")).lower() == _CONNECTED:
            connected = inbound_connect_from_ami(link.name, message, received_at=self._clock())
            if connected is not None:
                await self._capture.on_agent_connect(connected)
