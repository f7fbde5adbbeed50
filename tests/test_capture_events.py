"""The capture adapter: AMI events -> the capture service's typed values (fake service)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from panoramisk.message import Message

from callbackd.ami.capture_events import CaptureEventHandler
from callbackd.ami.events import inbound_connect_from_ami
from callbackd.domain.capture import AgentConnected

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class RecordingCapture:
    def __init__(self) -> None:
        self.connected: list[AgentConnected] = []

    async def on_agent_connect(self, event: AgentConnected) -> int:
        self.connected.append(event)
        return 1


def _connected(**headers: str) -> Message:
    values = {
        "Event": "UserEvent",
        "UserEvent": "CallbackdInboundConnected",
        "Channel": "Local/op2@lab-operators-00000001;1",
        "Uniqueid": "1765108800.12",
        "Linkedid": "1765108800.10",
        "Queue": "sales",
        "Number": "+79161234567",
        "Interface": "Local/101@from-queue/n",
    }
    values.update(headers)
    return Message({k: v for k, v in values.items() if v is not None})


async def test_a_direct_connection_reaches_capture_as_an_agent_connect() -> None:
    capture = RecordingCapture()
    handler = CaptureEventHandler(cast(Any, capture), clock=lambda: NOW)
    await handler(cast(Any, SimpleNamespace(name="lab")), _connected())
    assert capture.connected == [
        AgentConnected(
            pbx="lab",
            queue="sales",
            uniqueid="1765108800.10",  # the caller's call (Linkedid), not the operator's leg
            caller_number="+79161234567",
            member_interface="Local/101@from-queue/n",
            connected_at=NOW,
        )
    ]


def test_a_connection_without_a_number_or_interface_is_not_one() -> None:
    assert inbound_connect_from_ami("lab", _connected(Number=""), received_at=NOW) is None
    assert inbound_connect_from_ami("lab", _connected(Interface=""), received_at=NOW) is None
    unknown_queue = inbound_connect_from_ami("lab", _connected(Queue=""), received_at=NOW)
    assert unknown_queue is not None
    assert unknown_queue.queue == ""


async def test_other_user_events_are_not_connections() -> None:
    capture = RecordingCapture()
    handler = CaptureEventHandler(cast(Any, capture), clock=lambda: NOW)
    await handler(cast(Any, SimpleNamespace(name="lab")), _connected(UserEvent="CallbackdResult"))
    assert capture.connected == []
