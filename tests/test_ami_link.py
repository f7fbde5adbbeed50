"""The AMI link's own logic against a scriptable peer: framing, faults, no re-sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from panoramisk.message import Message

from callbackd.ami.errors import (
    AmiConnectionLost,
    AmiNotConnected,
    AmiTimeout,
    AmiUnsafeValue,
)
from callbackd.ami.link import AmiLink, AmiLinkConfig, LinkState
from callbackd.ami.protocol import encode_action, parse_message
from callbackd.lab.daemon import wait_until
from tests.fake_ami import FakeAmiServer


def _config(port: int, **overrides: float | str | None) -> AmiLinkConfig:
    values: dict[str, object] = {
        "name": "pbx",
        "host": "127.0.0.1",
        "port": port,
        "username": "callbackd",
        "secret": "s3cret",
        "ping_interval": 0.2,
        "ping_timeout": 0.2,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "action_timeout": 1.0,
    }
    values.update(overrides)
    return AmiLinkConfig(**values)  # type: ignore[arg-type]


class Collector:
    def __init__(self) -> None:
        self.events: list[Message] = []
        self.arrived = asyncio.Event()
        self.fail_on: set[str] = set()

    async def __call__(self, link: AmiLink, event: Message) -> None:
        self.events.append(event)
        self.arrived.set()
        if event.get("marker") in self.fail_on:
            raise RuntimeError("handler bug")

    async def wait_for(self, count: int, timeout: float = 3.0) -> None:
        async def poll() -> None:
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def running(link: AmiLink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run(), name="test-link")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    peer = FakeAmiServer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


def _event(name: str, **headers: str) -> bytes:
    lines = [f"Event: {name}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _port(server: FakeAmiServer) -> int:
    assert server._server is not None
    port: int = server._server.sockets[0].getsockname()[1]
    return port


async def test_utf8_split_across_reads_arrives_intact(server: FakeAmiServer) -> None:
    collector = Collector()
    link = AmiLink(_config(await _port(server)), handler=collector)
    async with running(link):
        await link.wait_up(3)
        data = _event("QueueCallerAbandon", CallerIDName="Иван Петров")
        cut = data.index("Иван".encode()) + 1  # inside the first Cyrillic letter
        server.push(data[:cut])
        await asyncio.sleep(0.05)
        server.push(data[cut:])
        await collector.wait_for(1)
    assert collector.events[0]["CallerIDName"] == "Иван Петров"


async def test_a_raising_handler_does_not_lose_the_next_events(server: FakeAmiServer) -> None:
    collector = Collector()
    collector.fail_on = {"1"}
    link = AmiLink(_config(await _port(server)), handler=collector)
    async with running(link):
        await link.wait_up(3)
        server.push(b"".join(_event("UserEvent", Marker=str(i)) for i in range(1, 4)))
        await collector.wait_for(3)
        assert link.is_up
    assert [e["Marker"] for e in collector.events] == ["1", "2", "3"]
    assert link.stats.handler_errors == 1


async def test_only_wanted_events_are_queued(server: FakeAmiServer) -> None:
    collector = Collector()
    link = AmiLink(_config(await _port(server)), handler=collector, events={"QueueCallerAbandon"})
    async with running(link):
        await link.wait_up(3)
        server.push(_event("Newexten") + _event("QueueCallerAbandon", Queue="q"))
        await collector.wait_for(1)
    assert [e.event for e in collector.events] == ["QueueCallerAbandon"]
    assert link.stats.events_ignored == 1


async def test_forged_duplicate_headers_are_skipped_not_fatal(server: FakeAmiServer) -> None:
    collector = Collector()
    link = AmiLink(_config(await _port(server)), handler=collector)
    async with running(link):
        await link.wait_up(3)
        server.push(b"Event: Newexten\r\nEvent: Hangup\r\nChannel: x\r\n\r\n")
        server.push(b"garbage without a colon\r\n\r\n")
        server.push(_event("UserEvent", Marker="after"))
        await collector.wait_for(1)
        assert link.is_up
    assert [e["Marker"] for e in collector.events] == ["after"]
    assert link.stats.malformed_messages == 2


async def test_half_open_link_is_detected_and_reconnected(server: FakeAmiServer) -> None:
    link = AmiLink(_config(await _port(server)), handler=Collector())
    async with running(link):
        await link.wait_up(3)
        server.answer_pings = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        while link.health.state is LinkState.UP:
            await asyncio.sleep(0.01)
        detected_after = loop.time() - started
        server.answer_pings = True
        await server.wait_logins(2)
        await link.wait_up(3)
    # ping interval 0.2 s + ping timeout 0.2 s, with scheduling slack
    assert detected_after < 1.0
    assert link.stats.connects >= 2


async def test_pending_action_fails_on_drop_and_is_never_resent(server: FakeAmiServer) -> None:
    link = AmiLink(_config(await _port(server)), handler=Collector())
    async with running(link):
        await link.wait_up(3)
        server.answer_actions = False
        pending = asyncio.create_task(
            link.action({"Action": "Originate", "Channel": "Local/1@x"}, timeout=5)
        )
        while not server.actions("Originate"):
            await asyncio.sleep(0.01)
        server.drop_all()
        with pytest.raises(AmiConnectionLost):
            await pending
        server.answer_actions = True
        await server.wait_logins(2)
        await link.wait_up(3)
        await asyncio.sleep(0.3)
    assert len(server.actions("Originate")) == 1


@pytest.mark.parametrize(
    ("prefix", "expected"), [(None, "callbackd-pbx-"), ("bench-x", "bench-x-")]
)
async def test_action_ids_carry_the_configured_prefix(
    server: FakeAmiServer, prefix: str | None, expected: str
) -> None:
    """The shipped eventfilter passes OriginateResponses whose ActionID starts with callbackd-:
    a program that is not callbackd must not use that prefix."""
    link = AmiLink(_config(await _port(server), action_id_prefix=prefix), handler=Collector())
    async with running(link):
        await link.wait_up(3)
        await link.action({"Action": "Ping"}, timeout=2)
    [ping, *_] = server.actions("Ping")
    assert ping["ActionID"].startswith(expected)


async def test_action_times_out_and_is_forgotten(server: FakeAmiServer) -> None:
    link = AmiLink(_config(await _port(server)), handler=Collector())
    async with running(link):
        await link.wait_up(3)
        server.answer_actions = False
        with pytest.raises(AmiTimeout):
            await link.action({"Action": "QueueStatus"}, timeout=0.1)
        assert link.is_up


async def test_actions_are_refused_while_down() -> None:
    link = AmiLink(_config(1), handler=Collector())
    with pytest.raises(AmiNotConnected):
        await link.action({"Action": "Ping"})


async def test_wrong_secret_reports_login_refused(server: FakeAmiServer) -> None:
    link = AmiLink(_config(await _port(server), secret="wrong"), handler=Collector())
    async with running(link):
        with pytest.raises(AmiNotConnected):
            await link.wait_up(0.5)
        # It keeps retrying (with backoff); between tries the health says why it is down.
        await wait_until(
            lambda: (
                link.health.state is LinkState.DOWN
                and "login refused" in (link.health.detail or "")
            ),
            timeout=3,
            what="health reports the refused login",
        )
    assert server.logins == 0


@pytest.mark.parametrize("value", ["79161234567\r\nChannel: Local/1@evil", "a\nb", "nul\x00"])
def test_values_that_could_forge_headers_are_refused(value: str) -> None:
    with pytest.raises(AmiUnsafeValue):
        encode_action({"Action": "Originate", "CallerID": value}, "id-1")


def test_action_id_cannot_be_overridden() -> None:
    with pytest.raises(AmiUnsafeValue):
        encode_action({"Action": "Ping", "ActionID": "mine"}, "id-1")


def test_encoding_keeps_order_and_repeats_list_values() -> None:
    raw = encode_action({"Action": "Originate", "Variable": ["A=1", "B=2"]}, "id-7")
    assert raw == b"ActionID: id-7\r\nAction: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"


def test_parse_message_keeps_utf8_and_refuses_duplicate_event() -> None:
    message = parse_message("Event: X\r\nCallerIDName: Иван".encode())
    assert message is not None
    assert message["calleridname"] == "Иван"
    assert parse_message(b"Event: A\r\nEvent: B") is None
