"""Abandon -> committed request: how long after Asterisk reports a caller's abandon is the
row committed by callbackd? p50/p99 at a steady rate of abandons, without and with
background calls on the PBX.

Everything is real: the lab Asterisk 22, a throwaway PostgreSQL, and ``callbackd run`` as
its own process with a TOML config. The start point is the ``Timestamp`` Asterisk puts on
``QueueCallerAbandon`` (timestampevents=yes); the end point is the moment the benchmark
receives a NOTIFY sent by a benchmark-only trigger on ``queue_abandons`` (delivered at
commit), so the figure includes the commit and its delivery.

Run as root: ``.venv/bin/python -m bench.abandon_latency [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from panoramisk.message import Message

from bench.ami_links import bench_link, ignore_events
from bench.background import background_call
from callbackd.ami.link import AmiLink
from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import lab_config_toml, spawn_daemon, stop_daemon
from callbackd.lab.postgres import LabPostgres

BENCH_TRIGGER = """
CREATE FUNCTION bench_notify_abandon() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('bench_abandon', NEW.uniqueid); RETURN NEW; END $$;
CREATE TRIGGER bench_notify_abandon AFTER INSERT ON queue_abandons
    FOR EACH ROW EXECUTE FUNCTION bench_notify_abandon();
"""


def _config(dsn: str, account: AmiAccount) -> str:
    return lab_config_toml(
        dsn,
        account,
        log_level="warning",
        rest="""
[campaigns.sales]
queue = "lab-sales"
min_hold_seconds = 1
""",
    )


async def run_phase(
    name: str,
    *,
    seconds: float,
    abandons_per_second: float,
    background_per_second: float,
    account: AmiAccount,
    notified: dict[str, float],
) -> list[float]:
    """Originate callers who abandon (and background calls); latencies in ms."""
    stamps: dict[str, float] = {}

    async def on_abandon(_link: AmiLink, event: Message) -> None:
        stamps[str(event["Uniqueid"])] = float(event["Timestamp"])

    watcher = bench_link("watch", account, on_abandon, {"QueueCallerAbandon"})
    caller = bench_link("callers", account, ignore_events, set())
    traffic = bench_link("traffic", account, ignore_events, set())
    tasks = [asyncio.create_task(link.run()) for link in (watcher, caller, traffic)]
    try:
        for link in (watcher, caller, traffic):
            await link.wait_up(5)
        # Asterisk filters the watcher's events itself, so the measurement costs the PBX little.
        await watcher.action(
            {"Action": "Filter", "Operation": "Add", "Filter": "Event: QueueCallerAbandon"}
        )
        for link in (caller, traffic):
            await link.action({"Action": "Events", "EventMask": "off"})
        ours: list[str] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent_callers = sent_background = 0
        while (elapsed := loop.time() - start) < seconds:
            while sent_callers < elapsed * abandons_per_second:
                sent_callers += 1
                channel_id = f"bench-{secrets.token_hex(8)}"
                ours.append(f"{channel_id};2")
                number = f"7916{secrets.randbelow(10**7):07d}"
                await caller.action(
                    {
                        "Action": "Originate",
                        "Channel": f"Local/{number}@lab-callers",
                        "Application": "Wait",
                        "Data": "1",
                        "Async": "true",
                        "ChannelId": channel_id,
                        "OtherChannelId": f"{channel_id};2",
                    },
                    as_list=False,  # "queued" is enough; the outcome is not waited for
                )
            while sent_background < elapsed * background_per_second:
                sent_background += 1
                await traffic.action(
                    background_call(sent_background),
                    as_list=False,
                )
            await asyncio.sleep(0.002)
        deadline = loop.time() + 15
        pending = [u for u in ours if u not in notified or u not in stamps]
        while pending and loop.time() < deadline:  # two independent sources fill the maps
            await asyncio.sleep(0.05)
            pending = [u for u in pending if u not in notified or u not in stamps]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [(notified[u] - stamps[u]) * 1000 for u in ours if u in notified and u in stamps]
    missing = len(ours) - len(latencies)
    print(
        f"{name}: {len(ours)} abandons at {abandons_per_second:g}/s, background "
        f"{background_per_second:g} calls/s ({sent_background} calls) over {seconds:g} s; "
        f"{missing} without a measurement"
    )
    return latencies


def report(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return "not enough samples"
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"p50 {q[49]:6.2f} ms   p90 {q[89]:6.2f} ms   p99 {q[98]:6.2f} ms   "
        f"max {max(latencies):6.2f} ms   (n={len(latencies)})"
    )


async def main_async(seconds: float, rate: float, background: float) -> None:
    postgres, pbx = LabPostgres(), LabAsterisk()
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(pbx.start)
    workdir = Path(tempfile.mkdtemp(prefix="callbackd-bench-"))
    daemon: subprocess.Popen[bytes] | None = None
    listener = None
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "bench")
        conn = await connect(dsn)
        await apply_migrations(conn, discover(default_migrations_dir()))
        await conn.execute(BENCH_TRIGGER)
        await conn.close()
        config = workdir / "callbackd.toml"
        config.write_text(_config(dsn, pbx.ami_callbackd))
        daemon = spawn_daemon(config, workdir / "callbackd.log")
        notified: dict[str, float] = {}
        listener = await connect(dsn)
        await listener.add_listener(
            "bench_abandon", lambda _c, _p, _ch, payload: notified.__setitem__(payload, time.time())
        )
        await asyncio.sleep(2)  # the daemon connects and verifies its AMI account
        if daemon.poll() is not None:
            raise RuntimeError(f"callbackd exited: {(workdir / 'callbackd.log').read_text()}")
        account = pbx.ami_lab
        low = await run_phase(
            "low load",
            seconds=seconds,
            abandons_per_second=rate,
            background_per_second=0,
            account=account,
            notified=notified,
        )
        await asyncio.to_thread(pbx.wait_for_no_channels, 30.0)
        busy = await run_phase(
            "with background",
            seconds=seconds,
            abandons_per_second=rate,
            background_per_second=background,
            account=account,
            notified=notified,
        )
        print()
        print(f"abandon -> committed row, low load:         {report(low)}")
        print(f"abandon -> committed row, {background:g} calls/s bg: {report(busy)}")
        print("target: p99 <= 10 ms")
    finally:
        if listener is not None:
            await listener.close()
        stop_daemon(daemon, timeout=30)
        await asyncio.to_thread(pbx.stop)
        await asyncio.to_thread(postgres.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="abandons per second")
    parser.add_argument("--background", type=float, default=200.0, help="other calls/s")
    args = parser.parse_args()
    asyncio.run(main_async(args.seconds, args.rate, args.background))


if __name__ == "__main__":
    main()
