"""The ``inbound`` lookup through AGI: time it adds to a call, as Asterisk sees it.

Everything is real: the lab Asterisk 22, a throwaway PostgreSQL seeded with customers and
interactions, and ``callbackd run`` as its own process (FastAGI server on 127.0.0.1). Each
call is a Local channel into the lab context ``lab-bench-agi``, which reads the clock
(STRFTIME, microseconds) right before and right after ``AGI(${CALLBACKD_AGI},inbound,
lab-sales)`` and reports the difference in ``UserEvent(LabAgiTiming)``. Every call is a
returning caller (an interaction and a customer row), so the route does its whole work:
one Postgres query, the operator-board check, six SET VARIABLE commands.

The same route then runs through classic AGI: Asterisk starts ``callbackd-agi`` (pyst2,
one process and one database connection per call) from inside its root.

Run as root: ``.venv/bin/python -m bench.agi_inbound [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.classic_agi import install_classic_agi
from callbackd.lab.daemon import lab_config_toml, spawn_daemon, stop_daemon
from callbackd.lab.driver import AmiMessage, LabDriver
from callbackd.lab.postgres import LabPostgres, free_port

CUSTOMERS = 20_000
OPERATORS = [f"Local/op{n}@lab-operators" for n in (1, 2, 3)]


def _config(dsn: str, pbx: LabAsterisk, agi_port: int) -> str:
    return lab_config_toml(
        dsn,
        pbx.ami_callbackd,
        log_level="warning",
        agi_port=agi_port,
        rest="""
[campaigns.sales]
queue = "lab-sales"
mode = "crm_task"
""",
    )


async def _seed(dsn: str) -> list[str]:
    """Customers with categories and 2 interactions each; the numbers (digits)."""
    numbers = [f"7916{n:07d}" for n in secrets.SystemRandom().sample(range(10**7), CUSTOMERS)]
    conn = await connect(dsn)
    try:
        await apply_migrations(conn, discover(default_migrations_dir()))
        await conn.copy_records_to_table(
            "customers",
            records=[
                (f"+{n}", "gold" if i % 3 else "regular", i % 7) for i, n in enumerate(numbers)
            ],
            columns=["number", "category", "priority"],
        )
        await conn.copy_records_to_table(
            "interactions",
            records=[
                (f"+{n}", "lab", "lab-sales", OPERATORS[(i + k) % 3], "inbound")
                for i, n in enumerate(numbers)
                for k in range(2)
            ],
            columns=["number", "pbx", "queue", "operator_interface", "source"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return numbers


async def _phase(
    driver: LabDriver,
    address: str,
    numbers: list[str],
    *,
    rate: float,
    seconds: float,
    route: str = "inbound",
) -> tuple[list[float], int, float]:
    """Calls at ``rate`` per second for ``seconds``; (latencies ms, failures, achieved/s)."""
    total = max(1, int(rate * seconds))
    wanted: set[str] = set()
    started = time.monotonic()
    async with driver.events("UserEvent") as events:
        async with asyncio.TaskGroup() as group:
            for index in range(total):
                due = started + index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                channel_id = f"bench-agi-{uuid.uuid4().hex}"
                wanted.add(f"{channel_id};2")
                group.create_task(
                    driver.action(
                        {
                            "Action": "Originate",
                            "Channel": f"Local/{numbers[index % len(numbers)]}@lab-bench-agi",
                            "Application": "Wait",
                            "Data": "30",
                            "Async": "true",
                            "Timeout": "20000",
                            "ChannelId": channel_id,
                            "OtherChannelId": f"{channel_id};2",
                            "Variable": [f"CALLBACKD_AGI={address}", f"LAB_ROUTE={route}"],
                        },
                        timeout=20,
                    ),
                    name=f"originate-{index}",
                )
        sent_in = time.monotonic() - started
        latencies: list[float] = []
        failures = 0

        def ours(event: AmiMessage) -> bool:
            return event.get("UserEvent") == "LabAgiTiming" and event.get("Uniqueid") in wanted

        deadline = time.monotonic() + 60
        while len(latencies) + failures < total and time.monotonic() < deadline:
            try:
                event = await events.next(
                    "UserEvent", ours, timeout=max(1.0, deadline - time.monotonic())
                )
            except Exception as exc:
                print(f"  stopped waiting: {exc}", flush=True)
                break
            if event.get("Status") == "SUCCESS" and (route != "inbound" or event.get("Sticky")):
                latencies.append(int(str(event.get("Micros"))) / 1000)
            else:
                if not failures:
                    print(
                        f"  first failure: AGISTATUS={event.get('Status')} "
                        f"sticky={event.get('Sticky')!r}",
                        flush=True,
                    )
                failures += 1
        failures += total - len(latencies) - failures
    return latencies, failures, total / sent_in if sent_in > 0 else float("inf")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(label: str, result: tuple[list[float], int, float]) -> str:
    latencies, failures, achieved = result
    if not latencies:
        return f"{label}: no successful call ({failures} failed)"
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{label}: n={len(ordered)} failed={failures} sent={achieved:.0f}/s "
        f"p50={p50:.2f} ms p99={p99:.2f} ms max={ordered[-1]:.2f} ms"
    )


async def main_async(
    seconds: float, fast_high_seconds: float, classic_seconds: float, phases: set[str]
) -> None:
    postgres, pbx = LabPostgres(), LabAsterisk()
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(pbx.start)
    workdir = Path(tempfile.mkdtemp(prefix="callbackd-bench-agi-"))
    daemon: subprocess.Popen[bytes] | None = None
    driver: LabDriver | None = None
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "bench")
        numbers = await _seed(dsn)
        agi_port = free_port()
        config_text = _config(dsn, pbx, agi_port)
        config = workdir / "callbackd.toml"
        config.write_text(config_text)
        daemon = spawn_daemon(config, workdir / "callbackd.log")
        script = await asyncio.to_thread(install_classic_agi, pbx, config_text)
        await asyncio.sleep(3)  # the daemon connects, loads the operator board, listens
        if daemon.poll() is not None:
            raise RuntimeError(f"callbackd exited: {(workdir / 'callbackd.log').read_text()}")
        # The lab account, filtered for this session to what the benchmark reads (its own
        # OriginateResponses and the timing UserEvents), so its reader keeps up at 500/s.
        driver = await LabDriver.connect(pbx.ami_lab)
        for rule in ("Event: UserEvent", "Event: OriginateResponse"):
            await driver.action({"Action": "Filter", "Operation": "Add", "Filter": rule})
        fast = f"agi://127.0.0.1:{agi_port}"
        results = []
        await _phase(driver, fast, numbers, rate=20, seconds=1)  # warm-up, not reported
        for key, label, address, rate, duration, route in (
            ("base50", "no route, FastAGI 50/s", fast, 50.0, seconds, "none"),
            ("fast50", "inbound, FastAGI  50/s", fast, 50.0, seconds, "inbound"),
            ("fast500", "inbound, FastAGI 500/s", fast, 500.0, fast_high_seconds, "inbound"),
            ("classic1", "inbound, classic   1/s", script, 1.0, classic_seconds, "inbound"),
            ("classic5", "inbound, classic   5/s", script, 5.0, classic_seconds, "inbound"),
            ("classic20", "inbound, classic  20/s", script, 20.0, classic_seconds / 2, "inbound"),
        ):
            if key not in phases:
                continue
            await asyncio.to_thread(pbx.wait_for_no_channels, 60.0)
            cpu_before = _cpu_seconds(daemon.pid)
            result = await _phase(
                driver, address, numbers, rate=rate, seconds=duration, route=route
            )
            line = _report(label, result)
            if address == fast and result[0]:
                per_call = (_cpu_seconds(daemon.pid) - cpu_before) / len(result[0]) * 1000
                line += f" daemon CPU {per_call:.2f} ms/call"
            results.append(line)
            print(results[-1], flush=True)
        print()
        print("time added per call as Asterisk sees it (around AGI()):")
        for line in results:
            print("  " + line)
        print("target: FastAGI with the real Postgres lookup p99 <= 5 ms at 50 requests/s")
    finally:
        if driver is not None:
            await driver.close()
        stop_daemon(daemon, timeout=30)
        await asyncio.to_thread(pbx.stop)
        await asyncio.to_thread(postgres.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="FastAGI at 50/s")
    parser.add_argument("--high-seconds", type=float, default=4.0, help="FastAGI at 500/s")
    parser.add_argument("--classic-seconds", type=float, default=4.0, help="classic phases")
    parser.add_argument(
        "--phases",
        default="base50,fast50,fast500,classic1,classic5,classic20",
        help="comma-separated subset of base50,fast50,fast500,classic1,classic5,classic20",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    asyncio.run(main_async(args.seconds, args.high_seconds, args.classic_seconds, phases))


if __name__ == "__main__":
    main()
