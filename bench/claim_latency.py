"""Claim latency: the dialer's one-statement claim against a large backlog.

100,000 pending requests across 50 campaigns in a throwaway PostgreSQL (real schema, real
``claim_for_operator`` statement the dialer runs, from callbackd/db/queries/dialer.sql: "call
now" requests first, then the ordinary order), plus the history a running
site has: 100,000 closed requests with their finished attempts (a tenth of them operator
declines), vacuumed and analysed, so the planner sees the tables as production would.

1 and then 4 claimers claim for random campaigns until each has made its share. Each claimer
is its own process with its own connection, as several callbackd instances would be; only
the claim statement is timed (client side, round trip included). Each claimed attempt is
then finished (not timed), so the in-flight indexes stay small, as in production. Each
count runs twice: flat out (throughput; on a small machine 4 claimers plus 4 backends then
queue for the CPU, and that queueing is in the latency) and paced (the statement's own
latency under concurrency): each claimer's claims then arrive at random, independent of the
other claimers', ``--paced-rate`` per second on average (exponential gaps, as requests and
free operators reach separate instances; claimers paced on one shared clock would all claim
at the same instants). Prints p50/p99 per claim, claims/s, and for comparison the round
trip of ``SELECT 1`` and the server-side execution time of one claim (EXPLAIN ANALYZE).

Run as root: ``.venv/bin/python -m bench.claim_latency [--requests 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import time
import uuid
from typing import Any

import uvloop

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
# What earlier days left behind: closed requests, each with a finished attempt.
HISTORY_REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, status, due_at, created_at,
                               closed_at, client_attempts)
SELECT (g % $2) + 1, '+7926' || lpad(g::text, 7, '0'), 'abandon', 'completed',
       now() - g * interval '20 seconds', now() - g * interval '20 seconds',
       now() - g * interval '20 seconds' + interval '5 minutes', 1
FROM generate_series(1, $1) g;
"""
HISTORY_ATTEMPTS = """
INSERT INTO attempts (id, request_id, campaign_id, number, pbx, operator_interface,
                      operator_channel_id, client_channel_id, claimed_by, state, outcome,
                      created_at, ended_at)
SELECT gen_random_uuid(), r.id, r.campaign_id, r.number, 'pbx', 'PJSIP/op-' || (r.id % 40),
       'hist-' || r.id, 'hist-' || r.id || '-client', 'bench', 'finished',
       CASE WHEN r.id % 10 = 0 THEN 'operator_declined' ELSE 'completed' END,
       r.created_at, r.closed_at
FROM callback_requests r WHERE r.status = 'completed';
"""
FINISH = """
WITH a AS (
    UPDATE attempts SET state = 'finished', outcome = 'completed', ended_at = now()
    WHERE id = $1 RETURNING request_id
)
UPDATE callback_requests SET status = 'completed', closed_at = now()
WHERE id = (SELECT request_id FROM a);
"""


def _claim_args(campaigns: int) -> tuple[Any, ...]:
    attempt_id = uuid.uuid4()
    return (
        random.randint(1, campaigns),
        attempt_id,
        "pbx",
        f"PJSIP/op-{attempt_id.hex[:12]}",
        f"callbackd-{attempt_id}",
        f"callbackd-{attempt_id}-client",
        "bench",
        True,  # not CRM-task mode: the ordinary order too
    )


async def claimer(
    dsn: str, campaigns: int, count: int, start_at: float, rate: float
) -> list[float]:
    conn = await connect(dsn)
    claim = load_queries("dialer")["claim_for_operator"]
    latencies: list[float] = []
    try:
        for _ in range(20):  # prepare and warm the statement before the clock runs
            args = _claim_args(campaigns)
            if await conn.fetchrow(claim, *args) is not None:
                await conn.execute(FINISH, args[1])
        await asyncio.sleep(max(0.0, start_at - time.time()))
        due = time.perf_counter()
        for _ in range(count):
            if rate > 0:  # paced: independent arrivals, ``rate`` per second on average
                due += random.expovariate(rate)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            args = _claim_args(campaigns)
            started = time.perf_counter()
            row = await conn.fetchrow(claim, *args)
            latencies.append((time.perf_counter() - started) * 1000)
            if row is not None:
                await conn.execute(FINISH, args[1])
    finally:
        await conn.close()
    return latencies


def _claimer_process(
    dsn: str, campaigns: int, count: int, start_at: float, rate: float
) -> list[float]:
    # The event loop callbackd's daemon runs on (callbackd/cli.py).
    return uvloop.run(claimer(dsn, campaigns, count, start_at, rate))


def run(dsn: str, campaigns: int, instances: int, claims: int, rate: float) -> dict[str, Any]:
    """``instances`` processes claim ``claims`` in all, starting together; ``rate`` > 0
    paces each at that many claims/s, 0 claims flat out."""
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # every process connected and warmed by then
    with context.Pool(instances) as pool:
        results = [
            pool.apply_async(
                _claimer_process, (dsn, campaigns, claims // instances, start_at, rate)
            )
            for _ in range(instances)
        ]
        per_process = [result.get(timeout=600) for result in results]
    elapsed = time.time() - start_at
    latencies = [value for chunk in per_process for value in chunk]
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"n": len(latencies), "p50": q[49], "p99": q[98], "per_s": len(latencies) / elapsed}


async def floor_and_server_time(dsn: str, campaigns: int) -> tuple[float, float]:
    """Median SELECT 1 round trip, and one claim's server-side execution time (ms)."""
    conn = await connect(dsn)
    try:
        trips = []
        for _ in range(500):
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            trips.append((time.perf_counter() - started) * 1000)
        claim = load_queries("dialer")["claim_for_operator"]
        executions = []
        for _ in range(50):
            transaction = conn.transaction()
            await transaction.start()
            try:
                plan = await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + claim, *_claim_args(campaigns)
                )
                executions.append(float(plan[0]["Execution Time"]))
            finally:
                await transaction.rollback()  # the claim is not kept
        return statistics.median(trips), statistics.median(executions)
    finally:
        await conn.close()


async def prepare(cluster: LabPostgres, requests: int, campaigns: int) -> str:
    dsn = await asyncio.to_thread(cluster.create_database, "claims")
    conn = await connect(dsn, command_timeout=600)
    try:
        await apply_migrations(conn, discover(default_migrations_dir()))
        await conn.execute("ALTER TABLE callback_requests DISABLE TRIGGER callbackd_request_due")
        await conn.execute(SEED, campaigns)
        await conn.execute(HISTORY_REQUESTS, requests, campaigns)
        await conn.execute(HISTORY_ATTEMPTS)
        await conn.execute(REQUESTS, requests, campaigns)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--claims", type=int, default=8_000)
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=100.0,
        help="claims/s per claimer in the paced rounds (far above a call centre's need)",
    )
    args = parser.parse_args()
    cluster = LabPostgres()
    cluster.start()
    try:
        dsn = asyncio.run(prepare(cluster, args.requests, args.campaigns))
        print(
            f"{args.requests:,} pending requests across {args.campaigns} campaigns, "
            f"{args.requests:,} closed ones with their attempts"
        )
        trip, server = asyncio.run(floor_and_server_time(dsn, args.campaigns))
        print(f"SELECT 1 round trip p50 {trip:.3f} ms; one claim executes in {server:.3f} ms")
        for rate in (0.0, args.paced_rate):
            for instances in (1, 4):
                result = run(dsn, args.campaigns, instances, args.claims, rate)
                how = f"paced, random arrivals, {rate:g}/s each" if rate else "flat out"
                print(
                    f"{instances} claimer(s), {how}: {result['n']} claims, "
                    f"p50 {result['p50']:.3f} ms, p99 {result['p99']:.3f} ms, "
                    f"{result['per_s']:,.0f} claims/s (each followed by finishing its attempt)"
                )
        print("target: p99 <= 2 ms")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
