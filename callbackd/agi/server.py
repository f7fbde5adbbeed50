"""callbackd's own FastAGI server: hardened against whatever connects to the port.

* The ``agi_*`` block is read with ``readuntil`` under a deadline and a size limit, so a
  port probe that closes early, a client that never finishes, or one that sends a megabyte
  of headers costs one bounded read and is dropped; no other call notices.
* At most ``max_sessions`` calls at once; one more is closed at once (Asterisk then goes
  on in the dialplan with the defaults the shipped context set before the AGI call).
* Every command has a timeout; a whole session has one too.
* Each session is a task the server owns; stopping the server cancels and awaits them.

The route is the first AGI argument (``AGI(agi://127.0.0.1:4573,inbound,<queue>)``), the
same as for classic AGI, so one dialplan line serves both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import structlog

from callbackd.agi.protocol import (
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiTimeout,
    is_multiline_start,
    parse_environment,
)
from callbackd.agi.session import AgiCall
from callbackd.logs import mask_number

__all__ = ["FastAgiChannel", "FastAgiServer", "Route"]

Route = Callable[[AgiCall], Awaitable[None]]
"""A route handler: runs one call to its end (or raises)."""

_HEADER_END: Final = b"\n\n"
_MAX_REPLY_LINES: Final = 64


class FastAgiChannel:
    """:class:`~callbackd.agi.session.AgiChannel` over one FastAGI TCP connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: Mapping[str, str]
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._env = dict(env)
        self._hung_up = False

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        if "\n" in command or "\r" in command:
            raise ValueError("an AGI command is one line")
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(command.encode("utf-8") + b"\n")
                await self._writer.drain()
                line = await self._line()
                while line == "HANGUP":
                    self._hung_up = True
                    line = await self._line()
                usage: list[str] = []
                if is_multiline_start(line):
                    while len(usage) < _MAX_REPLY_LINES:
                        more = await self._line()
                        usage.append(more)
                        if more.startswith("520 "):
                            break
                return line, usage
        except TimeoutError:
            raise AgiTimeout(f"no reply to {command.split(' ', 1)[0]} within {timeout} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._hung_up = True
            raise AgiHangup(f"AGI connection closed: {exc!r}") from None
        except asyncio.LimitOverrunError:
            raise AgiProtocolError("AGI reply line larger than the read limit") from None

    async def _line(self) -> str:
        raw = await self._reader.readuntil(b"\n")
        return raw.decode("utf-8", "replace").rstrip("\r\n")


class FastAgiServer:
    """Serves routes to Asterisk's ``AGI(agi://...)`` calls; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        max_header_bytes: int = 16384,
        max_sessions: int = 200,
        command_timeout: float = 5.0,
        session_timeout: float = 300.0,
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.max_sessions = max_sessions
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self.listening = asyncio.Event()
        self.stats: dict[str, int] = {
            "sessions": 0,
            "completed": 0,
            "failed": 0,
            "hangups": 0,
            "rejected_busy": 0,
            "bad_headers": 0,
        }
        self._sessions: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("callbackd.agi")

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def run(self) -> None:
        """Listen until cancelled; then close the port and end every session."""
        server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=self.max_header_bytes
        )
        sockets = server.sockets or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._log.info("FastAGI listening", host=self.host, port=self.port)
        self.listening.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.listening.clear()
            server.close()
            sessions = list(self._sessions)
            for task in sessions:
                task.cancel()
            if sessions:
                await asyncio.wait(sessions, timeout=5.0)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs callbacks in a task
            writer.close()
            return
        if len(self._sessions) >= self.max_sessions:
            self.stats["rejected_busy"] += 1
            self._log.warning("FastAGI session refused: too many at once", limit=self.max_sessions)
            writer.close()
            return
        self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log = self._log.bind(peer=f"{peer[0]}:{peer[1]}" if peer else "?")
        env = await self._read_environment(reader, log)
        if env is None:
            return
        self.stats["sessions"] += 1
        route_name = env.get("agi_arg_1", "")
        log = log.bind(
            route=route_name,
            uniqueid=env.get("agi_uniqueid", ""),
            channel=env.get("agi_channel", ""),
            caller_number=mask_number(env.get("agi_callerid", "")),
        )
        route = self.routes.get(route_name)
        if route is None:
            self.stats["failed"] += 1
            log.warning("FastAGI call for an unknown route", known=sorted(self.routes))
            return
        call = AgiCall(FastAgiChannel(reader, writer, env), command_timeout=self.command_timeout)
        structlog.contextvars.bind_contextvars(route=route_name, uniqueid=call.uniqueid)
        try:
            async with asyncio.timeout(self.session_timeout):
                await route(call)
        except AgiHangup as exc:
            self.stats["hangups"] += 1
            log.info("caller hung up during the route", detail=str(exc))
        except (AgiError, TimeoutError) as exc:
            self.stats["failed"] += 1
            log.error("route failed", error=repr(exc))
        except Exception:
            self.stats["failed"] += 1
            log.exception("route crashed")
        else:
            self.stats["completed"] += 1
        finally:
            structlog.contextvars.unbind_contextvars("route", "uniqueid")

    async def _read_environment(
        self, reader: asyncio.StreamReader, log: structlog.typing.FilteringBoundLogger
    ) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(self.header_timeout):
                raw = await reader.readuntil(_HEADER_END)
        except TimeoutError:
            reason = "no complete AGI environment in time"
        except asyncio.IncompleteReadError as exc:
            reason = f"closed after {len(exc.partial)} bytes, before the AGI environment ended"
        except asyncio.LimitOverrunError:
            reason = f"AGI environment larger than {self.max_header_bytes} bytes"
        except ConnectionError as exc:
            reason = f"connection error: {exc!r}"
        else:
            try:
                lines = raw.decode("utf-8", "replace").split("\n")
                return parse_environment([line.rstrip("\r") for line in lines if line.strip()])
            except AgiProtocolError as exc:
                reason = str(exc)
        self.stats["bad_headers"] += 1
        log.warning("FastAGI connection dropped", reason=reason)
        return None
