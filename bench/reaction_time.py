"""Reaction time: how soon after a chance to call back does callbackd's operator channel exist?

Everything is real: the lab Asterisk 22, a throwaway PostgreSQL, and ``callbackd run`` as its
own process (a subprocess daemon) with a TOML config whose dialer poll interval is 5 s, so a
reaction that waited for the poll would show up as seconds, not milliseconds.

(a) Operator freed. Every operator of lab-sales is busy with a call the benchmark placed
    (``Local/opN@lab-operators``, answered), and callbacks are due. The benchmark hangs one
    operator's call up; the reaction is from that call's ``Hangup`` to the ``Newchannel`` of
    callbackd's Originate to the same operator (its ChannelId starts with ``callbackd-``).
    The benchmark then gives the operator a new call of its own and hangs callbackd's up.
(b) Abandon while an operator is free. op1 is free but, with penalty 5, not rung by the queue
    for callers whose ``QUEUE_MAX_PENALTY`` is 0 (as a caller still in an entry announcement
    is not); op2/op3 are busy. Such a caller waits 2 s and hangs up: the reaction is from
    ``QueueCallerAbandon`` to the ``Newchannel`` of callbackd's Originate to op1 (capture
    stores the request, its NOTIFY wakes the dialer, which claims it and originates).

Both start and end are the ``Timestamp`` Asterisk puts on the events (timestampevents=yes),
one clock. Each path runs at low load and with background traffic: Local channels into
lab-clients that answer, wait 1 s and hang up, at --background calls/s.

The tables first hold ``--history`` (default 30,000) closed requests with their abandons,
attempts and events, vacuumed and analysed, as weeks of service leave them (as in
bench/claim_latency.py). ``--history 0`` measures empty tables: autovacuum then passes every
few dozen samples, and the statement after each pass is planned again (about 2-3 ms more);
the benchmark prints how many passes ran during path (b).

Run as root: ``.venv/bin/python -m bench.reaction_time [--samples 30] [--history 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoramisk.message import Message

from bench.ami_links import bench_link, ignore_events
from bench.background import background_call
from bench.claim_latency import HISTORY_ATTEMPTS
from callbackd.ami.link import AmiLink
from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import lab_config_toml, spawn_daemon, stop_daemon
from callbackd.lab.postgres import LabPostgres

OPERATORS = ("op1", "op2", "op3")
POLL_SECONDS = 5.0
REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, first_joined_at)
SELECT c.id, '+7917' || lpad(g::text, 7, '0'), 'abandon', now()
FROM campaigns c, generate_series(1, $1) g WHERE c.name = 'sales';
"""
CANCEL_PENDING = """
UPDATE callback_requests SET status = 'cancelled', closed_at = now() WHERE status = 'pending'
"""
# What weeks of service leave behind in the tables path (b) writes: closed requests, each with
# its abandon and a finished attempt, and their events (already fanned out). An empty table is
# analysed and vacuumed by autovacuum every ~50 changed rows, and every such pass makes every
# session plan its statements on the table again; a table of production size is not.
HISTORY_REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, status, due_at, created_at,
                               closed_at, client_attempts, pbx, queue, uniqueid)
SELECT c.id, '+7926' || lpad(g::text, 7, '0'), 'abandon', 'completed',
       now() - g * interval '60 seconds', now() - g * interval '60 seconds',
       now() - g * interval '60 seconds' + interval '5 minutes', 1, c.pbx, c.queue, 'hist-' || g
FROM campaigns c, generate_series(1, $1) g WHERE c.name = 'sales'
"""
HISTORY_ABANDONS = """
INSERT INTO queue_abandons (pbx, uniqueid, request_id, queue, number, outcome, abandoned_at)
SELECT r.pbx, r.uniqueid, r.id, r.queue, r.number, 'stored', r.created_at
FROM callback_requests r WHERE r.uniqueid LIKE 'hist-%'
"""
EVENTS_FANNED_OUT = "UPDATE outbox SET fanned_out_at = now() WHERE fanned_out_at IS NULL"
HOT_TABLES = ("callback_requests", "attempts", "outbox", "queue_abandons")
MAINTENANCE_PASSES = """
SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
FROM pg_stat_user_tables WHERE relname = ANY ($1::text[])
"""


async def seed_history(db: Any, rows: int) -> None:
    """Give the tables a history of *rows* closed requests, vacuumed and analysed."""
    async with db.transaction():
        await db.execute(HISTORY_REQUESTS, rows)
        await db.execute(HISTORY_ABANDONS)
        # No callback has completed yet: claim_latency's finished attempt per completed request.
        await db.execute(HISTORY_ATTEMPTS)
        await db.execute(EVENTS_FANNED_OUT)
    for table in HOT_TABLES:
        await db.execute(f"VACUUM ANALYZE {table}")


def _config(dsn: str, account: AmiAccount, log_level: str) -> str:
    days = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
    return lab_config_toml(
        dsn,
        account,
        log_level=log_level,
        rest=f"""
[daemon]
dialer_poll_seconds = {POLL_SECONDS}
max_callbacks_per_minute = 600
[campaigns.sales]
queue = "lab-sales"
min_hold_seconds = 1
dial_template = "Local/{{number}}@lab-clients"
operator_ring_seconds = 10
[campaigns.sales.window]
timezone = "UTC"
days = {days}
start = "00:00"
end = "23:59"
""",
    )


@dataclass
class Seen:
    """What the watcher saw, by Uniqueid, with Asterisk's timestamps."""

    # callbackd's Newchannel events: (Asterisk's timestamp, channel, caller id, uniqueid)
    ours: list[tuple[float, str, str, str]] = field(default_factory=list)
    arrival: dict[str, float] = field(default_factory=dict)  # uniqueid -> seen here (clock)
    names: dict[str, str] = field(default_factory=dict)  # benchbusy uniqueid -> channel
    hangups: dict[str, float] = field(default_factory=dict)
    abandons: dict[str, float] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_event(self, _link: AmiLink, message: Message) -> None:
        event = str(message.get("event", "")).lower()
        uid = str(message.get("uniqueid", ""))
        stamp = float(str(message.get("timestamp", "0")))
        channel = str(message.get("channel", ""))
        if event == "newchannel" and uid.startswith("callbackd-"):
            self.ours.append((stamp, channel, str(message.get("calleridnum", "")), uid))
        elif event == "newchannel" and uid.startswith("benchbusy-"):
            self.names[uid] = channel
        elif event == "hangup" and uid.startswith("benchbusy-"):
            self.hangups[uid] = stamp
        elif event == "queuecallerabandon":
            self.abandons[uid] = stamp
        self.arrival.setdefault(f"{event}:{uid}", time.time())
        self.arrived.set()

    async def wait_for(self, check: Any, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            while (found := check()) is None:
                self.arrived.clear()
                await self.arrived.wait()
        return found

    def ours_after(
        self, mark: int, operator: str, number: str | None = None
    ) -> tuple[float, str, str, str] | None:
        """callbackd's first new operator channel since ``mark`` (for ``number``)."""
        prefix = f"Local/{operator}@lab-operators"
        return next(
            (o for o in self.ours[mark:] if o[1].startswith(prefix) and number in (None, o[2])),
            None,
        )


class Bench:
    def __init__(self, pbx: LabAsterisk, seen: Seen, control: AmiLink, db: Any) -> None:
        self.pbx = pbx
        self.db = db
        self.seen = seen
        self.control = control
        self.busy: dict[str, str] = {}  # operator -> benchbusy uniqueid
        # The same latencies measured by when the events reached this process (s), to
        # tell a slow reaction from Asterisk stamping its events late under load.
        self.by_arrival: dict[str, list[float]] = {}

    async def occupy(self, operator: str) -> None:
        """Give the operator a call of the benchmark's own (answered: 'talk' mode)."""
        uid = f"benchbusy-{secrets.token_hex(8)}"
        await self.control.action(
            {
                "Action": "Originate",
                "Channel": f"Local/{operator}@lab-operators",
                "Application": "Wait",
                "Data": "3600",
                "Async": "true",
                "ChannelId": uid,
                "OtherChannelId": f"{uid};2",
            },
            as_list=False,
        )
        await self.seen.wait_for(lambda: self.seen.names.get(uid), timeout=5)
        self.busy[operator] = uid

    async def free(self, operator: str) -> float:
        """Hang up the operator's call; return when it ended (Asterisk's time)."""
        uid = self.busy.pop(operator)
        await self.control.action({"Action": "Hangup", "Channel": self.seen.names[uid]})
        return float(await self.seen.wait_for(lambda: self.seen.hangups.get(uid), timeout=5))

    async def hang_up(self, channel: str) -> None:
        with contextlib.suppress(Exception):  # it may have ended by itself already
            await self.control.action({"Action": "Hangup", "Channel": channel})

    async def operator_freed(self, samples: int) -> tuple[list[float], int]:
        latencies: list[float] = []
        missed = 0
        for i in range(samples):
            operator = OPERATORS[i % len(OPERATORS)]
            mark = len(self.seen.ours)
            uid = self.busy[operator]
            ended = await self.free(operator)
            try:
                stamp, channel, _, ours = await self.seen.wait_for(
                    lambda op=operator, m=mark: self.seen.ours_after(m, op),
                    timeout=2 * POLL_SECONDS,
                )
            except TimeoutError:
                missed += 1
                await self.occupy(operator)
                continue
            latencies.append((stamp - ended) * 1000)
            self.by_arrival.setdefault("a", []).append(
                self.seen.arrival[f"newchannel:{ours}"] - self.seen.arrival[f"hangup:{uid}"]
            )
            await self.occupy(operator)  # first busy again, then end callbackd's call
            await self.hang_up(channel)
            await asyncio.sleep(0.3)
        return latencies, missed

    async def abandon_with_free_operator(
        self, samples: int, stages: list[tuple[str, float, float]]
    ) -> tuple[list[float], int]:
        latencies: list[float] = []
        missed = 0
        for _ in range(samples):
            caller = f"benchcaller-{secrets.token_hex(8)}"
            number = f"7916{secrets.randbelow(10**7):07d}"
            mark = len(self.seen.ours)
            await self.control.action(
                {
                    "Action": "Originate",
                    "Channel": f"Local/{number}@lab-callers",
                    "Application": "Wait",
                    "Data": "2",
                    "Async": "true",
                    "ChannelId": caller,
                    "OtherChannelId": f"{caller};2",
                    "Variable": ["QUEUE_MAX_PENALTY=0"],
                },
                as_list=False,
            )
            try:
                abandoned = await self.seen.wait_for(
                    lambda c=caller: self.seen.abandons.get(f"{c};2"), timeout=10
                )
                stamp, channel, _, ours = await self.seen.wait_for(
                    lambda m=mark: self.seen.ours_after(m, "op1"),
                    timeout=2 * POLL_SECONDS,
                )
            except TimeoutError:
                missed += 1
                continue
            latencies.append((stamp - float(abandoned)) * 1000)
            self.by_arrival.setdefault("b", []).append(
                self.seen.arrival[f"newchannel:{ours}"]
                - self.seen.arrival[f"queuecallerabandon:{caller};2"]
            )
            stages.append((f"+{number}", float(abandoned), stamp))
            await self.hang_up(channel)
            await asyncio.sleep(0.5)  # the attempt ends; op1 is free again
            # What went back to pending (an operator who hung up) waits for another operator;
            # it must not take op1 in the next sample.
            await self.db.execute(CANCEL_PENDING)
        return latencies, missed


async def background(account: AmiAccount, per_second: float, stop: asyncio.Event) -> int:
    traffic = bench_link("traffic", account, ignore_events, set())
    task = asyncio.create_task(traffic.run(), name="bench-traffic-link")
    sent = 0
    try:
        await traffic.wait_up(5)
        await traffic.action({"Action": "Events", "EventMask": "off"})
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not stop.is_set():
            elapsed = loop.time() - start
            while sent < elapsed * per_second:
                sent += 1
                await traffic.action(
                    background_call(sent),
                    as_list=False,
                )
            await asyncio.sleep(0.002)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return sent


def report(latencies: list[float], missed: int) -> str:
    if len(latencies) < 2:
        return f"not enough samples ({len(latencies)}, {missed} missed)"
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"p50 {q[49]:6.2f} ms   p90 {q[89]:6.2f} ms   p99 {q[98]:6.2f} ms   "
        f"max {max(latencies):7.2f} ms   (n={len(latencies)}, missed {missed})"
    )


async def run_paths(
    bench: Bench, db: Any, samples: int, *, floor: bool
) -> dict[str, tuple[list[float], int]]:
    results: dict[str, tuple[list[float], int]] = {}
    bench.by_arrival = {}
    # (a): every operator busy, callbacks due.
    for operator in OPERATORS:
        if operator not in bench.busy:
            await bench.occupy(operator)
    await asyncio.sleep(0.5)
    await db.execute(CANCEL_PENDING)
    if not floor:  # the floor reactor only reacts to abandons
        await db.execute(REQUESTS, samples * 3)
        results["a"] = await bench.operator_freed(samples)
    # (b): op1 free but out of the callers' reach (penalty), op2/op3 busy, nothing due.
    await db.execute(CANCEL_PENDING)
    await asyncio.sleep(0.5)
    await bench.free("op1")
    await asyncio.sleep(1.0)
    stages: list[tuple[str, float, float]] = []
    passes = await db.fetchval(MAINTENANCE_PASSES, list(HOT_TABLES))
    results["b"] = await bench.abandon_with_free_operator(samples, stages)
    passes = await db.fetchval(MAINTENANCE_PASSES, list(HOT_TABLES)) - passes
    print(f"  (b) autovacuum/autoanalyze passes on {', '.join(HOT_TABLES)} meanwhile: {passes}")
    await bench.occupy("op1")
    print_stages(await stage_times(db, stages, STAGES_FLOOR if floor else STAGES_CALLBACKD))
    for path, seconds in sorted(bench.by_arrival.items()):
        print(f"  ({path}) by arrival at the benchmark: {report([s * 1000 for s in seconds], 0)}")
    return results


STAGES_CALLBACKD = (
    "SELECT extract(epoch FROM r.created_at) AS stored, "
    "       extract(epoch FROM min(a.created_at)) AS claimed "
    "FROM callback_requests r JOIN attempts a ON a.request_id = r.id "
    "WHERE r.number = $1 GROUP BY r.id ORDER BY r.id DESC LIMIT 1"
)
STAGES_FLOOR = (
    "SELECT extract(epoch FROM r.created_at) AS stored, "
    "       extract(epoch FROM a.created_at) AS claimed "
    "FROM floor_requests r JOIN floor_attempts a ON a.request_id = r.id "
    "WHERE '+' || r.number = $1 ORDER BY r.id DESC LIMIT 1"
)


async def stage_times(
    db: Any, samples: list[tuple[str, float, float]], query: str
) -> dict[str, list[float]]:
    """Where path (b)'s time goes, per sample, from the rows' own timestamps (ms): abandon ->
    the storing transaction began (request created_at), -> claim (attempt created_at), ->
    the operator channel existed."""
    stages: dict[str, list[float]] = {"capture began": [], "claimed": [], "channel": []}
    for number, abandoned, channel_at in samples:
        row = await db.fetchrow(query, number)
        if row is None:
            continue
        stored, claimed = float(row["stored"]), float(row["claimed"])
        stages["capture began"].append((stored - abandoned) * 1000)
        stages["claimed"].append((claimed - stored) * 1000)
        stages["channel"].append((channel_at - claimed) * 1000)
    return stages


def print_stages(stages: dict[str, list[float]], slowest: int = 4) -> None:
    parts = [
        f"{name} +{statistics.median(values):.2f} ms (max {max(values):.2f})"
        for name, values in stages.items()
        if values
    ]
    print("  (b) stage medians: abandon -> " + " -> ".join(parts))
    # The tail is what the target is about: where did the slowest samples spend their time?
    per_sample = list(zip(*stages.values(), strict=True))
    for sample in sorted(per_sample, key=sum, reverse=True)[:slowest]:
        split = " + ".join(f"{value:.2f}" for value in sample)
        print(f"  (b) slow sample {sum(sample):6.2f} ms = {split} ({', '.join(stages)})")


def spawn_floor(dsn: str, account: AmiAccount, log: Path) -> subprocess.Popen[bytes]:
    """The reference reactor of bench/reaction_floor.py, in place of callbackd."""
    config = {
        "dsn": dsn,
        "host": account.host,
        "port": account.port,
        "username": account.username,
        "secret": account.secret,
        "queue": "lab-sales",
        "operator": "Local/op1@lab-operators",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.reaction_floor", json.dumps(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )


async def main_async(
    samples: int, per_second: float, log_level: str, reactor: str, history: int
) -> None:
    floor = reactor == "floor"
    postgres, pbx = LabPostgres(), LabAsterisk()
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(pbx.start)
    workdir = Path(tempfile.mkdtemp(prefix="callbackd-bench-"))
    daemon: subprocess.Popen[bytes] | None = None
    links: list[asyncio.Task[None]] = []
    db = None
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "bench")
        db = await connect(dsn)
        await apply_migrations(db, discover(default_migrations_dir()))
        await asyncio.to_thread(pbx.set_operator, "default", "talk")
        await asyncio.to_thread(
            pbx.cli, "queue set penalty 5 on Local/op1@lab-operators in lab-sales"
        )
        config = workdir / "callbackd.toml"
        config.write_text(_config(dsn, pbx.ami_callbackd, log_level))
        if floor:
            daemon = spawn_floor(dsn, pbx.ami_callbackd, workdir / "callbackd.log")
        else:
            daemon = spawn_daemon(config, workdir / "callbackd.log")
        seen = Seen()
        account = pbx.ami_lab
        watcher = bench_link("watch", account, seen.on_event, None)
        control = bench_link("control", account, ignore_events, set())
        links = [asyncio.create_task(link.run()) for link in (watcher, control)]
        for link in (watcher, control):
            await link.wait_up(5)
        # Asterisk sends the watcher only what is measured, whatever the background load.
        for rule in ("Event: QueueCallerAbandon", "Uniqueid: (callbackd|benchbusy)-"):
            await watcher.action({"Action": "Filter", "Operation": "Add", "Filter": rule})
        await control.action({"Action": "Events", "EventMask": "off"})
        ready = (
            "SELECT to_regclass('floor_attempts') IS NOT NULL"
            if floor
            else "SELECT count(*) > 0 FROM campaigns WHERE name = 'sales'"
        )
        for _ in range(100):  # the daemon has synced its campaign
            if await db.fetchval(ready):
                break
            await asyncio.sleep(0.1)
        if history:
            await seed_history(db, history)
        await asyncio.sleep(2)  # and its AMI link is up and verified
        if daemon.poll() is not None:
            raise RuntimeError(f"callbackd exited: {(workdir / 'callbackd.log').read_text()}")
        bench = Bench(pbx, seen, control, db)
        low = await run_paths(bench, db, samples, floor=floor)
        stop = asyncio.Event()
        traffic = asyncio.create_task(background(account, per_second, stop), name="bench-bg")
        await asyncio.sleep(3)  # the background load reaches its steady state
        busy = await run_paths(bench, db, samples, floor=floor)
        stop.set()
        sent = await traffic
        if floor:
            print("the FLOOR reactor (bench/reaction_floor.py), not callbackd")
        else:
            print(f"callbackd as a subprocess daemon, dialer poll interval {POLL_SECONDS:g} s")
            print(f"history: {history} closed requests in the tables before the first sample")
        print(f"background: {sent} calls at {per_second:g} calls/s during the loaded phase")
        if not floor:
            print(f"(a) operator freed -> operator channel, low load:      {report(*low['a'])}")
            print(
                f"(a) operator freed -> operator channel, {per_second:g} calls/s: "
                f"{report(*busy['a'])}"
            )
        print(f"(b) abandon, op free -> operator channel, low load:     {report(*low['b'])}")
        loaded_b = report(*busy["b"])
        print(f"(b) abandon, op free -> operator channel, {per_second:g} calls/s: {loaded_b}")
        print("target: p99 <= 10 ms")
        print(f"daemon log: {workdir / 'callbackd.log'}")
    finally:
        for task in links:
            task.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        if db is not None:
            await db.close()
        stop_daemon(daemon, timeout=30)
        await asyncio.to_thread(pbx.stop)
        await asyncio.to_thread(postgres.destroy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30, help="per path and load level")
    parser.add_argument("--background", type=float, default=200.0, help="other calls/s")
    parser.add_argument("--log-level", default="warning", help="the daemon's (log kept)")
    parser.add_argument(
        "--reactor",
        choices=("callbackd", "floor"),
        default="callbackd",
        help="floor: path (b) only, with the minimal reactor of bench/reaction_floor.py",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=30_000,
        help="closed requests (with abandons, attempts, events) in the tables beforehand; "
        "0 for empty tables",
    )
    args = parser.parse_args()
    history = 0 if args.reactor == "floor" else args.history  # callbackd's tables only
    asyncio.run(main_async(args.samples, args.background, args.log_level, args.reactor, history))


if __name__ == "__main__":
    main()
