"""Run the real callbackd Application in-process against the lab PBX and lab Postgres.

Used by the end-to-end tests, the demo and the benchmarks.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callbackd.app import Application
from callbackd.lab.asterisk import AmiAccount
from callbackd.settings import Settings, load_settings

LAB_PBX = "lab"


def closed_window() -> dict[str, Any]:
    """A calling window closed from yesterday to tomorrow (UTC): a campaign with it stores
    callbacks and dials none, whatever the weekday and hour the tests run at."""
    today = datetime.now(UTC).date()
    return {
        "timezone": "UTC",
        "holidays": [(today + timedelta(days=offset)).isoformat() for offset in (-1, 0, 1)],
    }


LAB_DIAL_TEMPLATE = "Local/{number}@lab-clients"
"""Where lab campaigns reach their clients unless a test says otherwise: the lab's own
client context, which needs no caller_id (the shipped from-callbackd would)."""


def _lab_clients_by_default(campaigns: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"dial_template": LAB_DIAL_TEMPLATE, **campaign}
        if isinstance(campaign, dict)
        else campaign
        for name, campaign in campaigns.items()
    }


def lab_settings(
    dsn: str,
    account: AmiAccount,
    *,
    queue_log_path: str | None = None,
    campaigns: dict[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a daemon on the lab: fast link timings, campaign 'sales' on lab-sales
    (by default one that stores abandons and dials nothing)."""
    endpoint: dict[str, Any] = {
        "name": LAB_PBX,
        "host": account.host,
        "port": account.port,
        "username": account.username,
        "secret": account.secret,
        "ping_interval_seconds": 1.0,
        "ping_timeout_seconds": 1.0,
        "connect_timeout_seconds": 2.0,
        "action_timeout_seconds": 3.0,
        "reconnect_backoff_initial_seconds": 0.1,
        "reconnect_backoff_max_seconds": 0.5,
    }
    if queue_log_path is not None:
        endpoint["queue_log_path"] = queue_log_path
    return load_settings(
        None,
        env={},
        database={"dsn": dsn, "min_connections": 1, "max_connections": 4},
        ami=[endpoint],
        phone={"default_region": "RU"},
        # The default campaign only captures: with the default calling hours, whether it
        # dialled would depend on the time of day the tests run at.
        campaigns=_lab_clients_by_default(
            campaigns
            if campaigns is not None
            else {"sales": {"queue": "lab-sales", "min_hold_seconds": 2, "window": closed_window()}}
        ),
        logging={"format": "json", "mask_numbers": False},
        # No FastAGI server unless a test asks for one (agi={...}): lab daemons run side
        # by side and would all want port 4573.
        **{"daemon": {"shutdown_grace_seconds": 5}, "agi": {"enabled": False}, **overrides},
    )


def lab_config_toml(
    dsn: str,
    account: AmiAccount,
    *,
    rest: str = "",
    log_level: str = "info",
    agi_port: int | None = None,
) -> str:
    """A TOML config for ``callbackd run`` as its own process on the lab (database, the lab
    PBX as endpoint "lab", region RU, JSON logs), followed by the caller's own tables.

    The FastAGI server is off unless *agi_port* is given (lab daemons run side by side)."""
    base = f"""
[database]
dsn = "{dsn}"
[[ami]]
name = "{LAB_PBX}"
host = "{account.host}"
port = {account.port}
username = "{account.username}"
secret = "{account.secret}"
[phone]
default_region = "RU"
[logging]
format = "json"
level = "{log_level}"
[agi]
enabled = {"true" if agi_port else "false"}
listen_port = {agi_port or 4573}
"""
    return base + rest


@asynccontextmanager
async def running_daemon(
    settings: Settings, *, up_timeout: float = 10.0
) -> AsyncIterator[Application]:
    """Start Application.run as a task, wait until every AMI link is up, stop it afterwards."""
    app = Application(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop), name="test-daemon")
    try:
        await wait_until(lambda: _links_up(app, task), timeout=up_timeout, what="AMI links up")
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


def _links_up(app: Application, task: asyncio.Task[int]) -> bool:
    if task.done():
        raise RuntimeError(f"daemon exited early with {task.result()}")
    return bool(app.links) and all(link.is_up for link in app.links.values())


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float, what: str
) -> None:
    """Poll a condition (sync or async) until it holds, or fail naming what was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.02)


CHECKOUT: Path = Path(__file__).resolve().parents[2]
"""The directory holding the ``callbackd`` package these lab helpers belong to."""


def spawn_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``callbackd run --config <config>`` as its own process, output to ``log``.

    It runs THIS checkout's code (PYTHONPATH, and the checkout as its working directory: ``-m``
    puts the working directory first on the path, so another checkout's ``callbackd/`` there
    would win) with no ``CALLBACKD_*`` variables inherited, so only the config file counts.
    The caller owns the process: stop or kill it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH", "")) if p)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "callbackd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=CHECKOUT,
        )


def stop_daemon(process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM a daemon still running and wait for it (SIGKILL after ``timeout``)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def daemon_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`spawn_daemon`, killed on the way out if it still runs (tests that crash it)."""
    process = spawn_daemon(config, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
