"""The callbackd AMI account against the real Asterisk: permissions checked, events filtered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from panoramisk.message import Message

from callbackd.ami.events import SUBSCRIBED_EVENTS
from callbackd.ami.link import AmiLink, AmiLinkConfig
from callbackd.ami.router import EventRouter
from callbackd.ami.verify import PROBE_ROUTE, AccountCheck, AccountVerifier
from callbackd.lab.asterisk import (
    SHIPPED_DIALPLAN_DIR,
    SHIPPED_MANAGER_SAMPLE,
    AmiAccount,
    LabAsterisk,
)
from callbackd.lab.daemon import wait_until
from callbackd.lab.driver import LabDriver

SAMPLE = (SHIPPED_DIALPLAN_DIR / SHIPPED_MANAGER_SAMPLE).read_text()


def test_shipped_event_filters_are_exactly_the_events_callbackd_handles() -> None:
    filtered = set(re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)", SAMPLE, re.M))
    assert filtered == set(SUBSCRIBED_EVENTS)


def test_shipped_account_is_least_privilege() -> None:
    assert re.search(r"^read = call,agent,user$", SAMPLE, re.M)
    assert re.search(r"^write = originate,call$", SAMPLE, re.M)
    assert re.search(r"^permit = 127\.0\.0\.1/255\.255\.255\.255$", SAMPLE, re.M)


@asynccontextmanager
async def _verified_link(account: AmiAccount) -> AsyncIterator[tuple[AmiLink, AccountVerifier]]:
    verifier = AccountVerifier(timeout=2.0)
    router = EventRouter({PROBE_ROUTE: verifier.on_probe_event})
    link = AmiLink(
        AmiLinkConfig("lab", account.host, account.port, account.username, account.secret),
        handler=router,
        events=router.event_names,
    )
    task = asyncio.create_task(link.run())
    try:
        await link.wait_up(5)
        yield link, verifier
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asterisk
async def test_the_shipped_account_passes_the_start_up_check(pbx: LabAsterisk) -> None:
    async with _verified_link(pbx.ami_callbackd) as (link, verifier):
        check = await verifier.verify(link)
    assert check == AccountCheck(pbx="lab", missing=())


@pytest.mark.asterisk
async def test_missing_read_classes_are_named(pbx: LabAsterisk) -> None:
    async with _verified_link(pbx.ami_test_account("lab-deaf")) as (link, verifier):
        check = await verifier.verify(link)
    assert not check.ok
    assert any("read class 'call'" in m for m in check.missing)
    assert any("read class 'user'" in m for m in check.missing)
    assert not any("write class" in m for m in check.missing)


@pytest.mark.asterisk
async def test_missing_originate_permission_is_named(pbx: LabAsterisk) -> None:
    async with _verified_link(pbx.ami_test_account("lab-mute")) as (link, verifier):
        check = await verifier.verify(link)
    assert check.missing == ("write class 'originate' (Originate is not allowed)",)


@pytest.mark.asterisk
async def test_the_event_filter_lets_only_callbackds_events_through(
    pbx: LabAsterisk, ami_driver: LabDriver
) -> None:
    received: dict[str, list[str]] = {"callbackd": [], "lab": []}
    user_events: dict[str, list[str]] = {"callbackd": [], "lab": []}

    def collector(who: str):
        async def collect(_link: AmiLink, event: Message) -> None:
            received[who].append(str(event["Event"]))
            if event["Event"] == "UserEvent":
                user_events[who].append(str(event.get("UserEvent")))

        return collect

    links = []
    for who, account in (("callbackd", pbx.ami_callbackd), ("lab", pbx.ami_lab)):
        link = AmiLink(
            AmiLinkConfig(who, account.host, account.port, account.username, account.secret),
            handler=collector(who),
            events=None,  # everything Asterisk sends
        )
        links.append((link, asyncio.create_task(link.run())))
    try:
        for link, _ in links:
            await link.wait_up(5)
        # Other applications' UserEvents stay out; callbackd's own names come through.
        for name in ("OtherApplication", "CallbackdFilterCheck"):
            reply = await ami_driver.action({"Action": "UserEvent", "UserEvent": name})
            assert reply.success, reply
        await wait_until(
            lambda: (
                "CallbackdFilterCheck" in user_events["callbackd"]
                and "CallbackdFilterCheck" in user_events["lab"]
            ),
            timeout=5,
            what="the UserEvents",
        )
        async with ami_driver.events("QueueCallerAbandon") as events:
            channel_id = await ami_driver.originate_caller("79161234567", wait_seconds=1)
            await events.next(
                "QueueCallerAbandon", lambda e: e.get("Uniqueid") == f"{channel_id};2"
            )
        await wait_until(
            lambda: "QueueCallerAbandon" in received["callbackd"], timeout=5, what="abandon"
        )
        await asyncio.to_thread(pbx.wait_for_no_channels, 5.0)
    finally:
        for _, task in links:
            task.cancel()
        await asyncio.gather(*(task for _, task in links), return_exceptions=True)
    assert set(received["callbackd"]) <= SUBSCRIBED_EVENTS
    assert "OtherApplication" in user_events["lab"]
    assert "OtherApplication" not in user_events["callbackd"]
    # Asterisk sends every session the OriginateResponse of every Originate; the shipped
    # filter keeps only those of callbackd's own ActionIDs (the dialer e2e tests get theirs).
    assert "OriginateResponse" in received["lab"]
    assert "OriginateResponse" not in received["callbackd"]
    assert "QueueCallerJoin" in received["lab"]
    assert "Newchannel" in received["lab"]
    # The filtered account gets a small fraction of what an unfiltered one would.
    assert len(received["callbackd"]) * 5 < len(received["lab"])
