"""Reminder calls (CRM-task mode): tell an idle operator how many callbacks wait for them.

CRM-task campaigns are never dialled by themselves: the CRM assigns requests to operators
and someone clicks "call now". So requests do not rot, callbackd rings an operator who is
idle (logged in, not paused, not in a call) and has assigned requests waiting longer than
the campaign's ``reminder_after_seconds``, and the shipped ``callbackd-reminder`` context
says "you have N callback requests waiting" in the campaign's language (callbackd picks the
count's plural form: Russian has three). At most once per ``reminder_interval_seconds`` per
operator: the claim is one statement on the operator's row, so two instances never ring
one operator twice for the same reminder; the reminder's id is our ChannelId.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.errors import AmiActionFailed, AmiConnectionLost, AmiNotConnected, AmiTimeout
from callbackd.ami.link import AmiLink
from callbackd.db.models import ReminderCall
from callbackd.db.sql import load_queries
from callbackd.domain.modes import operators_to_remind
from callbackd.domain.operators import OperatorBoard
from callbackd.domain.speech import plural_form
from callbackd.services.capture import DATABASE_DOWN
from callbackd.services.dialer import DialerCampaign

_REMINDER_OUTCOMES = {3: "no_answer", 5: "busy", 8: "busy"}
REMINDER_CALLER_NAME = "Callback reminder"
"""Caller ID name of a reminder call, shown on the operator's phone with the count."""


@dataclass
class ReminderStats:
    placed: int = 0
    answered: int = 0
    heard: int = 0


class ReminderCaller:
    """Places reminder calls for every CRM-task campaign with reminders on."""

    def __init__(
        self,
        *,
        pool: Any,
        links: Mapping[str, AmiLink],
        boards: Mapping[str, OperatorBoard],
        campaigns: Sequence[DialerCampaign],
        instance: str,
        poll_interval: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._links = links
        self._boards = boards
        self._campaigns = [
            c for c in campaigns if c.settings.mode == "crm_task" and c.settings.crm.reminders
        ]
        self.instance = instance
        self._poll_interval = poll_interval
        self._clock = clock
        self._queries = load_queries("modes")
        self._ringing: dict[tuple[str, str], uuid.UUID] = {}  # (pbx, operator) -> reminder
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.stats = ReminderStats()
        self._log = structlog.get_logger("callbackd.reminders").bind(instance=instance)

    @property
    def campaigns(self) -> list[DialerCampaign]:
        return list(self._campaigns)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except DATABASE_DOWN as err:
                    self._log.error("database unavailable; reminders waiting", error=str(err))
                await asyncio.sleep(self._poll_interval)
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self) -> None:
        """Look once at every campaign; ring the operators a reminder is due for."""
        now = self._clock()
        for campaign in self._campaigns:
            link = self._links.get(campaign.pbx)
            if link is None or not link.is_up:
                continue
            board = self._boards[campaign.pbx]
            free = [m.interface for m in board.free_members(campaign.queue, now)]
            ringing = [op for (pbx, op) in self._ringing if pbx == campaign.pbx]
            operators = operators_to_remind(free, ringing)
            if not operators:
                continue
            crm = campaign.settings.crm
            rows = await self._pool.fetch(
                self._queries["reminder_candidates"],
                campaign.id,
                operators,
                timedelta(seconds=crm.reminder_after_seconds),
            )
            for row in rows:
                await self._remind(campaign, link, board, str(row["operator"]), int(row["pending"]))

    async def _remind(
        self,
        campaign: DialerCampaign,
        link: AmiLink,
        board: OperatorBoard,
        operator: str,
        pending: int,
    ) -> None:
        crm = campaign.settings.crm
        reminder_id = uuid.uuid4()
        channel_id = f"callbackd-reminder-{reminder_id}"
        row = await self._pool.fetchrow(
            self._queries["claim_reminder"],
            reminder_id,
            campaign.pbx,
            operator,
            channel_id,
            campaign.id,
            timedelta(seconds=crm.reminder_interval_seconds),
            min(pending, contract.MAX_REMINDER_COUNT),
            self.instance,
        )
        if row is None:
            return  # reminded within the interval (by us or another instance)
        reminder = ReminderCall.from_record(row)
        now = self._clock()
        board.reserve(
            campaign.queue, operator, until=now + timedelta(seconds=crm.reminder_ring_seconds + 5)
        )
        self._ringing[(campaign.pbx, operator)] = reminder.id
        self.stats.placed += 1
        log = self._log.bind(
            reminder_id=str(reminder.id), campaign=campaign.name, operator=operator
        )
        log.info("reminder call placing", pending=reminder.pending_count)
        task = asyncio.create_task(
            self._call(campaign, link, board, reminder, log), name=f"reminder-{reminder.id}"
        )
        self._tasks[reminder.id] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._log.error("reminder call task crashed", task=task.get_name(), exc_info=error)

    async def _call(
        self,
        campaign: DialerCampaign,
        link: AmiLink,
        board: OperatorBoard,
        reminder: ReminderCall,
        log: Any,
    ) -> None:
        ring = campaign.settings.crm.reminder_ring_seconds
        language = campaign.settings.language
        headers = {
            "Action": "Originate",
            "Channel": reminder.operator_interface,
            "Context": contract.REMINDER_CONTEXT,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(ring * 1000),
            # The operator's display: a reminder, not a client (no number to call back).
            "CallerID": f'"{REMINDER_CALLER_NAME} ({reminder.pending_count})" <>',
            "ChannelId": reminder.channel_id,
            "OtherChannelId": f"{reminder.channel_id};2",
            "Async": "true",
            "Variable": [
                f"{contract.VAR_REMINDER_ID}={reminder.id}",
                f"{contract.VAR_REMINDER_COUNT}={reminder.pending_count}",
                f"{contract.VAR_REMINDER_FORM}={plural_form(reminder.pending_count, language)}",
                f"{contract.VAR_LANGUAGE}={language}",
            ],
        }
        outcome = "failed"
        try:
            try:
                result = await link.action(headers, timeout=ring + 15)
            except AmiActionFailed as err:
                log.warning("reminder originate refused by Asterisk", reason=err.message)
            except (AmiNotConnected, AmiConnectionLost, AmiTimeout) as err:
                # Never sent again: at most one reminder per interval, even if it is lost.
                log.warning("reminder originate outcome unknown", error=str(err))
            else:
                response = result[-1] if isinstance(result, list) else result
                if str(response.get("response", "")).lower() == "success":
                    outcome = "answered"
                    self.stats.answered += 1
                else:
                    reason = int(str(response.get("reason", "0")) or 0)
                    outcome = _REMINDER_OUTCOMES.get(reason, "failed")
        finally:
            board.settle(
                campaign.queue,
                reminder.operator_interface,
                self._clock(),
                after=board.report_mark(),
            )
            self._ringing.pop((campaign.pbx, reminder.operator_interface), None)
            self._tasks.pop(reminder.id, None)
        try:
            await self._pool.execute(self._queries["finish_reminder"], reminder.id, outcome)
        except DATABASE_DOWN as err:
            log.error("cannot record the reminder's outcome", outcome=outcome, error=str(err))
            return
        log.info("reminder call finished", outcome=outcome)

    async def on_reminder_event(self, _link: AmiLink, message: Message) -> None:
        """UserEvent CallbackdReminder: the operator heard the count."""
        try:
            reminder_id = uuid.UUID(str(message.get(contract.HEADER_REMINDER.lower(), "")))
        except ValueError:
            return
        row = await self._pool.fetchrow(self._queries["reminder_heard"], reminder_id)
        if row is None:
            return
        self.stats.heard += 1
        self._log.info(
            "reminder heard",
            reminder_id=str(reminder_id),
            operator=row["operator_interface"],
            count=str(message.get(contract.HEADER_COUNT.lower(), "")),
        )
