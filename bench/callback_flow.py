"""The callback call flow as operators live it: how long an operator waits for the client, and
how many callbacks a small team completes per minute.

Everything is real: the lab Asterisk 22 (its Local-channel operators and clients), a throwaway
PostgreSQL, and ``callbackd run`` as its own process, on whatever operator-first call flow the
checkout ships (the dialplan's callbackd-operator leg and the dialer). Campaign "sales" on
lab-sales with --operators operators (``Local/opN@lab-operators``), each answering at once and
pressing 1 --key-at seconds later (lab operator mode ``accept:<s>``; the lab presses again every
second after that, so a key a flow loses is pressed again). The key's DTMFBegin comes about
0.1 s after the wait (SendDTMF's quiet time before its first digit): the table shows when.

(1) Operator answered -> client channel created, --samples callbacks one after another (the
    next is made due once the previous one has ended): the operator channel's ``Newstate``
    Up (callbackd's Originate, Uniqueid ``callbackd-<uuid>``) to the ``Newchannel`` of the
    first other channel of the same call (Linkedid = that Uniqueid): the dial to the client.
(2) Throughput: a backlog of --backlog due requests, clients that answer and talk --talk s.
    Callbacks completed per minute from the first operator channel's ``Newchannel`` to the
    last completion (the request's ``closed_at``; the --backlog-th when all complete);
    operator-seconds per completed callback (every operator channel's ``Newstate`` Up to its
    ``Hangup``, summed, failed attempts included) and the part of it before the client's
    channel existed; first-contact success (requests completed by their first attempt /
    requests) and attempts per completed request (from callbackd's tables).

Every instant is the ``Timestamp`` Asterisk puts on its AMI events (timestampevents=yes), read
by a watcher of the benchmark's own, except ``closed_at`` (PostgreSQL, the same host clock).
The campaign counts a call of >= --min-talk s (default 1) as completed: a client who talks 2 s
is connected a few milliseconds after answering, so its measured talk is just under or over 2 s.
Retries wait --retry-delay s (default 5), so a failed attempt is retried within the run.

Run as root: ``.venv/bin/python -m bench.callback_flow [--samples 50] [--backlog 100]``.
``--against DIR [DIR ...]`` runs the whole benchmark once per checkout DIR, one after the
other, with that checkout's callbackd, dialplan and lab PBX (PYTHONPATH=DIR), and prints the
figures side by side: e.g. ``--against /work/main /path/to/new-flow``. A checkout older than
this benchmark starts its daemon in the current directory, where ``python -m callbackd`` finds
a ``callbackd/`` package first: run it from a directory that holds none (``cd /tmp && python
/path/to/bench/callback_flow.py --against ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OPERATOR_UNIQUEID = re.compile(
    r"callbackd-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
"""The Uniqueid callbackd gives the operator channel of an operator-first callback."""
STATE_UP = "6"
LATENCY_PREFIX = "+7916"
BACKLOG_PREFIX = "+7917"
SUMMARY_MARK = "callback_flow summary: "


# ------------------------------------------------------------------------------ pure parts


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (as
    numpy's default and statistics.quantiles(method="inclusive"))."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float | int | None]:
    """min, p50, p99, max and n of a list of seconds (None when empty)."""
    if not values:
        return {"min": None, "p50": None, "p99": None, "max": None, "n": 0}
    return {
        "min": round(min(values), 3),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


@dataclass
class OperatorCall:
    """One operator channel of callbackd's, by Asterisk's event timestamps (epoch seconds)."""

    uniqueid: str
    channel: str
    created: float
    answered: float | None = None  # Newstate Up
    answered_event: float | None = None  # UserEvent CallbackdAttempt Stage operator_answered
    first_key: float | None = None  # first DTMFBegin on either half
    client_created: float | None = None  # Newchannel of the first other channel of the call
    client_channel: str | None = None
    hungup: float | None = None

    @property
    def to_client(self) -> float | None:
        """Seconds from the operator's answer to the client's channel."""
        if self.answered is None or self.client_created is None:
            return None
        return self.client_created - self.answered

    @property
    def up_seconds(self) -> float | None:
        """Seconds the operator's channel was up (answer to hangup)."""
        if self.answered is None or self.hungup is None:
            return None
        return self.hungup - self.answered


@dataclass
class FlowEvents:
    """Pairs the AMI events of operator-first callbacks into :class:`OperatorCall` records.

    Fed every event (header names in lower case). Only calls whose operator channel was
    created while feeding are followed, so a fresh instance per phase sees that phase only.
    """

    calls: dict[str, OperatorCall] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def feed(self, event: Mapping[str, str]) -> OperatorCall | None:
        """Record one event; return the call it belongs to, if any."""
        name = event.get("event", "").lower()
        uid = event.get("uniqueid", "")
        stamp = float(event.get("timestamp") or 0)
        if name == "newchannel":
            if OPERATOR_UNIQUEID.fullmatch(uid):
                call = OperatorCall(uid, event.get("channel", ""), stamp)
                self.calls[uid] = call
                self.order.append(uid)
                return call
            linked = self.calls.get(event.get("linkedid", ""))
            if linked is None or uid.startswith(linked.uniqueid):  # the operator's ;2 half
                return None
            if linked.client_created is None:
                linked.client_created = stamp
                linked.client_channel = event.get("channel", "")
            return linked
        own = uid.split(";", 1)[0]  # DTMF may show on either half of the Local channel
        found = self.calls.get(own)
        if found is None:
            return None
        call = found
        if name == "dtmfbegin":
            if call.first_key is None:
                call.first_key = stamp
            return call
        if uid != call.uniqueid:
            return None
        if name == "newstate" and event.get("channelstate") == STATE_UP:
            if call.answered is None:
                call.answered = stamp
        elif (
            name == "userevent"
            and event.get("userevent", "").lower() == "callbackdattempt"
            and event.get("stage") == "operator_answered"
        ):
            if call.answered_event is None:
                call.answered_event = stamp
        elif name == "hangup" and call.hungup is None:
            call.hungup = stamp
        return call

    def in_order(self) -> list[OperatorCall]:
        return [self.calls[uid] for uid in self.order]


def throughput_figures(
    calls: Sequence[OperatorCall],
    completions: Sequence[float],
    *,
    requests: int,
    first_contact: int,
    attempts: int,
) -> dict[str, Any]:
    """The throughput phase's figures. ``completions`` are the completed requests' closing
    instants (epoch s); the rate runs from the first operator channel to the last of them."""
    completed = len(completions)
    start = min((c.created for c in calls), default=None)
    end = max(completions, default=None)
    span = end - start if start is not None and end is not None and end > start else None
    up = [s for c in calls if (s := c.up_seconds) is not None]
    before = [s for c in calls if (s := c.to_client) is not None]

    def per(total: float) -> float | None:
        return round(total / completed, 2) if completed else None

    return {
        "requests": requests,
        "completed": completed,
        "seconds": round(span, 1) if span is not None else None,
        "per_minute": round(completed * 60 / span, 1) if span else None,
        "operator_calls": len(calls),
        "operator_seconds_per_callback": per(sum(up)),
        "before_client_seconds_per_callback": per(sum(before)),
        "answer_to_client": distribution(before),
        "first_contact_success": round(first_contact / requests, 3) if requests else None,
        "attempts_per_completed": round(attempts / completed, 2) if completed else None,
    }


# ------------------------------------------------------------------------------ the lab run

REQUESTS = """
INSERT INTO callback_requests (campaign_id, number, source, first_joined_at)
SELECT c.id, $2 || lpad((g + $3)::text, 7, '0'), 'abandon', now()
FROM campaigns c, generate_series(1, $1) g WHERE c.name = 'sales'
RETURNING id
"""
REQUEST_STATUS = "SELECT status FROM callback_requests WHERE id = $1"
CANCEL_PENDING = """
UPDATE callback_requests SET status = 'cancelled', closed_at = now() WHERE status = 'pending'
"""
OPEN_REQUESTS = """
SELECT count(*) FROM callback_requests WHERE number LIKE $1 || '%'
AND status IN ('pending', 'dialing')
"""
COMPLETIONS = """
SELECT extract(epoch FROM closed_at)::float8 FROM callback_requests
WHERE number LIKE $1 || '%' AND status = 'completed' ORDER BY closed_at
"""
FIRST_CONTACT = """
SELECT count(*) FROM callback_requests r
JOIN LATERAL (SELECT outcome FROM attempts a WHERE a.request_id = r.id
              ORDER BY a.created_at LIMIT 1) first ON true
WHERE r.number LIKE $1 || '%' AND first.outcome = 'completed'
"""
OUTCOMES = """
SELECT coalesce(a.outcome, a.state), count(*) FROM attempts a
JOIN callback_requests r ON r.id = a.request_id
WHERE r.number LIKE $1 || '%' GROUP BY 1 ORDER BY 2 DESC
"""


def _config(dsn: str, account: Any, args: argparse.Namespace) -> str:
    from callbackd.lab.daemon import lab_config_toml

    days = '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'
    delay = args.retry_delay
    return lab_config_toml(
        dsn,
        account,
        log_level="warning",
        rest=f"""
[daemon]
max_callbacks_per_minute = {args.per_minute}
[campaigns.sales]
queue = "lab-sales"
dial_template = "Local/{{number}}@lab-clients"
operator_ring_seconds = 10
client_ring_seconds = 10
min_talk_seconds = {args.min_talk}
[campaigns.sales.retry]
busy_delay_seconds = {delay}
no_answer_delay_seconds = {delay}
congestion_delay_seconds = {delay}
unavailable_delay_seconds = {delay}
[campaigns.sales.window]
timezone = "UTC"
days = {days}
start = "00:00"
end = "23:59"
""",
    )


class Watcher:
    """The benchmark's own AMI session: every event goes to the current :class:`FlowEvents`."""

    def __init__(self) -> None:
        self.flow = FlowEvents()
        self.arrived = asyncio.Event()

    async def on_event(self, _link: Any, message: Any) -> None:
        event = {str(k).lower(): str(v) for k, v in message.items() if not isinstance(v, list)}
        self.flow.feed(event)
        self.arrived.set()

    async def wait_for(self, check: Any, timeout: float) -> Any:
        """What ``check()`` returns once it is not None, or None after ``timeout`` s (the
        caller counts what is missing: a sample without both instants, a call not ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := check()) is None and loop.time() < deadline:
            self.arrived.clear()
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await self.arrived.wait()
            except TimeoutError:
                return check()
        return found


def _bench_link(name: str, account: Any, handler: Any, events: set[str] | None) -> Any:
    """An AMI link whose ActionIDs are not callbackd's (the daemon's eventfilter lets the
    OriginateResponses of callbackd-prefixed actions in)."""
    from callbackd.ami.link import AmiLink, AmiLinkConfig

    config = AmiLinkConfig(
        name,
        account.host,
        account.port,
        account.username,
        account.secret,
        action_id_prefix=f"bench-{name}",
    )
    return AmiLink(config, handler=handler, events=events)


async def _wait_closed(db: Any, request_id: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(await db.fetchval(REQUEST_STATUS, request_id))
        if status not in ("pending", "dialing") or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def latency_phase(watcher: Watcher, db: Any, samples: int) -> dict[str, Any]:
    """One due request at a time: operator answered -> client channel created."""
    watcher.flow = FlowEvents()
    for i in range(samples):
        mark = len(watcher.flow.order)
        request_id = await db.fetchval(REQUESTS, 1, LATENCY_PREFIX, i + 1_000_000)
        call = await watcher.wait_for(
            lambda m=mark: next(
                (
                    c
                    for c in watcher.flow.in_order()[m:]
                    if c.client_created is not None or c.hungup is not None
                ),
                None,
            ),
            timeout=60,
        )
        if call is not None:  # else counted below: a sample without both instants is missed
            await watcher.wait_for(lambda c=call: c.hungup, timeout=60)
        await _wait_closed(db, request_id, 20)
        await db.execute(CANCEL_PENDING)  # a retry must not become the next sample
        await asyncio.sleep(0.5)
    calls = watcher.flow.in_order()
    to_client = [s for c in calls if (s := c.to_client) is not None]
    keys = [c.first_key - c.answered for c in calls if c.first_key and c.answered]
    key_to_client = [
        c.client_created - c.first_key for c in calls if c.client_created and c.first_key
    ]
    confirmed = [c.answered_event - c.answered for c in calls if c.answered_event and c.answered]
    return {
        "answer_to_client": distribution(to_client),
        "operator_calls": len(calls),
        "missed": samples - len(to_client),
        "answer_to_first_key": distribution(keys),
        "first_key_to_client": distribution(key_to_client),
        "newstate_to_userevent": distribution(confirmed),
        "client_channel_example": next((c.client_channel for c in calls if c.client_channel), None),
        "calls": [asdict(c) for c in calls],
    }


async def throughput_phase(
    watcher: Watcher, db: Any, backlog: int, timeout: float
) -> dict[str, Any]:
    """A backlog of due requests, worked off by the operators."""
    watcher.flow = FlowEvents()
    await db.fetch(REQUESTS, backlog, BACKLOG_PREFIX, 2_000_000)
    deadline = time.monotonic() + timeout
    while await db.fetchval(OPEN_REQUESTS, BACKLOG_PREFIX):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    calls = watcher.flow.in_order()
    # The last calls' hangups; any still missing is reported (operator_calls_not_ended)
    # and left out of the sums.
    await watcher.wait_for(
        lambda: True if all(c.hungup is not None for c in calls) else None, timeout=15
    )
    completions = [float(v) for (v,) in await db.fetch(COMPLETIONS, BACKLOG_PREFIX)]
    attempts = dict(await db.fetch(OUTCOMES, BACKLOG_PREFIX))
    figures = throughput_figures(
        calls,
        completions,
        requests=backlog,
        first_contact=int(await db.fetchval(FIRST_CONTACT, BACKLOG_PREFIX)),
        attempts=sum(attempts.values()),
    )
    figures["attempt_outcomes"] = attempts
    figures["still_open"] = int(await db.fetchval(OPEN_REQUESTS, BACKLOG_PREFIX))
    figures["operator_calls_not_ended"] = sum(1 for c in calls if c.hungup is None)
    figures["calls"] = [asdict(c) for c in calls]
    return figures


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def checkout_commit(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
    from callbackd.db.pool import connect
    from callbackd.lab.asterisk import LabAsterisk
    from callbackd.lab.daemon import CHECKOUT, spawn_daemon, stop_daemon
    from callbackd.lab.postgres import LabPostgres

    summary: dict[str, Any] = {
        "checkout": str(CHECKOUT),
        "commit": checkout_commit(CHECKOUT),
        "load_before": load_average(),
        "operators": args.operators,
        "key_at": args.key_at,
        "talk": args.talk,
        "min_talk": args.min_talk,
    }
    postgres, pbx = LabPostgres(), LabAsterisk()
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(pbx.start)
    workdir = Path(tempfile.mkdtemp(prefix="callbackd-bench-"))
    daemon: subprocess.Popen[bytes] | None = None
    db: Any = None
    link_task: asyncio.Task[None] | None = None
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "bench")
        db = await connect(dsn)
        await apply_migrations(db, discover(default_migrations_dir()))
        # AstDB directly: a fractional delay (Wait() takes one) in the lab's "accept:N".
        await asyncio.to_thread(
            pbx.cli, f"database put lab-operator default accept:{args.key_at:g}"
        )
        await asyncio.to_thread(pbx.cli, f"database put lab-client default answer:{args.talk:g}")
        wanted = {f"Local/op{n}@lab-operators" for n in range(1, args.operators + 1)}
        present = {m.interface for m in pbx.queue_members("lab-sales")}
        for interface in sorted(present - wanted):
            await asyncio.to_thread(pbx.cli, f"queue remove member {interface} from lab-sales")
        for interface in sorted(wanted - present):
            await asyncio.to_thread(pbx.cli, f"queue add member {interface} to lab-sales penalty 0")
        summary["members"] = len(pbx.queue_members("lab-sales"))
        watcher = Watcher()
        link = _bench_link("flow-watch", pbx.ami_lab, watcher.on_event, None)
        link_task = asyncio.create_task(link.run(), name="bench-flow-watch")
        await link.wait_up(5)
        config = workdir / "callbackd.toml"
        config.write_text(_config(dsn, pbx.ami_callbackd, args))
        daemon = spawn_daemon(config, workdir / "callbackd.log")
        for _ in range(100):  # the daemon has synced its campaign
            if await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'sales'"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # and its AMI link is up and verified
        if daemon.poll() is not None:
            raise RuntimeError(f"callbackd exited: {(workdir / 'callbackd.log').read_text()}")
        if args.samples:
            summary["latency"] = await latency_phase(watcher, db, args.samples)
        summary["load_between"] = load_average()
        if args.backlog:
            await asyncio.sleep(3)  # the last sample's operator is offered again
            summary["throughput"] = await throughput_phase(watcher, db, args.backlog, args.timeout)
        summary["load_after"] = load_average()
        summary["daemon_log"] = str(workdir / "callbackd.log")
        for phase in ("latency", "throughput"):  # every call's instants, for a closer look
            if phase in summary:
                calls = workdir / f"calls-{phase}.jsonl"
                lines = [json.dumps(c) + "\n" for c in summary[phase].pop("calls")]
                calls.write_text("".join(lines))
                summary[phase]["calls_file"] = str(calls)
    finally:
        if link_task is not None:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)
        if db is not None:
            await db.close()
        stop_daemon(daemon, timeout=60)
        await asyncio.to_thread(pbx.stop)
        await asyncio.to_thread(postgres.destroy)
    return summary


# ------------------------------------------------------------------------------ reporting


def _s(value: Any, unit: str = " s") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def table_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of one run's summary."""
    rows: list[tuple[str, str]] = [
        ("checkout", f"{summary['checkout']} @ {summary['commit']}"),
        ("load average (1/5/15 min) before", summary["load_before"]),
    ]
    latency = summary.get("latency")
    if latency:
        d = latency["answer_to_client"]
        rows += [
            ("(1) answered -> client channel  p50", _s(d["p50"])),
            ("(1) answered -> client channel  p99", _s(d["p99"])),
            ("(1) answered -> client channel  max", _s(d["max"])),
            ("(1) samples (missed)", f"{d['n']} ({latency['missed']})"),
            ("(1) answered -> operator's 1st key p50", _s(latency["answer_to_first_key"]["p50"])),
            ("(1) 1st key -> client channel p50", _s(latency["first_key_to_client"]["p50"])),
        ]
    through = summary.get("throughput")
    if through:
        d = through["answer_to_client"]
        rows += [
            ("(2) completed / requests", f"{through['completed']} / {through['requests']}"),
            ("(2) first Originate -> last completion", _s(through["seconds"])),
            ("(2) callbacks completed per minute", _s(through["per_minute"], "")),
            ("(2) operator-seconds per callback", _s(through["operator_seconds_per_callback"])),
            (
                "(2)   of which answered -> client channel",
                _s(through["before_client_seconds_per_callback"]),
            ),
            ("(2) answered -> client channel p50 / p99", f"{_s(d['p50'])} / {_s(d['p99'])}"),
            ("(2) first-contact success", _s(through["first_contact_success"], "")),
            ("(2) attempts per completed request", _s(through["attempts_per_completed"], "")),
            ("(2) attempt outcomes", json.dumps(through["attempt_outcomes"])),
        ]
    rows.append(("load average after", summary.get("load_after", "-")))
    return rows


def print_table(summaries: Sequence[Mapping[str, Any]]) -> None:
    columns = [dict(table_rows(s)) for s in summaries]
    names = list(dict.fromkeys(name for c in columns for name in c))
    width = max(len(n) for n in names)
    for name in names:
        cells = " | ".join(f"{c.get(name, '-'):<26}" for c in columns)
        print(f"{name:<{width}} | {cells}")


def describe(args: argparse.Namespace) -> None:
    print(
        f"callbackd as a subprocess daemon; {args.operators} operators in lab-sales who answer "
        f"and press 1 at {args.key_at:g} s (lab mode accept:{args.key_at:g}); clients answer "
        f"and talk {args.talk:g} s; min_talk_seconds = {args.min_talk}; retries after "
        f"{args.retry_delay} s; max_callbacks_per_minute = {args.per_minute}"
    )
    print(
        "instants: operator channel Newstate Up -> client Newchannel (same Linkedid), "
        "Hangup; completions: callback_requests.closed_at"
    )


def run_against(args: argparse.Namespace, argv: list[str]) -> None:
    """The whole benchmark once per checkout, in a child with PYTHONPATH=<checkout>."""
    summaries = []
    for checkout in args.against:
        # No __pycache__ written into the other checkout.
        env = dict(
            os.environ, PYTHONPATH=str(Path(checkout).resolve()), PYTHONDONTWRITEBYTECODE="1"
        )
        print(f"=== {checkout}", flush=True)
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), *argv],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        print(child.stdout, end="", flush=True)
        lines = [ln for ln in child.stdout.splitlines() if ln.startswith(SUMMARY_MARK)]
        if child.returncode != 0 or not lines:
            print(f"the run against {checkout} failed (exit {child.returncode})")
            continue
        summaries.append(json.loads(lines[-1][len(SUMMARY_MARK) :]))
    if summaries:
        print("=== side by side")
        describe(args)
        print_table(summaries)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=50, help="(1) callbacks, one at a time")
    p.add_argument("--operators", type=int, default=5)
    p.add_argument("--backlog", type=int, default=100, help="(2) requests due at once")
    p.add_argument("--talk", type=float, default=2.0, help="seconds each client talks")
    p.add_argument("--key-at", type=float, default=0.5, help="operator presses 1 after (s)")
    p.add_argument("--min-talk", type=int, default=1, help="campaign min_talk_seconds")
    p.add_argument("--retry-delay", type=int, default=5, help="campaign retry delays (s)")
    p.add_argument("--per-minute", type=int, default=600, help="max_callbacks_per_minute")
    p.add_argument("--timeout", type=float, default=1200.0, help="(2) at most (s)")
    p.add_argument(
        "--against",
        nargs="+",
        metavar="DIR",
        help="run once per checkout DIR (its callbackd, dialplan and lab) and compare",
    )
    return p


def main() -> None:
    args = parser().parse_args()
    if args.against:
        argv = sys.argv[1 : sys.argv.index("--against")]
        # The options after --against's directories, if any, belong to the runs too.
        run_against(args, argv + _after_against(sys.argv, args.against))
        return
    describe(args)
    summary = asyncio.run(main_async(args))
    print_table([summary])
    print(SUMMARY_MARK + json.dumps(summary), flush=True)


def _after_against(argv: list[str], dirs: list[str]) -> list[str]:
    start = argv.index("--against") + 1 + len(dirs)
    return argv[start:]


if __name__ == "__main__":
    main()
