"""The FastAGI server and the AGI session against a scripted peer on loopback (the wire
format Asterisk speaks), and the classic transport over real pipes."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from callbackd.agi.classic import ClassicChannel, run_route
from callbackd.agi.protocol import AgiError, AgiHangup, parse_reply
from callbackd.agi.server import FastAgiServer
from callbackd.agi.session import AgiCall
from callbackd.lab.asterisk import AmiAccount
from callbackd.lab.daemon import lab_settings, wait_until

ENV = (
    "agi_network: yes\nagi_channel: Local/1@x-0001;2\nagi_uniqueid: 1.1\n"
    "agi_callerid: 79161234567\n"
)


def env_block(route: str, *args: str) -> bytes:
    lines = (
        ENV
        + f"agi_arg_1: {route}\n"
        + "".join(f"agi_arg_{i}: {a}\n" for i, a in enumerate(args, 2))
    )
    return (lines + "\n").encode()


async def started(server: FastAgiServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.run(), name="test-agi-server")
    await asyncio.wait_for(server.listening.wait(), timeout=5)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


Route = Callable[[AgiCall], Awaitable[None]]


def server_with(routes: dict[str, Route], **options: Any) -> FastAgiServer:
    return FastAgiServer(routes, host="127.0.0.1", port=0, **options)


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (a reset when our unread data was still there)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=5) == b""
    except ConnectionResetError:
        return True


async def asterisk_side(port: int, route: str, replies: list[str], *args: str) -> list[str]:
    """Play Asterisk: send the environment, answer each command with the next reply; the
    commands received, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env_block(route, *args))
    await writer.drain()
    commands: list[str] = []
    try:
        for reply in replies:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            if not line:
                break
            commands.append(line.decode().rstrip("\n"))
            writer.write(reply.encode())
            await writer.drain()
        tail = await asyncio.wait_for(reader.read(), timeout=5)
        assert tail == b""
    finally:
        writer.close()
    return commands


# --------------------------------------------------------------------------- protocol


def test_replies_parse_and_errors_raise() -> None:
    assert parse_reply("200 result=1 (hello world)").data == "hello world"
    digits = parse_reply("200 result=0123 (timeout)")
    assert (digits.result, digits.data) == ("0123", "timeout")
    assert parse_reply("200 result= (timeout)").result == ""
    assert parse_reply("200 result=0 endpos=1234").extra == {"endpos": "1234"}
    with pytest.raises(AgiHangup):
        parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
    with pytest.raises(AgiError, match="510"):
        parse_reply("510 Invalid or unknown command")
    with pytest.raises(AgiError):
        parse_reply("garbage")


# --------------------------------------------------------------------------- server


async def test_a_route_runs_its_commands_and_the_session_ends() -> None:
    seen: dict[str, Any] = {}

    async def route(call: AgiCall) -> None:
        seen["queue"] = call.argument(2)
        await call.set_variable("CALLBACKD_PRIORITY", 5)
        seen["value"] = await call.get_variable("CALLERID_NUM")
        seen["keys"] = await call.get_data("beep", timeout_ms=1000, max_digits=4)

    server = server_with({"inbound": route})
    task = await started(server)
    try:
        commands = await asterisk_side(
            server.port,
            "inbound",
            ["200 result=1\n", "200 result=1 (79161234567)\n", "200 result=0123\n"],
            "lab-sales",
        )
    finally:
        await stop(task)
    assert commands == [
        'SET VARIABLE CALLBACKD_PRIORITY "5"',
        "GET VARIABLE CALLERID_NUM",
        "GET DATA beep 1000 4",
    ]
    assert seen == {"queue": "lab-sales", "value": "79161234567", "keys": "0123"}
    assert server.stats["completed"] == 1


async def test_hangup_notice_makes_the_next_command_raise() -> None:
    outcome: list[str] = []

    async def route(call: AgiCall) -> None:
        try:
            await call.stream_file("beep")
        except AgiHangup:
            outcome.append("hangup")
            raise

    server = server_with({"request": route})
    task = await started(server)
    try:
        await asterisk_side(server.port, "request", ["HANGUP\n200 result=-1 endpos=0\n"])
        await wait_until(lambda: server.stats["hangups"] == 1, timeout=5, what="hangup seen")
    finally:
        await stop(task)
    assert outcome == ["hangup"]


async def test_values_that_could_break_the_command_line_are_never_sent() -> None:
    call = AgiCall(_NoChannel())
    for value in ('a"b', "a\nSET VARIABLE X 1", "a\\b", "a\rb"):
        with pytest.raises(ValueError, match="quote"):
            await call.set_variable("CALLBACKD_CATEGORY", value)
    with pytest.raises(ValueError, match="variable name"):
        await call.set_variable("X Y", "1")
    with pytest.raises(ValueError, match="sound"):
        await call.stream_file("beep&rm")
    with pytest.raises(ValueError, match="MSet"):
        await call.set_variables({"CALLBACKD_CATEGORY": "a,CALLBACKD_PRIORITY=999"})


class _NoChannel:
    env: dict[str, str] = {}  # noqa: RUF012
    hung_up = False

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        raise AssertionError(f"nothing may be sent, got {command!r}")


@pytest.mark.parametrize(
    ("payload", "close"),
    [
        (b"", True),  # a port probe
        (b"agi_channel: x\nagi_arg_1: inbound\n", True),  # closes mid-environment
        (b"agi_channel: x\n", False),  # never finishes (header timeout)
        (b"agi_request: " + b"x" * 40_000 + b"\n", False),  # larger than the limit
        (b"GET / HTTP/1.0\nHost: x\n\n", True),  # not AGI at all
    ],
)
async def test_bad_clients_are_dropped_without_running_a_route(payload: bytes, close: bool) -> None:
    async def route(call: AgiCall) -> None:
        raise AssertionError("no route may run")

    server = server_with({"inbound": route}, header_timeout=0.5, max_header_bytes=16384)
    task = await started(server)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        if close:
            writer.write_eof()
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await wait_until(lambda: server.stats["bad_headers"] == 1, timeout=5, what="dropped")
        assert server.active_sessions == 0
    finally:
        await stop(task)


async def test_unknown_route_and_too_many_sessions_are_closed_at_once() -> None:
    release = asyncio.Event()

    async def slow(call: AgiCall) -> None:
        await release.wait()

    server = server_with({"inbound": slow}, max_sessions=1)
    task = await started(server)
    try:
        first_reader, first = await asyncio.open_connection("127.0.0.1", server.port)
        first.write(env_block("inbound"))
        await first.drain()
        await wait_until(lambda: server.active_sessions == 1, timeout=5, what="one session")
        reader, second = await asyncio.open_connection("127.0.0.1", server.port)
        second.write(env_block("inbound"))
        await second.drain()
        assert await closed(reader)
        assert server.stats["rejected_busy"] == 1
        release.set()
        assert await closed(first_reader)
        reader, third = await asyncio.open_connection("127.0.0.1", server.port)
        third.write(env_block("nosuchroute"))
        await third.drain()
        assert await closed(reader)
        for writer in (first, second, third):
            writer.close()
    finally:
        await stop(task)
    assert server.stats["completed"] == 1
    assert server.stats["failed"] == 1


async def test_stopping_the_server_ends_running_sessions() -> None:
    started_route = asyncio.Event()

    async def forever(call: AgiCall) -> None:
        started_route.set()
        await asyncio.Event().wait()

    server = server_with({"inbound": forever})
    task = await started(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(env_block("inbound"))
    await writer.drain()
    await asyncio.wait_for(started_route.wait(), timeout=5)
    await stop(task)
    assert server.active_sessions == 0
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    writer.close()


# --------------------------------------------------------------------------- classic


class _FakeAsterisk(threading.Thread):
    """Asterisk's side of a classic AGI process: environment on the script's stdin, one
    reply per command read from its stdout."""

    def __init__(self, env: bytes, answer: Callable[[str], str]) -> None:
        super().__init__(name="fake-asterisk", daemon=True)
        self.stdin_read, self._stdin_write = os.pipe()
        self._stdout_read, self.stdout_write = os.pipe()
        self._env = env
        self._answer = answer
        self.commands: list[str] = []

    def run(self) -> None:
        os.write(self._stdin_write, self._env)
        with os.fdopen(self._stdout_read, "rb") as commands:
            for raw in commands:
                command = raw.decode().strip()
                self.commands.append(command)
                os.write(self._stdin_write, self._answer(command).encode())
        os.close(self._stdin_write)


@contextmanager
def _classic_channel(fake: _FakeAsterisk) -> Iterator[ClassicChannel]:
    """The script's side; closing it is the script exiting (Asterisk sees EOF)."""
    from asterisk.agi import AGI

    with (
        os.fdopen(fake.stdin_read, "r", buffering=1) as stdin,
        os.fdopen(fake.stdout_write, "w", buffering=1) as stdout,
    ):
        agi = AGI(stdin=stdin, stdout=stdout, stderr=io.StringIO())
        yield ClassicChannel(agi, fake.stdin_read)


async def test_classic_agi_runs_the_same_inbound_route(database: str, db: Any) -> None:
    await db.execute(
        "INSERT INTO customers (number, category, priority, skip_queue) "
        "VALUES ('+79161234567', 'gold', 7, false)"
    )
    await db.execute(
        "INSERT INTO interactions (number, pbx, operator_interface, source) "
        "VALUES ('+79161234567', 'lab', 'Local/op2@lab-operators', 'inbound')"
    )

    def answer(command: str) -> str:
        if command.startswith("GET FULL VARIABLE") and "penalty" in command:
            return "200 result=1 (0)\n"
        if command.startswith("GET FULL VARIABLE") and "paused" in command:
            return "200 result=1 (0)\n"
        if command.startswith("GET FULL VARIABLE"):
            return "200 result=1 (NOT_INUSE)\n"
        if command.startswith("EXEC"):
            return "200 result=0\n"
        return "200 result=1\n"

    fake = _FakeAsterisk(env_block("inbound", "lab-sales"), answer)
    fake.start()
    settings = lab_settings(database, AmiAccount("127.0.0.1", 5038, "x", "y"))
    with _classic_channel(fake) as channel:
        assert await run_route(settings, channel) == 0
    fake.join(timeout=5)
    sets = [c for c in fake.commands if c.startswith("EXEC MSet")]
    assert sets == [
        'EXEC MSet "CALLBACKD_STICKY_MEMBER=Local/op2@lab-operators,CALLBACKD_STICKY_RING=15,'
        "CALLBACKD_CATEGORY=gold,CALLBACKD_PRIORITY=7,CALLBACKD_SKIP_QUEUE=0,"
        'CALLBACKD_PENDING=0"'
    ]
    assert any("QUEUE_MEMBER(lab-sales,paused,Local/op2@lab-operators)" in c for c in fake.commands)


async def test_classic_agi_gives_up_when_asterisk_does_not_answer(database: str) -> None:
    fake = _FakeAsterisk(env_block("inbound", "lab-sales"), lambda _command: "")
    fake.start()
    settings = lab_settings(
        database, AmiAccount("127.0.0.1", 5038, "x", "y"), agi={"command_timeout_seconds": 0.3}
    )
    with _classic_channel(fake) as channel:
        assert await run_route(settings, channel) == 1
    fake.join(timeout=5)
