"""Outbox delivery: commit-to-webhook latency and delivery throughput.

A throwaway PostgreSQL (real schema and triggers), the real OutboxWorker and a webhook
receiver on 127.0.0.1 that answers 200 at once.

1. Latency: requests are created one at a time; for each, the time from the committing
   INSERT returning to the signed POST arriving at the receiver (the trigger's NOTIFY wakes
   the worker; polling is every 2 s, the default, so a missed wake-up would show).
2. Throughput: one statement creates N requests (N events in one transaction); the time
   until the receiver has all N.

Run as root: ``.venv/bin/python -m bench.outbox_delivery [--latency 200] [--bulk 5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from typing import Any

from aiohttp import web

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect, create_pool
from callbackd.domain.signature import verify_signature
from callbackd.lab.postgres import LabPostgres
from callbackd.logs import configure_logging
from callbackd.services.outbox import OutboxWorker
from callbackd.settings import load_settings

SECRET = "bench-secret-0123456789abcdef"
BULK = """
INSERT INTO callback_requests (campaign_id, number, source)
SELECT 1, '+7917' || lpad(g::text, 7, '0'), 'api' FROM generate_series(1, $1) g;
"""


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.bad_signatures = 0
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(SECRET, request.headers.get("Callbackd-Signature"), body)
        except ValueError:
            self.bad_signatures += 1
        request_id = int(json.loads(body)["data"]["request_id"])
        self.arrivals.setdefault(request_id, time.perf_counter())
        self.changed.set()
        return web.Response(text="ok")

    async def wait_for(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < count:
                self.changed.clear()
                await self.changed.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def main_async(latency_n: int, bulk_n: int) -> None:
    cluster = LabPostgres()
    await asyncio.to_thread(cluster.start)
    runner: Any = None
    try:
        dsn = await asyncio.to_thread(cluster.create_database, "outbox")
        conn = await connect(dsn)
        await apply_migrations(conn, discover(default_migrations_dir()))
        await conn.execute(
            "INSERT INTO campaigns (name, pbx, queue, mode) "
            "VALUES ('sales', 'pbx', 'sales', 'operator_first')"
        )
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/hooks", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        settings = load_settings(
            None,
            env={},
            database={"dsn": dsn},
            logging={"level": "warning"},
            webhooks={
                "allow_private_targets": True,
                "endpoints": [
                    {"name": "crm", "url": f"http://127.0.0.1:{port}/hooks", "secret": SECRET}
                ],
            },
            campaigns={"sales": {"caller_id": "+15551234567"}},
        )
        configure_logging(settings.logging, stream=sys.stderr)
        pool = await create_pool(dsn, min_size=2, max_size=6)
        worker = OutboxWorker(pool, settings, {})
        task = asyncio.create_task(worker.run(), name="bench-outbox")
        await asyncio.sleep(1.0)  # LISTEN in place
        try:
            latencies = []
            for i in range(latency_n):
                expected = len(receiver.arrivals) + 1
                started = time.perf_counter()
                request_id = await conn.fetchval(
                    "INSERT INTO callback_requests (campaign_id, number, source) "
                    "VALUES (1, $1, 'api') RETURNING id",
                    f"+7916{i:07d}",
                )
                await receiver.wait_for(expected, timeout=30)
                latencies.append((receiver.arrivals[request_id] - started) * 1000)
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            print(
                f"commit -> webhook received, {latency_n} events one at a time: "
                f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(latencies):.1f} ms "
                f"(poll interval {settings.outbox.poll_interval_seconds:.0f} s)"
            )
            before = len(receiver.arrivals)
            started = time.perf_counter()
            await conn.execute(BULK, bulk_n)
            inserted = time.perf_counter()
            await receiver.wait_for(before + bulk_n, timeout=600)
            done = time.perf_counter()
            print(
                f"bulk: {bulk_n} events committed in {(inserted - started) * 1000:.0f} ms "
                f"(one INSERT with the triggers), all delivered {done - inserted:.2f} s later: "
                f"{bulk_n / (done - inserted):,.0f} webhooks/s "
                f"(batch_size {settings.outbox.batch_size})"
            )
            undelivered = await conn.fetchval(
                "SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL"
            )
            print(
                f"signature failures at the receiver: {receiver.bad_signatures}; "
                f"deliveries not recorded yet when the last POST arrived: {undelivered}"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.close()
            await conn.close()
    finally:
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(cluster.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--bulk", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main_async(args.latency, args.bulk))


if __name__ == "__main__":
    main()
