"""A TCP proxy on 127.0.0.1 that can go silent: a half-open link on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class _Pair:
    tasks: list[asyncio.Task[None]]
    writers: list[asyncio.StreamWriter]
    frozen: asyncio.Event = field(default_factory=asyncio.Event)


class SilentableProxy:
    """Forwards to (host, port); ``freeze()`` stops forwarding on the current connections
    while keeping their sockets open, exactly like a peer that vanished without a FIN."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pairs: list[_Pair] = []
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        for pair in self._pairs:
            pair.frozen.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self._pairs:
            for writer in pair.writers:
                writer.transport.abort()
            for task in pair.tasks:
                task.cancel()
            await asyncio.gather(*pair.tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        pair = _Pair(tasks=[], writers=[writer, up_writer])
        pair.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, pair)),
            asyncio.create_task(self._pump(up_reader, writer, pair)),
        ]
        self._pairs.append(pair)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            if pair.frozen.is_set():
                continue  # swallowed: the far side never hears of it
            writer.write(data)
            await writer.drain()
