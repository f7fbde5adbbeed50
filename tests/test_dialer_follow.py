"""Following a call whose outcome is unknown, while the AMI link fails (pure logic, fake link).

Against the real Asterisk this path runs in the recovery and half-open-link suites; here the
link is made to fail in the one way those cannot force on demand: it still says it is up
while every action fails at once, as a link does in the instant it is going down.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import structlog

from callbackd.ami.errors import AmiConnectionLost
from callbackd.domain.outcome import CallReport
from callbackd.services.dialer import Dialer, DialerCampaign, _Call
from callbackd.settings import Campaign


class DyingLink:
    """Says it is up; every action fails without suspending (the protocol is closed)."""

    name = "lab"

    def __init__(self) -> None:
        self.actions = 0

    async def wait_up(self, timeout: float) -> None:
        return None

    async def action(self, headers: Any, **_kwargs: Any) -> Any:
        self.actions += 1
        if self.actions > 50:
            raise RuntimeError("the dialer is spinning on a dead link")
        raise AmiConnectionLost("closed")


async def test_a_link_failing_at_once_is_retried_with_pauses_not_spun_on() -> None:
    campaign = DialerCampaign(
        id=1, name="sales", settings=Campaign(queue="lab-sales", caller_id="+15551234567")
    )
    dialer = Dialer(pool=None, links={}, boards={}, campaigns=[campaign], instance="test")
    loop = asyncio.get_running_loop()
    call = _Call(
        attempt=cast(Any, SimpleNamespace(operator_channel_id="callbackd-x", id="x")),
        campaign=campaign,
        operator="Local/op1@lab-operators",
        result=loop.create_future(),
    )
    report = CallReport(stage="bridged", dial_status="ANSWER", talk_ms=9000, hangup_source="")
    # The final report arrives while the dialer cannot ask Asterisk: only a dialer that
    # lets the event loop run ever sees it.
    loop.call_later(0.2, call.result.set_result, report)
    link = DyingLink()
    async with asyncio.timeout(5):
        outcome, got = await dialer._follow_existing(
            call, cast(Any, link), structlog.get_logger("test")
        )
    assert got == report
    assert str(outcome) == "completed"
    assert link.actions == 1  # one failed question, then a pause that the report ended
