"""Sustained callbacks: how many complete per minute with 40 operators, and what the daemon costs.

Everything is real: the lab Asterisk 22, a throwaway PostgreSQL, and ``callbackd run`` as its
own process (so CPU and RSS are the daemon's own). lab-sales gets 40 operators
(``Local/opN@lab-operators``: answer, press 1 a second later) and a backlog of due requests;
every client (``Local/<number>@lab-clients``) answers and talks for --talk seconds. Each
callback is the full shipped flow: the operator's call, the announcement and the number, the
operator's 1, the client's call, the bridge, the report, the retry policy's verdict.

Over a fixed period (--seconds, after a warm-up) it counts the requests completed and
samples the daemon's CPU time and resident memory from /proc.

Run as root: ``.venv/bin/python -m bench.sustained_callbacks [--seconds 120]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import lab_config_toml, spawn_daemon, stop_daemon
from callbackd.lab.postgres import LabPostgres

REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, first_joined_at)
SELECT c.id, '+7917' || lpad(g::text, 7, '0'), 'abandon', now()
FROM campaigns c, generate_series(1, $1) g WHERE c.name = 'sales';
"""
COMPLETED_SINCE = """
SELECT count(*) FROM callback_requests WHERE status = 'completed' AND closed_at >= to_timestamp($1)
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _config(dsn: str, account: AmiAccount, per_minute: int) -> str:
    days = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
    return lab_config_toml(
        dsn,
        account,
        log_level="warning",
        rest=f"""
[daemon]
max_callbacks_per_minute = {per_minute}
[campaigns.sales]
queue = "lab-sales"
dial_template = "Local/{{number}}@lab-clients"
announce = "beep"
operator_ring_seconds = 10
client_ring_seconds = 10
min_talk_seconds = 2
[campaigns.sales.window]
timezone = "UTC"
days = {days}
start = "00:00"
end = "23:59"
""",
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (s), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def main_async(
    operators: int, backlog: int, talk: int, warmup: float, seconds: float, per_minute: int
) -> None:
    postgres, pbx = LabPostgres(), LabAsterisk()
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(pbx.start)
    workdir = Path(tempfile.mkdtemp(prefix="callbackd-bench-"))
    daemon: subprocess.Popen[bytes] | None = None
    db: Any = None
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "bench")
        db = await connect(dsn)
        await apply_migrations(db, discover(default_migrations_dir()))
        await asyncio.to_thread(pbx.set_operator, "default", "accept")
        await asyncio.to_thread(pbx.set_client, "default", "answer", talk)
        configured = {m.interface for m in pbx.queue_members("lab-sales")}
        for n in range(1, operators + 1):
            interface = f"Local/op{n}@lab-operators"
            if interface not in configured:
                await asyncio.to_thread(
                    pbx.cli, f"queue add member {interface} to lab-sales penalty 0"
                )
        members = len(pbx.queue_members("lab-sales"))
        config = workdir / "callbackd.toml"
        config.write_text(_config(dsn, pbx.ami_callbackd, per_minute))
        daemon = spawn_daemon(config, workdir / "callbackd.log")
        for _ in range(100):  # the daemon has synced its campaign
            if await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'sales'"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        if daemon.poll() is not None:
            raise RuntimeError(f"callbackd exited: {(workdir / 'callbackd.log').read_text()}")
        idle_rss = rss_mb(daemon.pid)
        await db.execute(REQUESTS, backlog)
        await asyncio.sleep(warmup)  # every operator busy, the first calls ending
        started, cpu_before = time.time(), cpu_seconds(daemon.pid)
        rss_samples: list[float] = []
        channels: list[int] = []
        while time.time() - started < seconds:
            await asyncio.sleep(2)
            rss_samples.append(rss_mb(daemon.pid))
            channels.append(await asyncio.to_thread(pbx.active_channels))
        elapsed = time.time() - started
        cpu = cpu_seconds(daemon.pid) - cpu_before
        done = await db.fetchval(COMPLETED_SINCE, started)
        outcomes = dict(
            await db.fetch(
                "SELECT coalesce(outcome, state), count(*) FROM attempts "
                "WHERE created_at >= to_timestamp($1) GROUP BY 1 ORDER BY 2 DESC",
                started,
            )
        )
        pending = await db.fetchval(
            "SELECT count(*) FROM callback_requests WHERE status = 'pending'"
        )
        print(
            f"callbackd as a subprocess daemon; {members} operators in lab-sales, "
            f"{backlog} requests due, clients talk {talk} s, "
            f"max_callbacks_per_minute = {per_minute}"
        )
        print(f"measured over {elapsed:.0f} s after a {warmup:g} s warm-up:")
        print(f"  callbacks completed: {done} ({done * 60 / elapsed:.1f} per minute)")
        print(f"  attempts started in the period by outcome: {outcomes}")
        print(f"  requests still pending at the end: {pending}")
        print(f"  Asterisk channels: mean {sum(channels) / len(channels):.0f}, max {max(channels)}")
        print(
            f"  daemon CPU: {100 * cpu / elapsed:.1f} % of one core "
            f"({cpu:.1f} s CPU in {elapsed:.0f} s)"
        )
        print(
            f"  daemon RSS: idle {idle_rss:.1f} MB, during the run max {max(rss_samples):.1f} MB, "
            f"at the end {rss_samples[-1]:.1f} MB (target <= 100 MB)"
        )
    finally:
        if db is not None:
            await db.close()
        stop_daemon(daemon, timeout=60)
        await asyncio.to_thread(pbx.stop)
        await asyncio.to_thread(postgres.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--operators", type=int, default=40)
    parser.add_argument("--backlog", type=int, default=3000, help="requests due at the start")
    parser.add_argument("--talk", type=int, default=5, help="seconds each client talks")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="measured period")
    parser.add_argument(
        "--per-minute",
        type=int,
        default=600,
        help="the daemon's max_callbacks_per_minute (default 60 would cap the run)",
    )
    args = parser.parse_args()
    asyncio.run(
        main_async(
            args.operators, args.backlog, args.talk, args.warmup, args.seconds, args.per_minute
        )
    )


if __name__ == "__main__":
    main()
