"""Abandon capture end to end: the real callbackd daemon, the real Asterisk, the real Postgres."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from panoramisk.message import Message
from structlog.testing import capture_logs

from callbackd.ami.link import AmiLink, AmiLinkConfig, LinkState
from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from tests.tcp_proxy import SilentableProxy

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

NUMBER = "79161234567"
E164 = "+79161234567"


async def _requests(db: Any) -> list[Any]:
    rows: list[Any] = await db.fetch("SELECT * FROM callback_requests ORDER BY id")
    return rows


async def _wait_requests(db: Any, count: int, timeout: float = 10.0) -> list[Any]:
    async def enough() -> bool:
        return len(await _requests(db)) >= count

    await wait_until(enough, timeout=timeout, what=f"{count} callback request(s)")
    return await _requests(db)


def _fresh_number() -> str:
    """A valid Russian mobile number no other test uses (the lab's queue_log is shared)."""
    return f"7916{secrets.randbelow(10**7):07d}"


async def _request_for(db: Any, number: str, timeout: float = 10.0) -> Any:
    async def stored() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM callback_requests WHERE number = $1", number)
        )

    await wait_until(stored, timeout=timeout, what=f"a request for {number}")
    return await db.fetchrow("SELECT * FROM callback_requests WHERE number = $1", number)


async def _abandon(driver: LabDriver, number: str, *, wait: int, name: str | None = None) -> str:
    """A caller who waits ``wait`` seconds in lab-sales and hangs up; returns its Uniqueid."""
    async with driver.events("QueueCallerAbandon") as events:
        channel_id = await driver.originate_caller(number, name, wait_seconds=wait)
        uniqueid = f"{channel_id};2"
        await events.next(
            "QueueCallerAbandon", lambda e: e.get("Uniqueid") == uniqueid, timeout=wait + 10
        )
    return uniqueid


async def test_abandoned_caller_becomes_one_open_request(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = lab_settings(database, pbx.ami_callbackd)
    async with running_daemon(settings) as app:
        uniqueid = await _abandon(ami_driver, NUMBER, wait=3, name="Иван Петров")
        [row] = await _wait_requests(db, 1)
        verifier = app.verifier
        assert verifier is not None
        await wait_until(lambda: "lab" in verifier.results, timeout=5, what="account check")
        assert verifier.results["lab"].ok
        assert app.health()["ami"]["lab"]["state"] == "up"
    assert row["number"] == E164
    assert row["status"] == "pending"
    assert row["source"] == "abandon"
    assert (row["pbx"], row["queue"]) == ("lab", "lab-sales")
    assert row["hold_seconds"] in (2, 3)
    assert row["uniqueid"] == uniqueid
    assert row["caller_name"] == "Иван Петров"
    assert row["abandon_count"] == 1
    campaign = await db.fetchval("SELECT name FROM campaigns WHERE id = $1", row["campaign_id"])
    assert campaign == "sales"


async def test_a_waiting_callers_number_is_judged_before_they_give_up(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    """QueueCallerJoin: the number policy's verdict is ready before the abandon needs it."""
    number = _fresh_number()
    settings = lab_settings(database, pbx.ami_callbackd)
    async with running_daemon(settings) as app:
        capture = app.capture
        assert capture is not None
        async with ami_driver.events("QueueCallerJoin", "QueueCallerAbandon") as events:
            channel_id = await ami_driver.originate_caller(number, wait_seconds=3)
            waiting = f"{channel_id};2"
            await events.next("QueueCallerJoin", lambda e: e.get("Uniqueid") == waiting)
            await wait_until(
                lambda: number in capture.verdicts, timeout=5, what="the waiting caller judged"
            )
            stored = "SELECT count(*) FROM callback_requests WHERE number = $1"
            assert await db.fetchval(stored, f"+{number}") == 0  # still waiting
            await events.next(
                "QueueCallerAbandon", lambda e: e.get("Uniqueid") == waiting, timeout=15
            )
        row = await _request_for(db, f"+{number}")
    assert row["status"] == "pending"
    assert row["uniqueid"] == waiting


async def test_the_same_caller_abandoning_twice_is_one_request(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = lab_settings(database, pbx.ami_callbackd)
    async with running_daemon(settings):
        await _abandon(ami_driver, NUMBER, wait=3)
        [first] = await _wait_requests(db, 1)
        await _abandon(ami_driver, "8 (916) 123-45-67", wait=2)

        async def merged() -> bool:
            rows = await _requests(db)
            return rows[0]["abandon_count"] == 2

        await wait_until(merged, timeout=10, what="the second abandon merged")
        rows = await _requests(db)
    assert len(rows) == 1
    assert rows[0]["abandon_count"] == 2
    assert rows[0]["first_joined_at"] == first["first_joined_at"]
    assert rows[0]["last_abandon_at"] > first["last_abandon_at"]


async def test_short_hold_and_anonymous_callers_are_not_stored(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = lab_settings(database, pbx.ami_callbackd)
    with capture_logs() as logs:
        async with running_daemon(settings):
            short = await _abandon(ami_driver, NUMBER, wait=1)
            anonymous = await _abandon(ami_driver, "anonymous", wait=3)

            async def both_seen() -> bool:
                # The refusal is logged just after its row commits: wait for both.
                logged = [e for e in logs if e["event"] == "abandon not stored"]
                rows = await db.fetchval("SELECT count(*) FROM queue_abandons")
                return rows == 2 and len(logged) == 2

            await wait_until(both_seen, timeout=10, what="both abandons recorded and logged")
    assert await _requests(db) == []
    outcomes = dict(await db.fetch("SELECT uniqueid, outcome FROM queue_abandons"))
    assert outcomes == {short: "short_hold", anonymous: "withheld"}
    refusals = [e for e in logs if e["event"] == "abandon not stored"]
    assert sorted(e["reason"] for e in refusals) == ["short_hold", "withheld"]


async def test_caller_who_gets_through_later_is_resolved_by_inbound(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = lab_settings(database, pbx.ami_callbackd)
    async with running_daemon(settings):
        await _abandon(ami_driver, NUMBER, wait=3)
        await _wait_requests(db, 1)
        pbx.set_operator("default", "talk")
        async with ami_driver.events("AgentConnect") as events:
            await ami_driver.originate_caller(NUMBER, wait_seconds=30)
            connect_event = await events.next("AgentConnect", timeout=10)

        async def resolved() -> bool:
            return (await _requests(db))[0]["status"] == "resolved_inbound"

        await wait_until(resolved, timeout=10, what="request resolved by the inbound call")
    [row] = await _requests(db)
    assert row["closed_at"] is not None
    interaction = await db.fetchrow("SELECT * FROM interactions")
    assert interaction["number"] == E164
    assert interaction["operator_interface"] == connect_event["Interface"]
    assert interaction["queue"] == "lab-sales"


async def test_abandon_while_callbackd_was_stopped_is_recovered_once(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    settings = lab_settings(database, pbx.ami_callbackd, queue_log_path=str(pbx.queue_log_path))

    def replayed(logs: Sequence[Mapping[str, Any]]) -> bool:
        return any(e["event"] == "queue_log replayed" for e in logs)

    with capture_logs() as logs:
        async with running_daemon(settings):  # a first run: catches up on older lab history
            await wait_until(lambda: replayed(logs), timeout=5, what="the first replay")
    before = len(await _requests(db))
    number = _fresh_number()
    uniqueid = await _abandon(ami_driver, number, wait=3)  # nobody is listening
    with capture_logs() as logs:
        async with running_daemon(settings):
            row = await _request_for(db, f"+{number}")
            await wait_until(lambda: replayed(logs), timeout=5, what="the replay summary")
    assert row["uniqueid"] == uniqueid
    assert row["hold_seconds"] in (2, 3)
    assert row["abandon_count"] == 1
    assert len(await _requests(db)) == before + 1
    assert [e["created"] for e in logs if e["event"] == "queue_log replayed"] == [1]
    # A later start replays the same lines again: nothing new.
    with capture_logs() as logs:
        async with running_daemon(settings):
            await wait_until(lambda: replayed(logs), timeout=5, what="the third replay")
    assert len(await _requests(db)) == before + 1
    assert [e["created"] for e in logs if e["event"] == "queue_log replayed"] == [0]
    seen = await db.fetchval("SELECT count(*) FROM queue_abandons WHERE uniqueid = $1", uniqueid)
    assert seen == 1


@pytest.fixture
def own_pbx() -> Iterator[LabAsterisk]:
    """A private lab Asterisk this test may restart without disturbing the others."""
    lab = LabAsterisk()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


async def test_link_comes_back_after_asterisk_restarts(
    own_pbx: LabAsterisk, database: str, db: Any
) -> None:
    settings = lab_settings(database, own_pbx.ami_callbackd)
    async with running_daemon(settings) as app:
        link = app.links["lab"]
        await asyncio.to_thread(own_pbx.restart)
        await wait_until(
            lambda: link.stats.connects >= 2 and link.is_up,
            timeout=15,
            what="link reconnected after the restart",
        )
        driver = await LabDriver.connect(own_pbx.ami_lab)
        try:
            await _abandon(driver, NUMBER, wait=3)
        finally:
            await driver.close()
        [row] = await _wait_requests(db, 1)
    assert row["number"] == E164


async def test_half_open_link_is_detected_and_nothing_is_lost(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    account = pbx.ami_callbackd
    proxy = SilentableProxy(account.host, account.port)
    proxied = AmiAccount(account.host, await proxy.start(), account.username, account.secret)
    settings = lab_settings(database, proxied, queue_log_path=str(pbx.queue_log_path))
    during, after = _fresh_number(), _fresh_number()
    try:
        async with running_daemon(settings) as app:
            link = app.links["lab"]
            proxy.freeze()
            loop = asyncio.get_running_loop()
            frozen_at = loop.time()
            # This caller abandons while the link is silently dead.
            uniqueid = await _abandon(ami_driver, during, wait=2)
            await wait_until(
                lambda: link.health.state is not LinkState.UP or link.stats.connects >= 2,
                timeout=10,
                what="half-open link detected",
            )
            detected_after = loop.time() - frozen_at
            await wait_until(
                lambda: link.is_up and link.stats.connects >= 2,
                timeout=10,
                what="link reconnected",
            )
            missed = await _request_for(db, f"+{during}")
            # After recovery, live events flow again.
            await _abandon(ami_driver, after, wait=3)
            live = await _request_for(db, f"+{after}")
    finally:
        await proxy.stop()
    assert missed["uniqueid"] == uniqueid
    assert live["abandon_count"] == 1
    # ping interval 1 s + ping timeout 1 s, plus the 2 s caller wait that ran meanwhile
    assert detected_after < 6
    assert proxy.connections >= 2


async def test_a_raising_handler_does_not_lose_the_next_real_events(
    pbx: LabAsterisk, ami_driver: LabDriver
) -> None:
    seen: list[str] = []

    async def handler(_link: AmiLink, event: Message) -> None:
        seen.append(event["Uniqueid"])
        if len(seen) == 1:
            raise RuntimeError("a bug in one handler call")

    account = pbx.ami_callbackd
    link = AmiLink(
        AmiLinkConfig("lab", account.host, account.port, account.username, account.secret),
        handler=handler,
        events={"QueueCallerAbandon"},
    )
    task = asyncio.create_task(link.run())
    try:
        await link.wait_up(5)
        first = await _abandon(ami_driver, NUMBER, wait=1)
        second = await _abandon(ami_driver, "79161230000", wait=1)
        await wait_until(lambda: len(seen) == 2, timeout=5, what="both events handled")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [first, second]
    assert link.stats.handler_errors == 1
    assert link.health.state is LinkState.UP
