"""The daemon: one place that builds every component from the validated settings.

``Application.run`` waits for the database, refuses to start on an out-of-date schema,
syncs the campaigns, then supervises one AMI link per PBX, the capture buffer flusher and
(per PBX) the queue_log replay that runs after every (re)connect. It returns when ``stop``
is set, after stopping every task within the configured deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from callbackd import dialplan_contract as contract
from callbackd.agi.routes import BoardPresenceFactory, PoolDatabase, RouteDeps, build_routes
from callbackd.agi.routes import campaigns_by_queue as agi_campaigns_by_queue
from callbackd.agi.server import FastAgiServer
from callbackd.ami.capture_events import CaptureEventHandler
from callbackd.ami.link import AmiLink, AmiLinkConfig, UpHook
from callbackd.ami.queue_events import QUEUE_EVENTS, QueueEventHandler, in_order
from callbackd.ami.router import EventRouter
from callbackd.ami.verify import PROBE_ROUTE, AccountVerifier
from callbackd.db.migrations import default_migrations_dir, discover, pending_versions
from callbackd.db.notify import listen_for_wakeups
from callbackd.db.pool import create_pool
from callbackd.domain.numbers import NumberPolicy, preload_numbering_plan
from callbackd.domain.operators import OperatorBoard
from callbackd.domain.retention import pruning_enabled
from callbackd.http.server import ApiServer
from callbackd.services.caller_pays import CallerPaysCapture
from callbackd.services.campaigns import sync_campaigns
from callbackd.services.capture import DATABASE_DOWN, AbandonCapture
from callbackd.services.categories import sync_categories
from callbackd.services.client_first import ClientFirstDialer
from callbackd.services.customers import CustomerService
from callbackd.services.dialer import Dialer, DialerCampaign, default_instance_name
from callbackd.services.inbound import InboundService
from callbackd.services.outbox import OutboxWorker
from callbackd.services.outbox_retention import OutboxPruner
from callbackd.services.queue_log import QueueLogReplayer
from callbackd.services.reminders import ReminderCaller
from callbackd.services.requests import RequestService
from callbackd.settings import AmiEndpoint, Settings, redact_dsn
from callbackd.supervisor import Supervisor

DUE_CHANNEL = "callbackd_request_due"
EXIT_OK = 0
EXIT_FAILED = 1


def link_config(endpoint: AmiEndpoint) -> AmiLinkConfig:
    return AmiLinkConfig(
        name=endpoint.name,
        host=endpoint.host,
        port=endpoint.port,
        username=endpoint.username,
        secret=endpoint.secret.get_secret_value(),
        tls=endpoint.tls,
        connect_timeout=endpoint.connect_timeout_seconds,
        login_timeout=endpoint.connect_timeout_seconds,
        action_timeout=endpoint.action_timeout_seconds,
        ping_interval=endpoint.ping_interval_seconds,
        ping_timeout=endpoint.ping_timeout_seconds,
        backoff_initial=endpoint.reconnect_backoff_initial_seconds,
        backoff_max=endpoint.reconnect_backoff_max_seconds,
    )


def number_policy(settings: Settings) -> NumberPolicy:
    phone = settings.phone
    return NumberPolicy.build(
        phone.default_region,
        blocked_prefixes=phone.blocked_prefixes,
        blocked_regions=phone.blocked_regions,
        own_numbers=phone.own_numbers,
    )


@dataclass
class Application:
    settings: Settings
    supervisor: Supervisor = field(default_factory=Supervisor)
    pool: Any = None
    capture: AbandonCapture | None = None
    links: dict[str, AmiLink] = field(default_factory=dict)
    verifier: AccountVerifier | None = None
    dialer: Dialer | None = None
    boards: dict[str, OperatorBoard] = field(default_factory=dict)
    outbox: OutboxWorker | None = None
    outbox_pruner: OutboxPruner | None = None
    api: ApiServer | None = None
    client_first: ClientFirstDialer | None = None
    reminders: ReminderCaller | None = None
    caller_pays: CallerPaysCapture | None = None
    agi_server: FastAgiServer | None = None

    async def run(self, stop: asyncio.Event) -> int:
        log = structlog.get_logger("callbackd.app")
        pool = await self._wait_for_database(stop)
        if pool is None:
            return EXIT_OK  # stopped before the database ever answered
        self.pool = pool
        try:
            if not await self._schema_is_current():
                return EXIT_FAILED
            self._build_components(
                await self._sync_campaigns(),
            )
            log.info(
                "callbackd running",
                pbx=[link.name for link in self.links.values()],
                campaigns=sorted(self.settings.campaigns),
            )
            await stop.wait()
            grace = self.settings.daemon.shutdown_grace_seconds
            log.info("stopping", deadline=grace)
            if self.dialer is not None:
                left = await self.dialer.drain(grace)
                log.info("dialer drained", calls_left_in_flight=left)
            if self.client_first is not None:
                left = await self.client_first.drain(grace)
                log.info("client-first dialer drained", calls_left_in_flight=left)
            await self.supervisor.stop(5.0)
            return EXIT_OK
        finally:
            await self._close_pool()

    def health(self) -> dict[str, Any]:
        """One summary of every component, for the CLI, logs and the health endpoint."""
        links: dict[str, dict[str, Any]] = {
            name: {
                "state": str(link.health.state),
                "since": link.health.since.isoformat(),
                "detail": link.health.detail,
            }
            for name, link in self.links.items()
        }
        capture = self.capture
        checks = self.verifier.results if self.verifier else {}
        for name, check in checks.items():
            links[name]["account_missing"] = list(check.missing)
        return {
            "ami": links,
            "capture": {
                "healthy": capture.healthy if capture else False,
                "buffered": capture.buffered if capture else 0,
                "lost": capture.stats.lost if capture else 0,
            },
            "dialer": {
                "in_flight": self.dialer.in_flight if self.dialer else 0,
                "claimed": self.dialer.stats.claimed if self.dialer else 0,
                "finished": dict(self.dialer.stats.finished) if self.dialer else {},
            },
            "outbox": self.outbox.health() if self.outbox else {},
            "client_first": {
                "in_flight": self.client_first.in_flight if self.client_first else 0,
                "claimed": self.client_first.stats.claimed if self.client_first else 0,
                "finished": dict(self.client_first.stats.finished) if self.client_first else {},
            },
            "reminders": {
                "placed": self.reminders.stats.placed if self.reminders else 0,
                "heard": self.reminders.stats.heard if self.reminders else 0,
            },
            "tasks": self.supervisor.running,
        }

    # -- building ----------------------------------------------------------------------------
    def _build_components(self, campaigns: dict[tuple[str, str], Any]) -> None:
        settings = self.settings
        preload_numbering_plan(settings.phone.default_region)
        capture = AbandonCapture(
            self.pool,
            campaigns,
            number_policy(settings),
            resolve_in_all_campaigns=settings.capture.resolve_inbound_in_all_campaigns,
            buffer_limit=settings.capture.buffer_limit,
            write_timeout=settings.database.command_timeout_seconds,
        )
        self.capture = capture
        capture_handler = CaptureEventHandler(capture)
        verifier = AccountVerifier(timeout=5.0)
        self.verifier = verifier
        self.boards = {
            endpoint.name: OperatorBoard(settle_seconds=settings.daemon.operator_settle_seconds)
            for endpoint in settings.ami
        }
        dialer = Dialer(
            pool=self.pool,
            links=self.links,
            boards=self.boards,
            campaigns=[
                DialerCampaign(
                    id=ref.id,
                    name=ref.name,
                    settings=settings.campaigns[ref.name],
                    region=settings.phone.default_region,
                )
                for ref in campaigns.values()
            ],
            instance=settings.daemon.instance_name or default_instance_name(),
            max_starts_per_minute=settings.daemon.max_callbacks_per_minute,
            poll_interval=settings.daemon.dialer_poll_seconds,
            heartbeat_interval=settings.daemon.heartbeat_seconds,
            orphan_after=settings.daemon.orphan_after_seconds,
        )
        self.dialer = dialer
        modes = self._build_modes(campaigns)
        capture.on_stored = modes["wake"]  # a new request: no need to wait for its NOTIFY
        capture.claimer = dialer  # an abandon while an operator is free: claimed at once
        queue_handler = QueueEventHandler(self.boards, modes["wake"])
        router = EventRouter(
            {
                **dict.fromkeys(QUEUE_EVENTS, queue_handler),
                # the board counts the caller out first: the dialer sees the slot at once
                "QueueCallerAbandon": in_order(queue_handler, capture_handler),
                # capture judges a waiting caller's number before they might give up
                "QueueCallerJoin": in_order(queue_handler, capture_handler),
                # the board holds the member for the live caller before capture awaits
                "AgentConnect": in_order(queue_handler, capture_handler),
                f"userevent:{contract.INBOUND_CONNECTED_EVENT}": capture_handler,
                PROBE_ROUTE: verifier.on_probe_event,
                f"userevent:{contract.ATTEMPT_EVENT}": dialer.on_attempt_event,
                f"userevent:{contract.RESULT_EVENT}": dialer.on_result_event,
                **modes["routes"],
            }
        )
        for endpoint in settings.ami:
            hooks: list[UpHook] = [queue_handler.resync]
            if endpoint.verify_account:

                async def verify(link: AmiLink) -> None:
                    await verifier.verify(link)

                hooks.append(verify)
            if endpoint.queue_log_path is not None:
                replayer = QueueLogReplayer(
                    capture,
                    pbx=endpoint.name,
                    path=endpoint.queue_log_path,
                    caller_pays=self.caller_pays,
                    horizon=timedelta(hours=settings.capture.queue_log_horizon_hours),
                )

                async def replay(_link: AmiLink, replayer: QueueLogReplayer = replayer) -> None:
                    await replayer.replay()

                hooks.append(replay)
            link = AmiLink(
                link_config(endpoint), handler=router, events=router.event_names, on_up=hooks
            )
            self.links[endpoint.name] = link
            self.supervisor.start(f"ami-{endpoint.name}", link.run)
        self.supervisor.start("capture-flusher", capture.run_flusher)
        self.supervisor.start("dialer", dialer.run)
        # Webhooks and SMS: events written by the database triggers, delivered with retries.
        self.outbox = OutboxWorker(self.pool, settings, self.links)
        # Capture's events come without a NOTIFY (migration 0014): it wakes the worker itself.
        capture.on_events_written = self.outbox.wake
        self.supervisor.start("outbox", self.outbox.run)
        if pruning_enabled(settings.outbox.retention_days):
            self.outbox_pruner = OutboxPruner(
                self.pool,
                retention_days=settings.outbox.retention_days,
                timeout=settings.database.command_timeout_seconds,
            )
            self.supervisor.start("outbox-retention", self.outbox_pruner.run)
        if self.client_first is not None:
            self.supervisor.start("client-first-dialer", self.client_first.run)
        if self.reminders is not None:
            self.supervisor.start("reminders", self.reminders.run)
        self.supervisor.start("due-listener", lambda: self._listen_for_due(modes["wake"]))
        if settings.http.enabled:
            self.api = self._build_api()
            self.supervisor.start("http-api", self.api.run)
            self.supervisor.start("idempotency-purge", self.api.run_purge)
        if settings.agi.enabled:
            self.agi_server = self._build_agi_server()
            self.supervisor.start("agi-server", self.agi_server.run)

    def _build_api(self) -> ApiServer:
        """The HTTP API over the same pool, number policy and campaigns as the daemon."""
        settings = self.settings
        timeout = settings.database.command_timeout_seconds
        policy = number_policy(settings)
        return ApiServer(
            settings.http,
            requests=RequestService(self.pool, policy, settings.campaigns, timeout=timeout),
            customers=CustomerService(self.pool, policy, timeout=timeout),
            health=self.health,
            stats=lambda: self,
        )

    def _build_modes(self, campaigns: dict[tuple[str, str], Any]) -> dict[str, Any]:
        """Client-first dialer, caller-pays capture and reminder calls (dialer modes)."""
        settings = self.settings
        dialer = self.dialer
        assert dialer is not None
        wanted = [
            DialerCampaign(
                id=ref.id,
                name=ref.name,
                settings=settings.campaigns[ref.name],
                region=settings.phone.default_region,
            )
            for ref in campaigns.values()
        ]
        instance = dialer.instance
        client_first = ClientFirstDialer(
            pool=self.pool,
            links=self.links,
            boards=self.boards,
            campaigns=wanted,
            instance=instance,
            max_starts_per_minute=settings.daemon.max_callbacks_per_minute,
        )
        reminders = ReminderCaller(
            pool=self.pool,
            links=self.links,
            boards=self.boards,
            campaigns=wanted,
            instance=instance,
        )
        caller_pays = CallerPaysCapture(
            self.pool,
            {
                ref.name: ref
                for ref in campaigns.values()
                if settings.campaigns[ref.name].mode == "client_first"
            },
            number_policy(settings),
            on_stored=client_first.wake,
            write_timeout=settings.database.command_timeout_seconds,
        )
        has_client_first = any(c.settings.mode == "client_first" for c in wanted)
        self.client_first = client_first if has_client_first else None
        self.reminders = reminders if reminders.campaigns else None
        self.caller_pays = caller_pays

        def wake() -> None:
            dialer.wake()
            client_first.wake()

        routes = {
            f"userevent:{contract.CLIENT_FIRST_EVENT}": client_first.on_attempt_event,
            f"userevent:{contract.CLIENT_FIRST_RESULT_EVENT}": client_first.on_result_event,
            f"userevent:{contract.CALLER_PAYS_EVENT}": caller_pays.on_event,
            f"userevent:{contract.REMINDER_EVENT}": reminders.on_reminder_event,
        }
        return {"wake": wake, "routes": routes}

    def _build_agi_server(self) -> FastAgiServer:
        """The FastAGI server on the daemon's pool and live operator boards."""
        agi = self.settings.agi
        pbx = agi.pbx or self.settings.ami[0].name
        deps = RouteDeps(
            database=PoolDatabase(self.pool),
            inbound=InboundService(
                policy=number_policy(self.settings), pbx=pbx, sticky_days=agi.sticky_days
            ),
            agi=agi,
            campaigns=agi_campaigns_by_queue(self.settings.campaigns),
            presence=BoardPresenceFactory(self.boards, pbx),
        )
        return FastAgiServer(
            build_routes(deps),
            host=agi.listen_host,
            port=agi.listen_port,
            header_timeout=agi.header_timeout_seconds,
            max_header_bytes=agi.max_header_bytes,
            max_sessions=agi.max_sessions,
            command_timeout=agi.command_timeout_seconds,
            session_timeout=agi.session_timeout_seconds,
        )

    async def _listen_for_due(self, wake: Callable[[], None]) -> None:
        """LISTEN for due requests: only a faster wake-up, the dialer polls regardless."""
        db = self.settings.database
        await listen_for_wakeups(
            db.dsn.get_secret_value(),
            DUE_CHANNEL,
            wake,
            connect_timeout=db.connect_timeout_seconds,
            unreachable=DATABASE_DOWN,
        )

    async def _wait_for_database(self, stop: asyncio.Event) -> Any:
        db = self.settings.database
        log = structlog.get_logger("callbackd.app").bind(
            database=redact_dsn(db.dsn.get_secret_value())
        )
        delay = 0.5
        while not stop.is_set():
            try:
                pool = await create_pool(
                    db.dsn.get_secret_value(),
                    min_size=db.min_connections,
                    max_size=db.max_connections,
                    timeout=db.connect_timeout_seconds,
                    command_timeout=db.command_timeout_seconds,
                )
            except (*DATABASE_DOWN, asyncpg.PostgresError) as err:
                log.error("database unavailable; retrying", error=str(err), retry_in=delay)
                try:
                    async with asyncio.timeout(delay):
                        await stop.wait()
                except TimeoutError:
                    delay = min(delay * 2, 30.0)
                continue
            log.info("database connected")
            return pool
        return None

    async def _schema_is_current(self) -> bool:
        async with self.pool.acquire() as conn:
            missing = await pending_versions(conn, discover(default_migrations_dir()))
        if missing:
            structlog.get_logger("callbackd.app").error(
                "database schema is not up to date; run `callbackd migrate`",
                missing_versions=missing,
            )
            return False
        return True

    async def _sync_campaigns(self) -> dict[tuple[str, str], Any]:
        """Campaign rows and customer-category rules follow the configuration."""
        async with self.pool.acquire() as conn, conn.transaction():
            await sync_categories(conn, self.settings.categories)
            return await sync_campaigns(conn, self.settings.campaigns)

    async def _close_pool(self) -> None:
        if self.pool is None:
            return
        try:
            await asyncio.wait_for(self.pool.close(), timeout=5)
        except TimeoutError:
            self.pool.terminate()
