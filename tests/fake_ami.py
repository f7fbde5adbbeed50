"""A scriptable AMI peer on 127.0.0.1 for unit tests of the link's own logic.

The behaviour that matters against Asterisk itself is proven in the real-Asterisk tests;
this peer exists to produce faults on demand (split reads, silence, drops, garbage).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class FakeAmiServer:
    username: str = "callbackd"
    secret: str = "s3cret"
    answer_pings: bool = True
    answer_actions: bool = True
    received: list[dict[str, str]] = field(default_factory=list)
    logins: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_logins(self, count: int, timeout: float = 5.0) -> None:
        async def poll() -> None:
            while self.logins < count:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)

    def push(self, data: bytes) -> None:
        for writer in self._writers:
            writer.write(data)

    def drop_all(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.received if a.get("Action", "").lower() == name.lower()]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                headers: dict[str, str] = {}
                for line in raw.decode().strip().split("\r\n"):
                    key, _, value = line.partition(": ")
                    headers[key] = value
                self.received.append(headers)
                await self._answer(headers, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away: this connection is over
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    async def _answer(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        action = headers.get("Action", "").lower()
        action_id = headers.get("ActionID", "")
        if action == "login":
            ok = headers.get("Username") == self.username and headers.get("Secret") == self.secret
            if ok:
                self.logins += 1
                reply = "Response: Success\r\nMessage: Authentication accepted"
            else:
                reply = "Response: Error\r\nMessage: Authentication failed"
        elif action == "ping":
            if not self.answer_pings:
                return
            reply = "Response: Success\r\nPing: Pong"
        else:
            if not self.answer_actions:
                return
            reply = "Response: Success\r\nMessage: ok"
        writer.write(f"{reply}\r\nActionID: {action_id}\r\n\r\n".encode())
