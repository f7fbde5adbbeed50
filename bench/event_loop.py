"""Event loop: asyncio's own loop against uvloop, on the hops of an abandon's path.

A reactor process reads one line from a TCP peer (as the AMI link reads an event), hands it
through a queue to a consumer task, which starts a task that runs one PostgreSQL round trip
(asyncpg, a throwaway cluster) and writes a reply line (as the dialer writes its Originate).
The driver (this process, blocking sockets) times each line from send to reply, back to back
and with 10 ms of idle between lines (how abandons arrive on a quiet site). The reactor runs
once on each loop, in turn, ``--rounds`` times.

Run as root: ``.venv/bin/python -m bench.event_loop [--lines 400] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from callbackd.db.pool import connect
from callbackd.lab.postgres import LabPostgres

GAPS = (0.0, 0.010)
WARM_UP = 20


async def reactor(port: int, dsn: str) -> None:
    db = await connect(dsn)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines: asyncio.Queue[bytes] = asyncio.Queue()

    async def answer(line: bytes) -> None:
        value = await db.fetchval("SELECT $1::int + 1", int(line))
        writer.write(b"%d\n" % value)

    async def consume() -> None:
        while True:
            line = await lines.get()
            await asyncio.create_task(answer(line))

    consumer = asyncio.create_task(consume(), name="bench-consumer")
    try:
        while line := await reader.readline():
            lines.put_nowait(line.strip())
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        writer.close()
        await db.close()


def _run_reactor(loop_name: str, port: int, dsn: str) -> None:
    runners: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    runners[loop_name](reactor(port, dsn))


def measure(loop_name: str, dsn: str, count: int) -> dict[float, list[float]]:
    """Milliseconds from each line sent to its reply, per idle gap."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_run_reactor, args=(loop_name, port, dsn))
        process.start()
        server.settimeout(30)
        peer, _ = server.accept()
        peer.settimeout(10)
        replies = peer.makefile("rb")
        results: dict[float, list[float]] = {}
        try:
            for gap in GAPS:
                times = []
                for i in range(WARM_UP + count):
                    if gap:
                        time.sleep(gap)
                    started = time.perf_counter()
                    peer.sendall(b"%d\n" % i)
                    if int(replies.readline()) != i + 1:
                        raise RuntimeError("wrong reply")
                    times.append((time.perf_counter() - started) * 1000)
                results[gap] = times[WARM_UP:]
        finally:
            replies.close()
            peer.close()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cluster = LabPostgres()
    cluster.start()
    try:
        dsn = cluster.create_database("loops")
        for round_number in range(1, args.rounds + 1):
            for loop_name in ("asyncio", "uvloop"):
                for gap, times in measure(loop_name, dsn, args.lines).items():
                    q = statistics.quantiles(times, n=100, method="inclusive")
                    print(
                        f"round {round_number} {loop_name:8s} idle {gap * 1000:4.0f} ms: "
                        f"p50 {q[49]:.3f} ms  p90 {q[89]:.3f} ms  p99 {q[98]:.3f} ms"
                    )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
