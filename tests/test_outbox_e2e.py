"""Outbox end to end: the real daemon on the lab Asterisk and Postgres, a CRM receiver and
an SMS gateway on 127.0.0.1; and SMS through the PBX's MessageSend on the real Asterisk."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

import pytest
from structlog.testing import capture_logs

from callbackd.ami.link import AmiLink, AmiLinkConfig
from callbackd.domain.signature import verify_signature
from callbackd.lab.asterisk import AmiAccount, LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon, wait_until
from callbackd.lab.driver import LabDriver
from callbackd.outbound.senders import AmiSmsSender, OutgoingMessage
from callbackd.settings import SmsAmiSender
from tests.http_peers import HttpPeer

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

SECRET = "crm-secret-0123456789abcdef"
GATEWAY_TOKEN = "gw-token-0123456789"


def _fresh_number() -> str:
    """A valid Russian mobile number no other test uses (the lab's queue_log is shared)."""
    return f"7916{secrets.randbelow(10**7):07d}"


async def _abandon(driver: LabDriver, number: str, *, wait: int) -> str:
    async with driver.events("QueueCallerAbandon") as events:
        channel_id = await driver.originate_caller(number, None, wait_seconds=wait)
        uniqueid = f"{channel_id};2"
        await events.next(
            "QueueCallerAbandon", lambda e: e.get("Uniqueid") == uniqueid, timeout=wait + 10
        )
    return uniqueid


async def test_an_abandon_reaches_the_crm_by_webhook_and_the_caller_by_sms(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = _fresh_number()
    async with HttpPeer() as crm, HttpPeer() as gateway:
        settings = lab_settings(
            database,
            pbx.ami_callbackd,
            campaigns={
                "sales": {
                    "queue": "lab-sales",
                    "min_hold_seconds": 2,
                    "initial_delay_seconds": 3600,  # this test is about the CRM side only
                    "sms": {"template": "We will call you back ({campaign})", "language": "ru"},
                }
            },
            outbox={"poll_interval_seconds": 0.5, "backoff_initial_seconds": 0.2},
            webhooks={
                "allow_private_targets": True,
                "endpoints": [{"name": "crm", "url": f"{crm.url}/hooks", "secret": SECRET}],
            },
            sms={
                "sender": "http",
                "http": {
                    "url": f"{gateway.url}/send",
                    "bearer_token": GATEWAY_TOKEN,
                    "allow_private_targets": True,
                },
            },
        )
        with capture_logs() as logs:
            async with running_daemon(settings) as app:
                await _abandon(ami_driver, number, wait=3)
                await wait_until(
                    lambda: len(crm.accepted) == 1 and len(gateway.accepted) == 1,
                    timeout=15,
                    what="the webhook and the SMS",
                )
                # the same caller gives up again: merged, no new event, no second SMS
                await _abandon(ami_driver, number, wait=3)

                async def merged() -> bool:
                    count = await db.fetchval(
                        "SELECT abandon_count FROM callback_requests WHERE number = $1",
                        f"+{number}",
                    )
                    return bool(count == 2)

                await wait_until(merged, timeout=10, what="the second abandon merged")
                await asyncio.sleep(1.0)
                assert app.health()["outbox"]["delivered"] == {"crm": 1, "sms": 1}
    [hook] = crm.accepted
    verify_signature(SECRET, hook.headers["Callbackd-Signature"], hook.body)
    document = json.loads(hook.body)
    assert document["type"] == "callback.created"
    assert document["data"]["number"] == f"+{number}"
    assert document["data"]["campaign"] == "sales"
    assert document["data"]["queue"] == "lab-sales"
    assert document["data"]["source"] == "abandon"
    [sms] = gateway.received
    assert json.loads(sms.body) == {"to": f"+{number}", "text": "We will call you back (sales)"}
    assert sms.headers["Authorization"] == f"Bearer {GATEWAY_TOKEN}"
    rendered = repr(logs)
    assert SECRET not in rendered
    assert GATEWAY_TOKEN not in rendered
    assert any(entry["event"] == "sms queued" for entry in logs)


def _link(account: AmiAccount) -> AmiLink:
    async def ignore(_link: AmiLink, _message: Any) -> None:
        return None

    return AmiLink(
        AmiLinkConfig("lab", account.host, account.port, account.username, account.secret),
        handler=ignore,
        events=set(),
    )


async def test_sms_through_the_pbx_needs_write_class_message(pbx: LabAsterisk) -> None:
    """MessageSend is in Asterisk's `message` write class: the shipped least-privilege
    account is refused; an account with it reaches the message technology (the lab PBX has
    no SIP stack, so Asterisk answers that it has no such technology). Either way the
    sender reports a failed try with Asterisk's reason, and the worker retries it."""
    config = SmsAmiSender.model_validate(
        {"pbx": "lab", "destination": "pjsip:sms-trunk/sip:{number_digits}@sms.example"}
    )
    message = OutgoingMessage(
        event_id=str(uuid.uuid4()),
        topic="sms.caller",
        payload={"number": "+79161234567", "text": "Line one\nline two: Привет"},
        created_at="2026-11-23T00:00:00+00:00",
        tries=1,
    )
    results = {}
    for name, account in (("shipped", pbx.ami_callbackd), ("full", pbx.ami_lab)):
        link = _link(account)
        task = asyncio.create_task(link.run(), name=f"test-ami-{name}")
        try:
            await link.wait_up(5)
            results[name] = await AmiSmsSender(config, {"lab": link}).send(message)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert not results["shipped"].ok
    assert "Permission denied" in (results["shipped"].error or "")
    assert not results["full"].ok
    assert "Message technology not found" in (results["full"].error or "")
    missing = await AmiSmsSender(config, {}).send(message)
    assert missing.error == "no AMI link named 'lab'"
