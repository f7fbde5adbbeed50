"""One supervised, self-healing AMI link per PBX.

The link logs in with a deadline, watches the connection with its own Ping (panoramisk
never checks the reply), reconnects with exponential backoff and jitter, bounds every
action with a timeout and never re-sends one, and hands events to a single consumer task
through a bounded buffer: a handler that raises is logged with its event and the next
events still arrive. The link's health (connecting / up / down, since when, why) is
always readable.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from panoramisk.message import Message

from callbackd.ami.errors import (
    AmiActionFailed,
    AmiConnectionLost,
    AmiNotConnected,
    AmiTimeout,
)
from callbackd.ami.protocol import AmiProtocol, HeaderValue

EventHandler = Callable[["AmiLink", Message], Awaitable[None]]
UpHook = Callable[["AmiLink"], Awaitable[None]]


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class LinkHealth:
    state: LinkState
    since: datetime
    detail: str | None = None


@dataclass(frozen=True)
class AmiLinkConfig:
    """What one link needs to know; built from the validated settings."""

    name: str
    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    tls: bool = False
    connect_timeout: float = 5.0
    login_timeout: float = 5.0
    action_timeout: float = 10.0
    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_queued_events: int = 10_000
    # ActionIDs start with this (None: ``callbackd-<name>``, the prefix the shipped eventfilter
    # lets OriginateResponse through for). Another program using this class picks its own, so
    # its OriginateResponses do not reach callbackd.
    action_id_prefix: str | None = None


@dataclass
class LinkStats:
    events_received: int = 0
    events_ignored: int = 0
    malformed_messages: int = 0
    handler_errors: int = 0
    connects: int = 0


class AmiLink:
    """A named connection to one PBX that keeps itself up for as long as ``run()`` runs."""

    def __init__(
        self,
        config: AmiLinkConfig,
        *,
        handler: EventHandler,
        events: Collection[str] | None = None,
        on_up: Sequence[UpHook] = (),
    ) -> None:
        self.config = config
        self.name = config.name
        self._handler = handler
        self._wanted = frozenset(e.lower() for e in events) if events is not None else None
        self._on_up = tuple(on_up)
        self._protocol: AmiProtocol | None = None
        self._logged_in = False
        self._up_event = asyncio.Event()
        self._queue: deque[Message] = deque()
        self._queue_ready = asyncio.Event()
        self._paused = False
        self.stats = LinkStats()
        self.health = LinkHealth(LinkState.CONNECTING, datetime.now(UTC), "starting")
        self.asterisk_banner: str | None = None
        self._log = structlog.get_logger("callbackd.ami").bind(pbx=config.name)

    # -- public ----------------------------------------------------------------------------
    @property
    def is_up(self) -> bool:
        return self._logged_in and self._protocol is not None

    async def wait_up(self, timeout: float) -> None:
        """Wait until the link is logged in, or raise ``AmiNotConnected``."""
        try:
            async with asyncio.timeout(timeout):
                await self._up_event.wait()
        except TimeoutError:
            raise AmiNotConnected(
                f"{self.name}: not up after {timeout} s ({self.health.detail})"
            ) from None

    async def action(
        self,
        headers: Mapping[str, HeaderValue],
        *,
        timeout: float | None = None,
        as_list: bool | None = None,
        check: bool = True,
    ) -> Any:
        """Send one action and wait for its response(s), bounded by a timeout.

        Never queued while the link is down and never re-sent after a reconnect: the caller
        gets ``AmiNotConnected`` / ``AmiConnectionLost`` / ``AmiTimeout`` and decides.
        """
        protocol = self._protocol
        if protocol is None or not self._logged_in:
            raise AmiNotConnected(f"{self.name}: link is {self.health.state}")
        return await self._send(protocol, headers, timeout=timeout, as_list=as_list, check=check)

    async def run(self) -> None:
        """Connect, serve and reconnect until cancelled."""
        consumer = asyncio.create_task(self._consume_events(), name=f"ami-{self.name}-events")
        failures = 0
        try:
            while True:
                connected_at = time.monotonic()
                try:
                    await self._connect_and_serve()
                except AmiActionFailed as err:
                    self._set_health(LinkState.DOWN, f"login refused: {err.message}")
                except (OSError, AmiTimeout, AmiConnectionLost, TimeoutError) as err:
                    self._set_health(LinkState.DOWN, _describe(err))
                finally:
                    await self._drop_connection()
                if time.monotonic() - connected_at > max(self.config.ping_interval, 5.0):
                    failures = 0
                delay = min(self.config.backoff_max, self.config.backoff_initial * 2**failures)
                failures = min(failures + 1, 30)
                await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311 - jitter
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await self._drop_connection()

    # -- connection lifecycle --------------------------------------------------------------
    async def _connect_and_serve(self) -> None:
        cfg = self.config
        self._set_health(LinkState.CONNECTING, f"connecting to {cfg.host}:{cfg.port}")
        loop = asyncio.get_running_loop()
        ssl_context = ssl.create_default_context() if cfg.tls else None
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: AmiProtocol(
                    on_event=self._enqueue_event,
                    on_malformed=self._on_malformed,
                    action_id_prefix=cfg.action_id_prefix or f"callbackd-{cfg.name}",
                    keepalive_seconds=int(cfg.ping_interval),
                    wanted_events=self._wanted,
                    on_skipped=self._count_ignored,
                ),
                cfg.host,
                cfg.port,
                ssl=ssl_context,
            ),
            timeout=cfg.connect_timeout,
        )
        self._protocol = protocol
        self.stats.connects += 1
        self.asterisk_banner = await asyncio.wait_for(
            protocol.banner_received, timeout=cfg.login_timeout
        )
        await self._send(
            protocol,
            {"Action": "Login", "Username": cfg.username, "Secret": cfg.secret, "Events": "on"},
            timeout=cfg.login_timeout,
            as_list=None,
            check=True,
        )
        self._logged_in = True
        self._up_event.set()
        self._set_health(LinkState.UP, self.asterisk_banner)
        async with asyncio.TaskGroup() as group:
            watchdog = group.create_task(self._watchdog(protocol), name=f"ami-{cfg.name}-ping")
            hooks = [
                group.create_task(self._run_hook(hook), name=f"ami-{cfg.name}-on-up")
                for hook in self._on_up
            ]
            closed_by = await protocol.closed
            watchdog.cancel()
            for task in hooks:
                task.cancel()
        raise AmiConnectionLost(_describe(closed_by) if closed_by else "closed by Asterisk")

    async def _watchdog(self, protocol: AmiProtocol) -> None:
        """Ping on our own schedule; no answer in time means the link is dead: abort it."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.ping_interval)
            try:
                await self._send(
                    protocol, {"Action": "Ping"}, timeout=cfg.ping_timeout, as_list=None
                )
            except AmiTimeout:
                self._log.warning("ami ping unanswered, dropping the link", after=cfg.ping_timeout)
                protocol.abort()
                return
            except AmiConnectionLost:
                return

    async def _run_hook(self, hook: UpHook) -> None:
        try:
            await hook(self)
        except (AmiNotConnected, AmiConnectionLost):
            self._log.info("on-up hook interrupted by a disconnect", hook=_hook_name(hook))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a hook bug must not take the link down
            self._log.exception("on-up hook failed", hook=_hook_name(hook))

    async def _drop_connection(self) -> None:
        self._logged_in = False
        self._up_event.clear()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abort()
        self._paused = False

    async def _send(
        self,
        protocol: AmiProtocol,
        headers: Mapping[str, HeaderValue],
        *,
        timeout: float | None,
        as_list: bool | None,
        check: bool = True,
    ) -> Any:
        limit = self.config.action_timeout if timeout is None else timeout
        action = protocol.send(headers, as_list=as_list)
        try:
            # On timeout the future is cancelled, so a late answer or a later connection
            # loss finds it done and nothing is left unretrieved.
            async with asyncio.timeout(limit):
                result = await action.future
        except TimeoutError:
            protocol.forget(action)
            raise AmiTimeout(
                f"{self.name}: {headers.get('Action')} unanswered after {limit} s"
            ) from None
        if check:
            first = result[0] if isinstance(result, list) else result
            if not first.success:
                raise AmiActionFailed(str(headers.get("Action")), str(first.get("message", "")))
        return result

    # -- events ----------------------------------------------------------------------------
    def _enqueue_event(self, message: Message) -> None:
        """Called from the protocol for every event: only enqueue, never run handler code."""
        name = str(message.get("event", "")).lower()
        if self._wanted is not None and name not in self._wanted:
            self.stats.events_ignored += 1
            return
        self.stats.events_received += 1
        self._queue.append(message)
        self._queue_ready.set()
        if not self._paused and len(self._queue) >= self.config.max_queued_events:
            self._paused = True
            if self._protocol is not None:
                self._protocol.pause_reading()
            self._log.warning(
                "event consumer is behind; pausing AMI reads", queued=len(self._queue)
            )

    async def _consume_events(self) -> None:
        queue = self._queue
        low_water = self.config.max_queued_events // 2
        while True:
            await self._queue_ready.wait()
            while queue:
                message = queue.popleft()
                try:
                    await self._handler(self, message)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - one bad event must not stop the others
                    self.stats.handler_errors += 1
                    self._log.exception(
                        "ami event handler failed; continuing with the next event",
                        ami_event=message.get("event"),
                        uniqueid=message.get("uniqueid"),
                    )
                if self._paused and len(queue) <= low_water:
                    self._paused = False
                    if self._protocol is not None:
                        self._protocol.resume_reading()
            self._queue_ready.clear()

    def _count_ignored(self) -> None:
        self.stats.events_ignored += 1

    def _on_malformed(self, raw: bytes) -> None:
        self.stats.malformed_messages += 1
        self._log.warning("malformed ami message skipped", size=len(raw), head=raw[:80])

    def _set_health(self, state: LinkState, detail: str | None) -> None:
        if state == self.health.state and detail == self.health.detail:
            return
        previous = self.health.state
        self.health = LinkHealth(state, datetime.now(UTC), detail)
        log = self._log.warning if state is LinkState.DOWN else self._log.info
        log("ami link state changed", state=str(state), previous=str(previous), detail=detail)


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _hook_name(hook: UpHook) -> str:
    return getattr(hook, "__qualname__", repr(hook))
