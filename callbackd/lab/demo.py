"""The demo: callbackd's main job on built-in defaults, against a real Asterisk and Postgres.

``scripts/demo`` (the README's first command) runs this after installing what is missing.
It starts a throwaway PostgreSQL and the lab Asterisk (a call centre with queue lab-sales
whose operators are busy elsewhere), runs the callbackd daemon in this process, plays a
few callers through the PBX and shows what callbackd made of them, then stops everything
it started.
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


async def play(pbx: LabAsterisk, dsn: str) -> int:
    settings = lab_settings(dsn, pbx.ami_callbackd, queue_log_path=str(pbx.queue_log_path))
    configure_logging(settings.logging.model_copy(update={"format": "auto", "mask_numbers": True}))
    db = await connect(dsn)
    driver = await LabDriver.connect(pbx.ami_lab)
    try:
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
            pbx.set_operator("default", "talk")
            async with driver.events("AgentConnect") as events:
                await driver.originate_caller("79265550102", "Мария", wait_seconds=5)
                await events.next("AgentConnect", timeout=10)
            await _wait_rows(
                db,
                "SELECT count(*) FROM callback_requests WHERE status = 'resolved_inbound'",
                1,
            )
            pbx.set_operator("default", None)

        say("callbackd is stopped. Meanwhile Oleg, 8 (903) 765-43-21, gives up after 3 s")
        await _abandon(driver, "89037654321", "Олег", 3)
        say("callbackd starts again and replays Asterisk's queue_log: Oleg is not lost")
        async with running_daemon(settings):
            await _wait_rows(db, "SELECT count(*) FROM callback_requests", 3)
        await pbx_idle(pbx)
        print_summary(await db.fetch(_SUMMARY), await db.fetch(_SEEN))
        return 0
    finally:
        await driver.close()
        await db.close()


async def pbx_idle(pbx: LabAsterisk) -> None:
    await asyncio.to_thread(pbx.wait_for_no_channels, 10.0)


async def _wait_rows(db: Any, sql: str, at_least: int) -> None:
    async def enough() -> bool:
        return (await db.fetchval(sql) or 0) >= at_least

    await wait_until(enough, timeout=15, what=sql)


_SUMMARY = """
SELECT r.id, r.number, c.name AS campaign, r.status, r.abandon_count, r.hold_seconds,
       r.caller_name, coalesce(r.status_reason, '') AS reason
FROM callback_requests r JOIN campaigns c ON c.id = r.campaign_id ORDER BY r.id
"""
_SEEN = "SELECT outcome, count(*) AS n FROM queue_abandons GROUP BY outcome ORDER BY outcome"


def print_summary(requests: Sequence[Any], seen: Sequence[Any]) -> None:
    columns = [
        "id",
        "number",
        "campaign",
        "status",
        "abandon_count",
        "hold_seconds",
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
        "\nPending requests wait for the dialer (operator first, then the client); "
        "resolved_inbound ones are never dialled.",
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
