"""A small async AMI driver that tests use to act on the lab PBX and watch what it does.

Built on callbackd's own AMI wire protocol (:class:`callbackd.ami.protocol.AmiProtocol`, the
framing and action encoding the daemon uses) so it avoids the panoramisk pitfalls in
``shared/notes/panoramisk-pitfalls.md`` that would make tests flaky or wrong:

* the login is awaited under a deadline and a refused login raises (panoramisk: silent);
* every action is bounded by a timeout; a lost connection fails waiting actions at once and
  is never silently re-established (panoramisk would re-send Originates after reconnect);
* messages are decoded only once complete, so UTF-8 caller names split across TCP reads
  stay intact, and malformed messages are dropped instead of killing the connection;
* values with CR/LF/NUL are refused before they reach AMI;
* events reach tests through ONE synchronous callback that only appends to collectors.

This is a lab/test tool. callbackd's production AMI link is a separate component.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from panoramisk.message import Message

from callbackd.ami.errors import AmiConnectionLost, AmiUnsafeValue
from callbackd.ami.protocol import AmiProtocol
from callbackd.lab.asterisk import AmiAccount, LabError

log = logging.getLogger(__name__)

ActionValue = str | Sequence[str]
"""An action header's value; a sequence sends the header once per item (e.g. Variable)."""

_SUCCESS_RESPONSES: Final = frozenset({"success", "follows", "goodbye"})
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUEUE_OPTIONS = re.compile(r"^[A-Za-z0-9()]{0,32}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DIGITS = re.compile(r"^[0-9]{2,32}$")


@dataclass(frozen=True)
class AmiMessage:
    """One AMI event or response: headers in arrival order, looked up case-insensitively."""

    headers: tuple[tuple[str, str], ...]
    content: str = ""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, or ``default``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (e.g. ChanVariable, Output)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    @property
    def event(self) -> str:
        """The Event header ("" for responses)."""
        return self.get("Event") or ""

    @property
    def success(self) -> bool:
        """Whether this response reports success (Success/Follows/Goodbye)."""
        return (self.get("Response") or "").lower() in _SUCCESS_RESPONSES

    def chan_variables(self, prefix: str = "") -> dict[str, str]:
        """Channel variables carried by ``<prefix>ChanVariable`` headers (manager channelvars)."""
        variables: dict[str, str] = {}
        for item in self.get_all(f"{prefix}ChanVariable"):
            name, _, value = item.partition("=")
            variables[name] = value
        return variables

    @classmethod
    def from_panoramisk(cls, message: Any) -> AmiMessage:
        """Copy a panoramisk Message (a case-insensitive dict with list values)."""
        headers: list[tuple[str, str]] = []
        content = ""
        for key, value in message.items():
            if key == "content":
                content = str(value)
            elif isinstance(value, list):
                headers.extend((str(key), str(item)) for item in value)
            else:
                headers.append((str(key), str(value)))
        return cls(tuple(headers), content)


class EventCollector:
    """Buffers the driver's events from the moment it is created, for :meth:`next`.

    Create it (``driver.events(...)``) BEFORE the action that causes the events, so none is
    missed. Use it as an async context manager, or call :meth:`close` when done.
    """

    def __init__(self, driver: LabDriver, names: frozenset[str], limit: int) -> None:
        self._driver = driver
        self._names = names
        self._limit = limit
        self._buffer: list[AmiMessage] = []
        self._arrived = asyncio.Event()
        self._overflowed = False

    def offer(self, message: AmiMessage) -> None:
        """Called by the driver for every event; synchronous and never raises."""
        if self._names and message.event.lower() not in self._names:
            return
        if len(self._buffer) >= self._limit:
            self._overflowed = True
        else:
            self._buffer.append(message)
        self._arrived.set()

    @property
    def pending(self) -> list[AmiMessage]:
        """Events collected and not yet returned by :meth:`next`."""
        return list(self._buffer)

    async def next(
        self,
        name: str,
        predicate: Callable[[AmiMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> AmiMessage:
        """Wait for, remove and return the first collected ``name`` event matching ``predicate``.

        Raises LabError after ``timeout`` seconds, naming the events that did arrive.
        """
        wanted = name.lower()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._overflowed:
                        raise LabError(f"event collector overflowed ({self._limit} events)")
                    for index, message in enumerate(self._buffer):
                        if message.event.lower() == wanted and (
                            predicate is None or predicate(message)
                        ):
                            del self._buffer[index]
                            return message
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            seen = ", ".join(m.event for m in self._buffer) or "none"
            raise LabError(
                f"no matching {name} event within {timeout} s; other events: {seen}"
            ) from None

    def close(self) -> None:
        """Stop collecting."""
        self._driver.drop_collector(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LabDriver:
    """An AMI session on the lab PBX; create with :meth:`connect`."""

    def __init__(self, account: AmiAccount) -> None:
        """Prefer :meth:`connect`; this only prepares the object."""
        self.account = account
        self._protocol: AmiProtocol | None = None
        self._authenticated = False
        self._collectors: set[EventCollector] = set()

    @classmethod
    async def connect(cls, account: AmiAccount, timeout: float = 5.0) -> LabDriver:
        """Connect and log in, or raise LabError within ``timeout`` seconds."""
        driver = cls(account)
        await driver._open(timeout)
        return driver

    async def _open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _transport, protocol = await loop.create_connection(
                    lambda: AmiProtocol(
                        on_event=self._on_event,
                        on_malformed=_log_malformed,
                        action_id_prefix=f"lab-{uuid.uuid4().hex[:8]}",
                    ),
                    self.account.host,
                    self.account.port,
                )
                self._protocol = protocol
                await protocol.banner_received
                response = await self._send(
                    {
                        "Action": "Login",
                        "Username": self.account.username,
                        "Secret": self.account.secret,
                        "Events": "on",
                    },
                    timeout=timeout,
                )
        except (OSError, AmiConnectionLost) as exc:  # TimeoutError included
            await self.close()
            raise LabError(
                f"cannot reach AMI at {self.account.host}:{self.account.port}: {exc!r}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        if not response[0].success:
            await self.close()
            raise LabError(
                f"AMI login as {self.account.username} refused: {response[0].get('Message')}"
            )
        self._authenticated = True

    @property
    def connected(self) -> bool:
        """Whether the AMI session is up and logged in."""
        return (
            self._protocol is not None and self._authenticated and not self._protocol.closed.done()
        )

    async def action(self, action: Mapping[str, ActionValue], timeout: float = 5.0) -> AmiMessage:
        """Send one action and return its Response (success or not) within ``timeout`` s."""
        messages = await self._send(action, timeout=timeout)
        return messages[0]

    async def action_list(
        self, action: Mapping[str, ActionValue], timeout: float = 5.0
    ) -> list[AmiMessage]:
        """Send an action that answers with a list (QueueStatus, async Originate...).

        Returns the Response followed by the list's events (in panoramisk these never
        reach event handlers, so collectors do not see them either).
        """
        return await self._send(action, timeout=timeout, as_list=True)

    def events(self, *names: str, limit: int = 10_000) -> EventCollector:
        """Start collecting events named ``names`` (all events if none given)."""
        collector = EventCollector(self, frozenset(n.lower() for n in names), limit)
        self._collectors.add(collector)
        return collector

    def drop_collector(self, collector: EventCollector) -> None:
        """Stop feeding ``collector`` (EventCollector.close calls this)."""
        self._collectors.discard(collector)

    async def originate_caller(
        self,
        number: str,
        name: str | None = None,
        *,
        wait_seconds: int = 600,
        queue: str = "lab-sales",
        queue_options: str = "",
        variables: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Make a simulated caller join ``queue`` and hang up after ``wait_seconds``.

        The wait starts when the call is answered, a few milliseconds before the caller
        joins, so the queue's whole-second HoldTime can be ``wait_seconds - 1``.

        ``number`` and ``name`` become the caller ID as given (any text; they travel
        base64-encoded, so commas and non-ASCII survive). Returns once the caller's call
        is up, i.e. it is about to join the queue. The returned ChannelId is the Uniqueid
        of the caller's first half; the half that sits in the queue (the one in
        QueueCaller* events) has Uniqueid ``<ChannelId>;2``. ``variables`` are extra
        channel variables for the caller (e.g. ``CALLBACKD_PRIORITY``), set before the
        caller reaches the shipped dialplan; values must not contain commas.
        """
        if not _QUEUE_NAME.match(queue):
            raise LabError(f"bad lab queue name {queue!r}")
        if not _QUEUE_OPTIONS.match(queue_options):
            raise LabError(f"bad Queue() options {queue_options!r}")
        if wait_seconds < 0:
            raise LabError(f"wait_seconds must be >= 0, not {wait_seconds}")
        channel_id = f"lab-caller-{uuid.uuid4().hex}"
        channel_variables = [f"LAB_CALLER_NUM_B64={_b64(number)}", f"LAB_QUEUE={queue}"]
        if name is not None:
            channel_variables.append(f"LAB_CALLER_NAME_B64={_b64(name)}")
        if queue_options:
            channel_variables.append(f"LAB_QUEUE_OPTIONS={queue_options}")
        for key, value in (variables or {}).items():
            if not _VARIABLE_NAME.match(key) or "," in value:
                raise LabError(f"bad channel variable {key}={value!r}")
            channel_variables.append(f"{key}={value}")
        extension = number if _DIGITS.match(number) else "s"
        messages = await self.action_list(
            {
                "Action": "Originate",
                "Channel": f"Local/{extension}@lab-callers",
                "Application": "Wait",
                "Data": str(wait_seconds),
                "Async": "true",
                "Timeout": str(int(timeout * 1000)),
                "ChannelId": channel_id,
                "OtherChannelId": f"{channel_id};2",
                "Variable": channel_variables,
            },
            timeout=timeout + 2.0,
        )
        if not messages[0].success:
            raise LabError(f"Originate of caller {number!r} refused: {messages[0].get('Message')}")
        outcome = next((m for m in messages[1:] if m.event == "OriginateResponse"), None)
        if outcome is None or outcome.get("Response") != "Success":
            detail = outcome.get("Reason") if outcome is not None else "no OriginateResponse"
            raise LabError(f"caller {number!r} did not get through (reason {detail})")
        return channel_id

    async def close(self, timeout: float = 2.0) -> None:
        """Close the session (idempotent) and wait until the socket is really closed."""
        protocol, self._protocol = self._protocol, None
        self._authenticated = False
        self._collectors.clear()
        if protocol is not None:
            protocol.close()
            try:
                async with asyncio.timeout(timeout):
                    await protocol.closed
            except TimeoutError:
                protocol.abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(
        self,
        action: Mapping[str, ActionValue],
        *,
        timeout: float,
        as_list: bool | None = None,
    ) -> list[AmiMessage]:
        protocol = self._protocol
        if protocol is None or protocol.closed.done():
            raise LabError("the AMI session is closed")
        name = action.get("Action")
        try:
            pending = protocol.send(dict(action), as_list=as_list)
        except AmiUnsafeValue as exc:
            raise LabError(f"refusing AMI {action.get('Action')}: {exc}") from exc
        except AmiConnectionLost as exc:
            raise LabError("the AMI session is closed") from exc
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait(
                    {pending.future, protocol.closed}, return_when=asyncio.FIRST_COMPLETED
                )
        except TimeoutError:
            protocol.forget(pending)
            raise LabError(f"no answer to AMI {name} within {timeout} s") from None
        if not pending.future.done():
            raise LabError(f"AMI connection lost while waiting for {name}")
        try:
            result = pending.future.result()
        except AmiConnectionLost as exc:
            raise LabError(f"AMI connection lost while waiting for {name}") from exc
        messages = result if isinstance(result, list) else [result]
        return [AmiMessage.from_panoramisk(m) for m in messages]

    def _on_event(self, message: Message) -> None:
        """The ONE event callback: copy and hand out, never raise."""
        try:
            event = AmiMessage.from_panoramisk(message)
            for collector in tuple(self._collectors):
                collector.offer(event)
        except Exception:
            log.exception("could not record an AMI event")


def _log_malformed(raw: bytes) -> None:
    log.warning("dropping a malformed AMI message: %r", raw[:200])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
