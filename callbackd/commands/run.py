"""``callbackd run``: the daemon in the foreground (systemd, a container, or a terminal)."""

from __future__ import annotations

import asyncio
import signal

import structlog

from callbackd.app import Application
from callbackd.logs import configure_logging
from callbackd.settings import Settings


async def run_daemon(settings: Settings) -> int:
    configure_logging(settings.logging, secrets=settings.secret_values())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log = structlog.get_logger("callbackd")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum, log)
    try:
        return await Application(settings).run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _request_stop(
    stop: asyncio.Event, signum: int, log: structlog.typing.FilteringBoundLogger
) -> None:
    log.info("stop requested", signal=signal.Signals(signum).name)
    stop.set()
