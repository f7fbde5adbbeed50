"""The daemon: one place that builds every component from the validated settings.

``Application.run`` waits for the database, refuses to start on an out-of-date schema,
syncs the campaigns, then supervises one AMI link per PBX, the capture buffer flusher and
(per PBX) the queue_log replay that runs after every (re)connect. It returns when ``stop``
is set, after stopping every task within the configured deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from callbackd.ami.capture_events import CaptureEventHandler
from callbackd.ami.link import AmiLink, AmiLinkConfig, UpHook
from callbackd.ami.router import EventRouter
from callbackd.ami.verify import PROBE_ROUTE, AccountVerifier
from callbackd.db.migrations import default_migrations_dir, discover, pending_versions
from callbackd.db.pool import create_pool
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.campaigns import sync_campaigns
from callbackd.services.capture import DATABASE_DOWN, AbandonCapture
from callbackd.services.queue_log import QueueLogReplayer
from callbackd.settings import AmiEndpoint, Settings, redact_dsn
from callbackd.supervisor import Supervisor

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
            log.info("stopping", deadline=self.settings.daemon.shutdown_grace_seconds)
            await self.supervisor.stop(self.settings.daemon.shutdown_grace_seconds)
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
            "tasks": self.supervisor.running,
        }

    # -- building ----------------------------------------------------------------------------
    def _build_components(self, campaigns: dict[tuple[str, str], Any]) -> None:
        settings = self.settings
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
        router = EventRouter(
            {
                "QueueCallerAbandon": capture_handler,
                "AgentConnect": capture_handler,
                PROBE_ROUTE: verifier.on_probe_event,
            }
        )
        for endpoint in settings.ami:
            hooks: list[UpHook] = []
            if endpoint.verify_account:

                async def verify(link: AmiLink) -> None:
                    await verifier.verify(link)

                hooks.append(verify)
            if endpoint.queue_log_path is not None:
                replayer = QueueLogReplayer(
                    self.pool,
                    capture,
                    pbx=endpoint.name,
                    path=endpoint.queue_log_path,
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
                    await asyncio.wait_for(stop.wait(), timeout=delay)
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
        async with self.pool.acquire() as conn, conn.transaction():
            return await sync_campaigns(conn, self.settings.campaigns)

    async def _close_pool(self) -> None:
        if self.pool is None:
            return
        try:
            await asyncio.wait_for(self.pool.close(), timeout=5)
        except TimeoutError:
            self.pool.terminate()
