"""``callbackd-agi``: the same routes as the FastAGI server, for ``AGI(<script>,<route>,...)``.

Asterisk starts one process per call with the AGI environment on stdin. pyst2's
``asterisk.agi.AGI`` reads that environment, handles SIGHUP and writes our commands; the
replies are read here with a deadline (``select``) and parsed by the same code as FastAGI.
The script loads the configuration (``--config`` or ``CALLBACKD_CONFIG``, else
/etc/callbackd/callbackd.toml), opens ONE database connection, runs the route and exits.
Logs go to stderr (stdout is the AGI command channel), which Asterisk shows at verbose.

Exit status: 0 the route ran (or the caller hung up), 1 it failed, 2 bad configuration.
Whatever happens, the shipped dialplan set safe defaults before the AGI call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import structlog

from callbackd.agi.protocol import AgiError, AgiHangup, AgiTimeout, is_multiline_start
from callbackd.agi.routes import (
    AsteriskPresence,
    RouteDeps,
    SingleConnection,
    build_routes,
    campaigns_by_queue,
)
from callbackd.agi.session import AgiCall
from callbackd.db.pool import connect
from callbackd.domain.numbers import NumberPolicy
from callbackd.logs import configure_logging
from callbackd.services.inbound import InboundService
from callbackd.settings import ConfigError, Settings, load_settings

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
CONFIG_ENV: Final = "CALLBACKD_CONFIG"
_MAX_LINE: Final = 65536


class ClassicChannel:
    """:class:`~callbackd.agi.session.AgiChannel` over pyst2's stdin/stdout AGI object."""

    def __init__(self, agi: Any, reply_fd: int) -> None:
        self._agi = agi
        self._fd = reply_fd
        self._buffer = bytearray()
        self._closed = False

    @property
    def env(self) -> Mapping[str, str]:
        env: Mapping[str, str] = self._agi.env
        return env

    @property
    def hung_up(self) -> bool:
        return self._closed or bool(self._agi._got_sighup)

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        # One call per process: blocking here blocks nothing else.
        deadline = time.monotonic() + timeout
        try:
            self._agi.send_command(command)
        except OSError as exc:
            self._closed = True
            raise AgiHangup(f"AGI pipe closed: {exc!r}") from None
        line = self._line(deadline, command)
        usage: list[str] = []
        if is_multiline_start(line):
            while not (more := self._line(deadline, command)).startswith("520 "):
                usage.append(more)
            usage.append(more)
        return line, usage

    def _line(self, deadline: float, command: str) -> str:
        while (end := self._buffer.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgiTimeout(f"no reply to {command.split(' ', 1)[0]} in time")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._fd, 4096)
            if not chunk:
                self._closed = True
                raise AgiHangup("Asterisk closed the AGI pipe")
            self._buffer += chunk
            if len(self._buffer) > _MAX_LINE:
                raise AgiError("AGI reply line too long")
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return raw.decode("utf-8", "replace").rstrip("\r")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callbackd-agi",
        description="Run one callbackd AGI route for the call on stdin (classic AGI).",
    )
    parser.add_argument("--config", type=Path, default=None, metavar="PATH")
    parser.add_argument("args", nargs="*", help="ignored: the route comes from agi_arg_1")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: IO[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = args.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    try:
        settings = load_settings(config)
    except ConfigError as err:
        print(f"callbackd-agi: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.logging, stream=sys.stderr, secrets=settings.secret_values())
    from asterisk.agi import AGI

    source = stdin if stdin is not None else sys.stdin
    with open(os.devnull, "w", encoding="utf-8") as quiet:
        # pyst2 echoes the environment (caller numbers) and every command to stderr.
        agi = AGI(stdin=source, stdout=sys.stdout, stderr=quiet)
        return asyncio.run(run_route(settings, ClassicChannel(agi, source.fileno())))


async def run_route(settings: Settings, channel: ClassicChannel) -> int:
    log = structlog.get_logger("callbackd.agi.classic")
    call = AgiCall(channel, command_timeout=settings.agi.command_timeout_seconds)
    route_name = call.argument(1)
    db = settings.database
    try:
        conn = await connect(
            db.dsn.get_secret_value(),
            timeout=db.connect_timeout_seconds,
            command_timeout=db.command_timeout_seconds,
        )
    except (OSError, TimeoutError) as exc:
        log.error("database unreachable; the dialplan defaults apply", error=repr(exc))
        return EXIT_FAILED
    try:
        deps = RouteDeps(
            database=SingleConnection(conn),
            inbound=InboundService(
                policy=NumberPolicy.build(
                    settings.phone.default_region,
                    blocked_prefixes=settings.phone.blocked_prefixes,
                    blocked_regions=settings.phone.blocked_regions,
                    own_numbers=settings.phone.own_numbers,
                ),
                pbx=settings.agi.pbx or settings.ami[0].name,
                sticky_days=settings.agi.sticky_days,
            ),
            agi=settings.agi,
            campaigns=campaigns_by_queue(settings.campaigns),
            presence=AsteriskPresence,
        )
        route = build_routes(deps).get(route_name)
        if route is None:
            log.warning("classic AGI call for an unknown route", route=route_name[:32])
            return EXIT_FAILED
        async with asyncio.timeout(settings.agi.session_timeout_seconds):
            await route(call)
    except AgiHangup:
        log.info("caller hung up during the route", route=route_name)
        return EXIT_OK
    except (AgiError, TimeoutError) as exc:
        log.error("route failed", route=route_name, error=repr(exc))
        return EXIT_FAILED
    except Exception:
        log.exception("route crashed", route=route_name)
        return EXIT_FAILED
    finally:
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except TimeoutError:
            conn.terminate()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
