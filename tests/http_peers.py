"""Real HTTP servers on 127.0.0.1 for the outbox tests: a CRM webhook receiver and an SMS
gateway, both recording what they were sent."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str]
    answered: int


@dataclass
class HttpPeer:
    """Answers every request with ``status`` (after ``fail_next`` 503s); starts on ``port``
    only when told to, so a test can have it down first."""

    port: int = field(default_factory=free_port)
    status: int = 200
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        status = self.status
        if self.fail_next > 0:
            self.fail_next -= 1
            status = 503
        self.received.append(
            Received(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=await request.read(),
                query=dict(request.query),
                answered=status,
            )
        )
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
