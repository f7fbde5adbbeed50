"""Claim latency: the dialer's one-statement claim against a large backlog.

100,000 pending requests across 50 campaigns in a throwaway PostgreSQL (real schema, real
``claim_next`` statement from callbackd/db/queries/dialer.sql). 1 and then 4 concurrent
claimers (one connection each, as several callbackd instances would) claim for random
campaigns until each has made its share; each claimed attempt is finished right away so the
in-flight indexes stay small, as they are in production. Prints p50/p99 per claim and
claims/s.

Run as root: ``.venv/bin/python -m bench.claim_latency [--requests 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from typing import Any

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.db.sql import load_queries
from callbackd.lab.postgres import LabPostgres

SEED = """
INSERT INTO campaigns (name, pbx, queue, mode)
SELECT 'c' || g, 'pbx', 'q' || g, 'operator_first' FROM generate_series(1, $1) g;
"""
REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, priority, due_at, first_joined_at)
SELECT (g % $2) + 1, '+7916' || lpad(g::text, 7, '0'), 'abandon', (g % 3),
       now() - (g % 600) * interval '1 second', now() - interval '1 hour'
FROM generate_series(1, $1) g;
"""
FINISH = """
WITH a AS (
    UPDATE attempts SET state = 'finished', outcome = 'completed', ended_at = now()
    WHERE id = $1 RETURNING request_id
)
UPDATE callback_requests SET status = 'completed', closed_at = now()
WHERE id = (SELECT request_id FROM a);
"""


async def claimer(dsn: str, campaigns: int, count: int, latencies: list[float]) -> None:
    conn = await connect(dsn)
    claim = load_queries("dialer")["claim_next"]
    try:
        for _ in range(count):
            attempt_id = uuid.uuid4()
            campaign = random.randint(1, campaigns)
            started = time.perf_counter()
            row = await conn.fetchrow(
                claim,
                campaign,
                attempt_id,
                "pbx",
                f"PJSIP/op-{attempt_id.hex[:12]}",
                f"callbackd-{attempt_id}",
                f"callbackd-{attempt_id}-client",
                "bench",
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if row is not None:
                await conn.execute(FINISH, attempt_id)
    finally:
        await conn.close()


async def run(dsn: str, campaigns: int, instances: int, claims: int) -> dict[str, Any]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(claimer(dsn, campaigns, claims // instances, latencies) for _ in range(instances))
    )
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"n": len(latencies), "p50": q[49], "p99": q[98], "per_s": len(latencies) / elapsed}


async def main_async(requests: int, campaigns: int, claims: int) -> None:
    cluster = LabPostgres()
    await asyncio.to_thread(cluster.start)
    try:
        dsn = await asyncio.to_thread(cluster.create_database, "claims")
        conn = await connect(dsn)
        await apply_migrations(conn, discover(default_migrations_dir()))
        await conn.execute("ALTER TABLE callback_requests DISABLE TRIGGER callbackd_request_due")
        await conn.execute(SEED, campaigns)
        await conn.execute(REQUESTS, requests, campaigns)
        await conn.execute("ANALYZE")
        await conn.close()
        print(f"{requests:,} pending requests across {campaigns} campaigns")
        for instances in (1, 4):
            result = await run(dsn, campaigns, instances, claims)
            print(
                f"{instances} claimer(s): {result['n']} claims, p50 {result['p50']:.3f} ms, "
                f"p99 {result['p99']:.3f} ms, {result['per_s']:,.0f} claims/s "
                "(each followed by finishing its attempt)"
            )
        print("target: p99 <= 2 ms")
    finally:
        await asyncio.to_thread(cluster.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--claims", type=int, default=8_000)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.campaigns, args.claims))


if __name__ == "__main__":
    main()
