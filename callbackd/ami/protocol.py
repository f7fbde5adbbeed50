"""AMI wire protocol: complete-message framing, safe action encoding, response correlation.

panoramisk 1.4 decodes every TCP read on its own (so UTF-8 split across reads is lost), lets
a raising callback kill the connection, and re-sends pending actions after a reconnect. This
protocol keeps panoramisk's ``Message`` and ``Action`` model but owns the bytes: messages
are decoded only when complete, malformed ones are counted and skipped, values carrying
CR/LF/NUL are refused before anything is written, and pending actions fail when the
connection goes -- nothing is ever sent twice.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from panoramisk.actions import Action
from panoramisk.message import Message

from callbackd.ami.errors import AmiConnectionLost, AmiUnsafeValue

BANNER_PREFIX = b"Asterisk Call Manager/"
MESSAGE_END = b"\r\n\r\n"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[\r\n\x00]")

HeaderValue = str | int | Sequence[str]


def encode_action(headers: Mapping[str, HeaderValue], action_id: str) -> bytes:
    """Serialise one action, refusing anything that could forge or split AMI headers."""
    lines = [f"ActionID: {action_id}"]
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or name.lower() == "actionid":
            raise AmiUnsafeValue(f"header name {name!r} is not allowed")
        values = [value] if isinstance(value, str | int) else list(value)
        for item in values:
            text = str(item)
            if _UNSAFE.search(text):
                raise AmiUnsafeValue(f"header {name} carries CR, LF or NUL")
            lines.append(f"{name}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def parse_message(raw: bytes) -> Message | None:
    """One complete message -> panoramisk Message, or None when it is not a valid one."""
    text = raw.decode("utf-8", errors="replace").strip("\r\n")
    if not text:
        return None
    message = Message.from_line(text)
    if message is None:
        return None
    # A forged or duplicated Event/Response header arrives as a list: refuse the message.
    for key in ("event", "response", "actionid"):
        if key in message and not isinstance(message[key], str):
            return None
    return message


class AmiProtocol(asyncio.Protocol):
    """One TCP connection to the Asterisk Manager Interface."""

    def __init__(
        self,
        *,
        on_event: Callable[[Message], None],
        on_malformed: Callable[[bytes], None],
        action_id_prefix: str,
        max_message_bytes: int = 1 << 20,
        keepalive_seconds: int = 10,
        wanted_events: frozenset[str] | None = None,
        on_skipped: Callable[[], None] | None = None,
    ) -> None:
        self._on_event = on_event
        # Events nobody handles are dropped before they are decoded or parsed (the bulk of
        # a busy PBX's stream); responses to our own actions are always parsed.
        self._wanted = (
            None if wanted_events is None else frozenset(e.lower().encode() for e in wanted_events)
        )
        self._on_skipped = on_skipped
        self._on_malformed = on_malformed
        self._prefix = action_id_prefix
        self._ids = itertools.count(1)
        self._max_message_bytes = max_message_bytes
        self._keepalive_seconds = keepalive_seconds
        self._buffer = bytearray()
        self._pending: dict[str, Action] = {}
        self._transport: asyncio.Transport | None = None
        self.banner: str | None = None
        self.banner_received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (asyncio's, or uvloop's, which does not subclass it).
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _enable_tcp_keepalive(sock, self._keepalive_seconds)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self.banner is None:
            end = buffer.find(b"\r\n")
            if end < 0:
                self._check_size()
                return
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if not line.startswith(BANNER_PREFIX):
                self._abort(ConnectionError("the peer is not an Asterisk Manager Interface"))
                return
            self.banner = line.decode("ascii", errors="replace")
            if not self.banner_received.done():
                self.banner_received.set_result(self.banner)
        start = 0
        while True:
            end = buffer.find(MESSAGE_END, start)
            if end < 0:
                break
            raw = bytes(buffer[start:end])
            start = end + 4
            if self._wanted is not None and self._skippable(raw):
                continue
            message = parse_message(raw)
            if message is None:
                if raw.strip():
                    self._on_malformed(raw)
                continue
            self._dispatch(message)
        if start:
            del buffer[:start]
        self._check_size()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        lost = AmiConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        pending, self._pending = self._pending, {}
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(lost)
        if not self.banner_received.done():
            self.banner_received.set_exception(lost)
        if not self.closed.done():
            self.closed.set_result(exc)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- actions ---------------------------------------------------------------------------
    def send(self, headers: Mapping[str, HeaderValue], *, as_list: bool | None) -> Action:
        """Write one action now; its future resolves with the response(s)."""
        if self._transport is None or self._transport.is_closing():
            raise AmiConnectionLost("not connected")
        action_id = f"{self._prefix}-{next(self._ids)}"
        payload = encode_action(headers, action_id)
        action = Action({"ActionID": action_id, **headers}, as_list=as_list)
        self._pending[action_id] = action
        self._transport.write(payload)
        return action

    def forget(self, action: Action) -> None:
        """Drop a pending action (its caller gave up); a late response is then ignored."""
        self._pending.pop(str(action.action_id), None)

    def abort(self) -> None:
        """Drop the connection at once (half-open link, protocol violation)."""
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- internals -------------------------------------------------------------------------
    def _skippable(self, raw: bytes) -> bool:
        """An event we do not handle, that answers none of our pending actions."""
        if not raw.startswith(b"Event: "):
            return False
        line_end = raw.find(b"\r\n")
        name = raw[7:line_end] if line_end > 0 else raw[7:]
        assert self._wanted is not None
        if name.lower() in self._wanted:
            return False
        if self._pending and b"ActionID: " in raw:
            return False
        if self._on_skipped is not None:
            self._on_skipped()
        return True

    def _dispatch(self, message: Message) -> None:
        action_id = message.get("actionid")
        if action_id is not None:
            action = self._pending.get(action_id)
            if action is not None:
                if action.add_message(message):
                    del self._pending[action_id]
                return
        if "event" in message:
            self._on_event(message)

    def _check_size(self) -> None:
        if len(self._buffer) > self._max_message_bytes:
            self._abort(ConnectionError("an AMI message exceeded the size limit"))

    def _abort(self, exc: Exception) -> None:
        self._buffer.clear()
        if self._transport is not None:
            self._transport.abort()
        if not self.closed.done():
            self.closed.set_result(exc)


def _enable_tcp_keepalive(sock: socket.socket, idle_seconds: int) -> None:
    """Let the kernel notice a dead peer too (our own Ping watchdog is the main guard)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, idle_seconds))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle_seconds // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
