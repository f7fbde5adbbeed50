"""The demo: callbackd's main job on built-in defaults, against a real Asterisk and Postgres.

``scripts/demo`` (the README's first command) runs this after installing what is missing.
It starts a throwaway PostgreSQL and the lab Asterisk (a call centre with queue lab-sales
and three operators), runs the callbackd daemon in this process, plays callers through the
PBX who give up while every operator is busy, then lets the operators come back and shows
callbackd calling them back: operator first, then the client, with a decline, a busy
client retried and a client who never answers; then it stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from callbackd.db.migrations import apply_migrations, default_migrations_dir, discover
from callbackd.db.pool import connect
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from callbackd.lab.postgres import LabPostgres
from callbackd.logs import configure_logging


def say(text: str) -> None:
    print(f"\n>>> {text}", flush=True)


async def _abandon(driver: LabDriver, number: str, name: str | None, wait: int) -> str:
    async with driver.events("QueueCallerAbandon") as events:
        channel_id = await driver.originate_caller(number, name, wait_seconds=wait)
        uniqueid = f"{channel_id};2"
        await events.next(
            "QueueCallerAbandon", lambda e: e.get("Uniqueid") == uniqueid, timeout=wait + 10
        )
    return uniqueid


async def _count(db: Any, sql: str) -> int:
    value: int = await db.fetchval(sql)
    return value


OPERATORS = [f"Local/op{n}@lab-operators" for n in (1, 2, 3)]


def demo_campaign() -> dict[str, Any]:
    """The demo's campaign: lab-sales in Russian, the shipped default for reaching clients
    (the default dial_template through from-callbackd, which the lab routes to its clients) with
    the campaign's caller ID, calling hours all day, short delays to watch retries."""
    return {
        "queue": "lab-sales",
        "min_hold_seconds": 2,
        "language": "ru",
        "caller_id": '"Demo Shop" <+74951234567>',
        "dial_template": "Local/{number}@from-callbackd",  # the default, as a site has it
        "operator_ring_seconds": 6,
        "client_ring_seconds": 4,
        "min_talk_seconds": 2,
        "retry": {
            "max_attempts": 3,
            "busy_delay_seconds": 4,
            "no_answer_delay_seconds": 4,
            "backoff_factor": 1.5,
        },
        "window": {
            "timezone": "UTC",
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "23:59",
        },
    }


async def _pause_all(driver: LabDriver, paused: bool) -> None:
    for interface in OPERATORS:
        await driver.action(
            {
                "Action": "QueuePause",
                "Queue": "lab-sales",
                "Interface": interface,
                "Paused": "true" if paused else "false",
            }
        )


async def play(pbx: LabAsterisk, dsn: str) -> int:
    settings = lab_settings(
        dsn,
        pbx.ami_callbackd,
        queue_log_path=str(pbx.queue_log_path),
        campaigns={"sales": demo_campaign()},
    )
    configure_logging(settings.logging.model_copy(update={"format": "auto", "mask_numbers": True}))
    db = await connect(dsn)
    driver = await LabDriver.connect(pbx.ami_lab)
    try:
        say("All operators of lab-sales are busy (paused): callers wait and some give up")
        await _pause_all(driver, True)
        say("callbackd starts: it connects to Postgres and to the PBX's AMI (least privilege)")
        async with running_daemon(settings):
            say("Caller 1, Ivan Petrov, 8 (916) 123-45-67, waits 4 s in lab-sales and hangs up")
            await _abandon(driver, "89161234567", "Иван Петров", 4)
            await _wait_rows(db, "SELECT count(*) FROM callback_requests", 1)

            say("Ivan tries again, gives up after 3 s: the same request, abandon count 2")
            await _abandon(driver, "+79161234567", "Иван Петров", 3)
            await _wait_rows(db, "SELECT sum(abandon_count) FROM callback_requests", 2)

            say("A caller with a withheld number hangs up: nothing to call back, reason logged")
            await _abandon(driver, "anonymous", None, 3)
            await _wait_rows(db, "SELECT count(*) FROM queue_abandons", 3)
            say("A caller hangs up after 1 s (dialled by mistake): ignored")
            await _abandon(driver, "79031112233", None, 1)
            await _wait_rows(db, "SELECT count(*) FROM queue_abandons", 4)

            say("Maria, +7 926 555-01-02, gives up, then calls again and an operator answers")
            await _abandon(driver, "79265550102", "Мария", 3)
            await _wait_rows(db, "SELECT count(*) FROM callback_requests", 2)
            say(
                "Maria calls again; then op3 becomes free. Live callers come first: "
                "callbackd does not take op3 while Maria waits, and op3 answers her"
            )
            pbx.set_operator("op3", "talk")
            async with driver.events("QueueCallerJoin", "AgentConnect") as events:
                await driver.originate_caller("79265550102", "Мария", wait_seconds=5)
                await events.next("QueueCallerJoin", timeout=10)
                await driver.action(
                    {
                        "Action": "QueuePause",
                        "Queue": "lab-sales",
                        "Interface": OPERATORS[2],
                        "Paused": "false",
                    }
                )
                await events.next("AgentConnect", timeout=10)
            await _wait_rows(
                db,
                "SELECT count(*) FROM callback_requests WHERE status = 'resolved_inbound'",
                1,
            )
            await _pause_all(driver, True)
            pbx.set_operator("op3", None)

        say("callbackd is stopped. Meanwhile Oleg, 8 (903) 765-43-21, gives up after 3 s")
        await _abandon(driver, "89037654321", "Олег", 3)
        say("Anna, 8 (926) 111-22-33, gives up too (her phone will never be answered)")
        await _abandon(driver, "89261112233", "Анна", 3)
        pbx.set_client("79161234567", "answer", 6)  # Ivan answers and talks
        pbx.set_client("79037654321", "busy")  # Oleg is busy at first
        pbx.set_client("79261112233", "noanswer")  # Anna never answers
        pbx.set_operator("op1", "accept", 0.5)  # presses 1 half a second into the whisper
        pbx.set_operator("op2", "decline")  # op2 is not ready and declines
        pbx.set_operator("op3", "accept", 0.5)
        say(
            "callbackd starts again, replays queue_log (Oleg and Anna are not lost) and the "
            "operators come back. It calls an operator first: the phone shows "
            "'Callback lab-sales' and the client's number, the operator hears the whisper "
            "«Обратный звонок» and presses 1 half a second in; the client's phone rings at once "
            "(through the shipped from-callbackd) showing the "
            "shop's number +7 495 123-45-67. op2 declines; Oleg is busy once; Anna never answers."
        )
        async with running_daemon(settings) as app:
            await _wait_rows(db, "SELECT count(*) FROM callback_requests", 4)
            await _pause_all(driver, False)
            await _wait_rows(
                db,
                "SELECT count(*) FROM attempts WHERE number = '+79037654321' AND outcome = 'busy'",
                1,
                timeout=120,
            )
            pbx.set_client("79037654321", "answer", 6)  # Oleg is free for the retry
            await _wait_rows(
                db,
                "SELECT count(*) FROM callback_requests WHERE status NOT IN ('pending', 'dialing')",
                4,
                timeout=180,
            )
            health = app.health()
        await pbx_idle(pbx)
        print("\n=== attempts ===")
        for row in await db.fetch(_ATTEMPTS):
            print(
                f"request {row['request_id']:<3} {row['number']:<14} "
                f"{row['operator_interface'] or '':<26} {row['outcome'] or '':<18} "
                f"{row['dial_status'] or '':<10} talked {row['talk_seconds'] or 0} s"
            )
        flow = await db.fetchrow(_OPERATOR_TIME)
        print(
            f"\noperator time per completed callback: {flow['operator_seconds']:.1f} s in all, "
            f"of which {flow['before_client']:.1f} s before the client answered "
            f"(whisper, key, client ringing); {flow['completed']} completed"
        )
        print(f"\ndialer: {health['dialer']}")
        print_summary(await db.fetch(_SUMMARY), await db.fetch(_SEEN))
        return 0
    finally:
        await driver.close()
        await db.close()


async def pbx_idle(pbx: LabAsterisk) -> None:
    await asyncio.to_thread(pbx.wait_for_no_channels, 10.0)


async def _wait_rows(db: Any, sql: str, at_least: int, timeout: float = 15) -> None:
    async def enough() -> bool:
        return (await db.fetchval(sql) or 0) >= at_least

    await wait_until(enough, timeout=timeout, what=sql)


_SUMMARY = """
SELECT r.id, r.number, c.name AS campaign, r.status, r.abandon_count, r.client_attempts,
       r.caller_name, coalesce(r.status_reason, '') AS reason
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id ORDER BY r.id
"""
_ATTEMPTS = """
SELECT request_id, number, operator_interface, outcome, dial_status, talk_seconds
FROM attempts ORDER BY created_at
"""
_OPERATOR_TIME = """
SELECT count(*) FILTER (WHERE outcome = 'completed') AS completed,
       coalesce(sum(extract(epoch FROM ended_at - operator_answered_at))
                / nullif(count(*) FILTER (WHERE outcome = 'completed'), 0), 0)::float
           AS operator_seconds,
       coalesce(avg(extract(epoch FROM client_answered_at - operator_answered_at))
                FILTER (WHERE outcome = 'completed'), 0)::float AS before_client
FROM attempts WHERE operator_answered_at IS NOT NULL
"""
_SEEN = "SELECT outcome, count(*) AS n FROM queue_abandons GROUP BY outcome ORDER BY outcome"


def print_summary(requests: Sequence[Any], seen: Sequence[Any]) -> None:
    columns = [
        "id",
        "number",
        "campaign",
        "status",
        "abandon_count",
        "client_attempts",
        "caller_name",
        "reason",
    ]
    rows = [[str(r[c]) if r[c] is not None else "" for c in columns] for r in requests]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print("\n=== callback requests in Postgres ===")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print("\n=== abandons seen, by outcome ===")
    for r in seen:
        print(f"{r['outcome']:<12} {r['n']}")
    print(
        "\ncompleted: operator and client talked; failed: retries exhausted; "
        "resolved_inbound: the caller got through by calling again and was never dialled.",
        flush=True,
    )


async def main_async() -> int:
    postgres = LabPostgres()
    pbx = LabAsterisk()
    say("Starting a throwaway PostgreSQL and the lab Asterisk 22 (queue lab-sales)")
    await asyncio.to_thread(postgres.start)
    try:
        dsn = await asyncio.to_thread(postgres.create_database, "callbackd_demo")
        conn = await connect(dsn)
        try:
            report = await apply_migrations(conn, discover(default_migrations_dir()))
            say(f"callbackd migrate: {len(report.applied)} migration(s) applied")
        finally:
            await conn.close()
        await asyncio.to_thread(pbx.start)
        try:
            return await play(pbx, dsn)
        finally:
            say("Stopping the lab Asterisk and PostgreSQL")
            await asyncio.to_thread(pbx.stop)
    finally:
        await asyncio.to_thread(postgres.destroy)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="scripts/demo", description=__doc__).parse_args(argv)
    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
