"""Client-first callbacks: ring the client, then put them into the queue (or a context).

For help lines, where the callback must go out at once: the client is dialled first with
an Originate whose ChannelId we chose (the attempt's id), into the shipped
``callbackd-client-first`` context. Once the client answered (and pressed 1, with client
confirmation) they join the campaign's queue with a high ``QUEUE_PRIO``, ahead of live
callers, or go to a landing context. The attempt is a success as soon as the dialplan
reports ``queued``/``landed``; the hangup handler's report covers every other ending.

Same machinery as the operator-first dialer (claim in one statement, attempt rows with
heartbeats, the same retry policy); only the claim, the Originate, and the reading of the
outcome differ. Whether an operator must be free before dialling is a campaign option.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.link import AmiLink
from callbackd.db.models import AttemptOutcome
from callbackd.domain.modes import (
    client_first_slots,
    client_is_through,
    outcome_of_client_originate_failure,
    outcome_of_client_stage,
)
from callbackd.domain.outcome import CallReport
from callbackd.domain.window import is_open
from callbackd.services.dialer import Dialer, DialerCampaign, _Call


class ClientFirstDialer(Dialer):
    """Places client-first callbacks for every ``client_first`` campaign."""

    MODES = ("client_first",)
    ATTEMPT_MODE = "client_first"

    async def on_attempt_event(self, _link: AmiLink, message: Message) -> None:
        """UserEvent CallbackdClientFirst: the client's channel reached a stage."""
        call = self._call_for(message)
        if call is None:
            return
        stage = str(message.get("stage", ""))
        call.stage = stage
        if stage in (
            contract.ClientFirstStage.CLIENT_ANSWERED,
            contract.ClientFirstStage.QUEUED,
            contract.ClientFirstStage.LANDED,
        ):
            await self._pool.execute(
                self._queries["set_attempt_state"], call.attempt.id, "bridged", stage
            )
        self._log.info(
            "callback attempt stage",
            attempt_id=str(call.attempt.id),
            request_id=call.attempt.request_id,
            mode="client_first",
            stage=stage,
        )
        if client_is_through(stage) and not call.result.done():
            # Success is known now; the call itself may last long in the queue.
            call.result.set_result(
                CallReport(stage=stage, dial_status="", talk_ms=None, hangup_source="")
            )

    async def _release_due_callbacks(self) -> None:
        now = self._clock()
        for campaign in self._campaigns:
            link = self._links.get(campaign.pbx)
            if link is None or not link.is_up:
                continue
            if not is_open(now, campaign.settings.window):
                continue
            options = campaign.settings.client_first
            board = self._boards[campaign.pbx]
            slots = client_first_slots(
                max_concurrent=options.max_concurrent_calls,
                in_flight=sum(1 for c in self._calls.values() if c.campaign.id == campaign.id),
                require_free_operator=options.require_free_operator,
                free_operators=len(board.free_members(campaign.queue, now)),
                callers_waiting=board.callers_waiting(campaign.queue),
            )
            limiter = self._limiters[campaign.id]
            while slots > 0 and limiter.available(now) >= 1:
                if not await self._start_client_first(campaign, link, now):
                    break
                limiter.take(now)
                slots -= 1

    async def _start_client_first(
        self, campaign: DialerCampaign, link: AmiLink, now: datetime
    ) -> bool:
        attempt_id = uuid.uuid4()
        channel_id = f"callbackd-{attempt_id}"
        try:
            row = await self._pool.fetchrow(
                self._mode_queries["claim_client_first"],
                campaign.id,
                attempt_id,
                campaign.pbx,
                channel_id,
                self.instance,
            )
        except asyncpg.UniqueViolationError:
            return False  # another instance is calling this number right now
        except asyncpg.CheckViolationError:
            await self._fail_unusable_request(campaign)
            return False
        if row is None:
            return False
        await self._begin_call(row, campaign, link, self._boards[campaign.pbx], operator=None)
        return True

    def _originate(self, call: _Call) -> dict[str, Any]:
        settings = call.campaign.settings
        digits = call.campaign.dial_number(call.attempt.number)  # raises if not E.164
        channel_id = call.attempt.client_channel_id
        variables = {
            contract.VAR_ATTEMPT_ID: str(call.attempt.id),
            contract.VAR_NUMBER: digits,
            contract.VAR_TARGET_QUEUE: call.campaign.queue,
            contract.VAR_QUEUE_PRIO: str(settings.client_first.queue_priority),
            contract.VAR_CLIENT_CONFIRM: "1" if settings.client_confirm else "0",
            contract.VAR_CONFIRM_TIMEOUT: str(settings.operator_confirm_timeout_seconds),
            contract.VAR_LANGUAGE: settings.language,
        }
        if settings.client_first.landing_context:
            variables[contract.VAR_LANDING] = settings.client_first.landing_context
        if settings.client_prompt:
            variables[contract.VAR_CLIENT_PROMPT] = settings.client_prompt
        headers: dict[str, Any] = {
            "Action": "Originate",
            "Channel": settings.dial_string(digits),
            "Context": contract.CLIENT_FIRST_CONTEXT,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(settings.client_ring_seconds * 1000),
            "ChannelId": channel_id,
            "OtherChannelId": f"{channel_id};2",
            "Async": "true",
            "Variable": [f"{k}={v}" for k, v in variables.items()],
        }
        presented = settings.presented_caller_id
        # Without one the Originate sets no caller id: the route presents its own, and the
        # client never sees their own number.
        if presented is not None:
            headers["CallerID"] = presented.originate_header()
        return headers

    def _ring_seconds(self, call: _Call) -> int:
        return call.campaign.settings.client_ring_seconds

    def _outcome_of_failed_originate(self, reason: int) -> AttemptOutcome:
        return outcome_of_client_originate_failure(reason)

    async def _on_answered(self, call: _Call) -> None:
        """The client answered: the dialplan reports the stages from here on."""

    async def _await_report(
        self, call: _Call, link: AmiLink, log: Any
    ) -> tuple[AttemptOutcome, CallReport | None]:
        try:
            async with asyncio.timeout(self._max_call_seconds):
                report = await asyncio.shield(call.result)
        except TimeoutError:
            log.error("no report from the dialplan in time; reconciling")
            return await self._follow_existing(call, link, log)
        return outcome_of_client_stage(report.stage), report
