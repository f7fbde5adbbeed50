"""The dialer: operator first, then the client, one call at a time per number and operator.

Each loop, for every campaign whose calling window is open and whose PBX link is up,
highest campaign priority first (an operator several campaigns share goes to the highest
one with a due callback), the dialer releases at most (free operators - live callers
waiting) callbacks (rate-limited, so a backlog after an outage goes out gradually). For
each it claims the best due request in ONE statement that also writes the attempt with
the channel ids we chose, and only then sends the Originate. The attempt's outcome comes
from the OriginateResponse and from the shipped dialplan's hangup handler (UserEvent
CallbackdResult); the retry policy turns it into the request's next state. Requests past
their campaign's expiry are never claimed; at most once per poll interval the loop closes
them as expired, whatever the operators are doing.

Crash safety: attempts live in Postgres with the id of the instance that owns them and a
heartbeat. On start, an instance adopts its own in-flight attempts and those of instances
whose heartbeat stopped, and asks Asterisk whether each operator channel still exists:
still up -> keep tracking it; gone -> the outcome is unknown, which counts as an attempt
and is retried per policy, never at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.errors import (
    AmiActionFailed,
    AmiConnectionLost,
    AmiNotConnected,
    AmiTimeout,
)
from callbackd.ami.link import AmiLink
from callbackd.db.models import Attempt, AttemptOutcome, CallbackRequest, RequestStatus
from callbackd.db.sql import load_queries
from callbackd.domain.caller_id import operator_display_name
from callbackd.domain.numbers import dial_number
from callbackd.domain.operators import OperatorBoard, ReleaseLimiter, release_slots
from callbackd.domain.outcome import (
    CallReport,
    outcome_of_originate_failure,
    outcome_of_report,
)
from callbackd.domain.retry import (
    PAST_EXPIRY,
    Completed,
    Expired,
    Failed,
    RequestFacts,
    Retry,
    after_attempt,
)
from callbackd.domain.window import is_open
from callbackd.services.capture import DATABASE_DOWN, ClaimOffer
from callbackd.settings import Campaign


@dataclass(frozen=True)
class DialerCampaign:
    """A campaign as the dialer needs it: its row id and its validated settings."""

    id: int
    name: str
    settings: Campaign
    region: str = "US"
    """phone.default_region: what a ``national`` dial_number_format is relative to."""

    def dial_number(self, e164: str) -> str:
        """The client's number as dialled (dial_number_format); ValueError if not E.164."""
        return dial_number(e164, self.settings.dial_number_format, self.region)

    @property
    def pbx(self) -> str:
        return self.settings.pbx

    @property
    def queue(self) -> str:
        return self.settings.queue

    @property
    def dial_prefix(self) -> str:
        return self.settings.dial_template.split("{number}", 1)[0]

    @property
    def dial_suffix(self) -> str:
        return self.settings.dial_template.split("{number}", 1)[1]


FOLLOW_RETRY_SECONDS = 0.5
"""First pause before asking Asterisk again about a call whose outcome is unknown."""
FOLLOW_RETRY_MAX_SECONDS = 10.0


@dataclass
class _Call:
    """One attempt this instance is responsible for, while it is in flight."""

    attempt: Attempt
    campaign: DialerCampaign
    operator: str | None
    result: asyncio.Future[CallReport]
    stage: str | None = None
    ended_mark: int | None = None
    """The board's report mark when the call's final report arrived (see OperatorBoard.settle)."""


@dataclass
class DialerStats:
    claimed: int = 0
    originated: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    adopted: int = 0


def default_instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Dialer:
    """Places callbacks for every dialing campaign; see the module docstring."""

    MODES: tuple[str, ...] = ("operator_first", "crm_task")
    """Campaign modes this dialer serves (crm_task: only requests asked to be called now)."""
    ATTEMPT_MODE: str = "operator_first"
    """The attempts (attempts.mode) this dialer places and adopts after a crash."""

    def __init__(
        self,
        *,
        pool: Any,
        links: Mapping[str, AmiLink],
        boards: Mapping[str, OperatorBoard],
        campaigns: Sequence[DialerCampaign],
        instance: str,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        orphan_after: float = 20.0,
        max_starts_per_minute: int = 60,
        max_call_seconds: float = 4 * 3600,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._links = links
        self._boards = boards
        # Highest campaign priority first (ties in configuration order): every pass offers
        # a free operator shared by several campaigns' queues to the highest one first.
        self._campaigns = sorted(
            (c for c in campaigns if c.settings.mode in self.MODES),
            key=lambda c: -c.settings.priority,
        )
        self._by_id = {c.id: c for c in self._campaigns}
        self.instance = instance
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._orphan_after = orphan_after
        self._max_call_seconds = max_call_seconds
        self._clock = clock
        # A burst of at most 10 at once, then the per-minute rate: a backlog after an
        # outage is released gradually instead of ringing every operator at once.
        self._limiters = {
            c.id: ReleaseLimiter(
                capacity=min(10, max_starts_per_minute), per_minute=max_starts_per_minute
            )
            for c in self._campaigns
        }
        self._wake = asyncio.Event()
        self._calls: dict[uuid.UUID, _Call] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._claiming = True
        self._next_expiry_sweep = 0.0
        self._queries = load_queries("dialer")
        self._mode_queries = load_queries("modes")
        self.stats = DialerStats()
        self._log = structlog.get_logger("callbackd.dialer").bind(instance=instance)

    # -- wiring --------------------------------------------------------------------------------
    def wake(self) -> None:
        """Something changed (operator freed, request due, call ended): look again now."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    async def on_attempt_event(self, _link: AmiLink, message: Message) -> None:
        """UserEvent CallbackdAttempt: the shipped dialplan reached a stage."""
        call = self._call_for(message)
        if call is None:
            return
        stage = str(message.get("stage", ""))
        call.stage = stage
        states: dict[str, str] = {
            contract.Stage.OPERATOR_ANSWERED: "operator_answered",
            contract.Stage.CLIENT_DIALING: "client_ringing",
            contract.Stage.CLIENT_ANSWERED: "bridged",
            contract.Stage.CLIENT_CONFIRMED: "bridged",
        }
        state = states.get(stage)
        if state is not None:
            await self._pool.execute(
                self._queries["set_attempt_state"], call.attempt.id, state, stage
            )
        self._log.info(
            "callback attempt stage",
            attempt_id=str(call.attempt.id),
            request_id=call.attempt.request_id,
            stage=stage,
        )

    async def on_result_event(self, _link: AmiLink, message: Message) -> None:
        """UserEvent CallbackdResult: the operator channel hung up; the final report."""
        call = self._call_for(message)
        if call is None or call.result.done():
            return
        talk = str(message.get(contract.HEADER_TALK_TIME_MS.lower(), "")).strip()
        # Device reports that follow this event in the stream postdate the call's end.
        call.ended_mark = self._boards[call.campaign.pbx].report_mark()
        call.result.set_result(
            CallReport(
                stage=str(message.get("stage", "")),
                dial_status=str(message.get("dialstatus", "")),
                talk_ms=int(talk) if talk.isdigit() else None,
                hangup_source=str(message.get("hangupsource", "")),
            )
        )

    def _call_for(self, message: Message) -> _Call | None:
        try:
            attempt_id = uuid.UUID(str(message.get("attempt", "")))
        except ValueError:
            return None
        return self._calls.get(attempt_id)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        await self._pool.execute(
            self._queries["register_instance"], self.instance, socket.gethostname(), os.getpid()
        )
        heartbeat = asyncio.create_task(self._heartbeat(), name="dialer-heartbeat")
        try:
            await self._adopt_orphans()
            while True:
                self._wake.clear()
                if self._claiming:
                    try:
                        await self._expire_stale_requests()
                        await self._release_due_callbacks()
                    except DATABASE_DOWN as err:
                        self._log.error("database unavailable; dialer waiting", error=str(err))
                # Polling is the guarantee; a wake-up only comes sooner.
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                # that races a wake-up, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._wait_seconds()):
                        await self._wake.wait()
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._cancel_calls()

    def _wait_seconds(self) -> float:
        """Until the next poll, or sooner when an operator's hold runs out (no event
        announces that)."""
        now = self._clock()
        ends = [end for board in self._boards.values() if (end := board.next_hold_end(now))]
        if not ends:
            return self._poll_interval
        return min(self._poll_interval, (min(ends) - now).total_seconds() + 0.001)

    async def drain(self, deadline: float) -> int:
        """Stop claiming; let live calls finish within ``deadline`` s; return those left."""
        self._claiming = False
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=deadline)
        left = [call for call in self._calls.values()]
        for call in left:
            self._log.warning(
                "callback left in flight at shutdown; the next start reconciles it",
                attempt_id=str(call.attempt.id),
                request_id=call.attempt.request_id,
            )
        return len(left)

    async def _expire_stale_requests(self) -> None:
        """Close the pending requests of this dialer's campaigns that outlived their expiry
        (the claims skip them already), at most once per poll interval: whether an operator
        is free or not, and whatever the calling window, the request gets status expired
        and its webhook."""
        now = asyncio.get_running_loop().time()
        if now < self._next_expiry_sweep or not self._campaigns:
            return
        self._next_expiry_sweep = now + self._poll_interval
        rows = await self._pool.fetch(
            self._queries["expire_requests"], [c.id for c in self._campaigns]
        )
        for row in rows:
            campaign = self._by_id.get(row["campaign_id"])
            self._log.info(
                "callback request expired",
                request_id=row["id"],
                status=str(RequestStatus.EXPIRED),
                reason=PAST_EXPIRY,
                campaign=campaign.name if campaign else None,
                number=row["number"],
                created_at=row["created_at"].isoformat(),
            )

    async def _release_due_callbacks(self) -> None:
        now = self._clock()
        for campaign in self._campaigns:
            link = self._links.get(campaign.pbx)
            if link is None or not link.is_up:
                continue
            if not is_open(now, campaign.settings.window):
                continue
            board = self._boards[campaign.pbx]
            free = self._free_operators(campaign, board, now)
            slots = await self._release_slots(campaign, board, len(free))
            # Nothing due for one operator may still be something for the next (an operator
            # who just declined a request is not offered it again), so try each free one.
            for operator in free:
                if slots <= 0 or not self._limiters[campaign.id].available(now) >= 1:
                    break
                if await self._start_one(campaign, link, board, operator, now):
                    self._limiters[campaign.id].take(now)
                    slots -= 1

    def _free_operators(
        self, campaign: DialerCampaign, board: OperatorBoard, now: datetime
    ) -> list[str]:
        """The campaign's queue members free now and not in a call of this dialer's."""
        busy = {c.operator for c in self._calls.values() if c.campaign.pbx == campaign.pbx}
        return [
            m.interface for m in board.free_members(campaign.queue, now) if m.interface not in busy
        ]

    # -- the abandon fast lane (capture claims in its own round trip) -----------------------
    def offer_operator(self, campaign_id: int) -> ClaimOffer | None:
        """A free operator for the request an abandon is about to store, or None.

        The same checks as a pass of the loop (claiming, link up, window open, rate, live
        callers first), for one campaign. The operator is held on the board until
        :meth:`take_offer` settles it, so the loop does not offer it twice.
        """
        campaign = self._by_id.get(campaign_id)
        if (
            campaign is None
            or not self._claiming
            or campaign.settings.mode != "operator_first"
            or campaign.settings.interleave_by_join_time  # needs a query: the loop decides
        ):
            return None
        now = self._clock()
        link = self._links.get(campaign.pbx)
        if link is None or not link.is_up or not is_open(now, campaign.settings.window):
            return None
        if self._limiters[campaign.id].available(now) < 1:
            return None
        board = self._boards[campaign.pbx]
        free = self._free_operators(campaign, board, now)
        if release_slots(len(free), board.callers_waiting(campaign.queue)) <= 0:
            return None
        # An operator a higher-priority campaign shares is left to the loop, which offers
        # it to that campaign's due callbacks first.
        higher = self._devices_of_higher_campaigns(campaign, board)
        devices = {m.interface: m.device for m in board.members(campaign.queue)}
        operator = next((i for i in free if devices.get(i, i) not in higher), None)
        if operator is None:
            return None
        ring = campaign.settings.operator_ring_seconds
        board.reserve(campaign.queue, operator, until=now + timedelta(seconds=ring + 5))
        return self._new_offer(campaign, operator)

    def _devices_of_higher_campaigns(
        self, campaign: DialerCampaign, board: OperatorBoard
    ) -> set[str]:
        """The phones of the members of this PBX's campaigns that rank above *campaign*."""
        return {
            member.device
            for other in self._campaigns
            if other.pbx == campaign.pbx and other.settings.priority > campaign.settings.priority
            for member in board.members(other.queue)
        }

    async def take_offer(self, offer: ClaimOffer, result: Mapping[str, Any] | None) -> None:
        """Settle an offer with what capture's statement returned (None: it did not run)."""
        campaign = self._by_id[offer.campaign_id]
        board = self._boards[campaign.pbx]
        link = self._links.get(campaign.pbx)
        now = self._clock()
        refused = result.get("claim_refused") if result is not None else None
        claim = result.get("claim") if result is not None else None
        if refused is not None:
            board.release(campaign.queue, offer.operator)
            if refused.get("sqlstate") == asyncpg.CheckViolationError.sqlstate:
                await self._fail_unusable_request(campaign)
            else:
                self._claim_refused(campaign, board, offer.operator, refused.get("constraint"), now)
            return
        if claim is None or link is None:
            board.release(campaign.queue, offer.operator)
            self.wake()  # nothing due for this operator: the loop looks at every request
            return
        self._limiters[campaign.id].take(now)
        await self._begin_call(claim, campaign, link, board, operator=offer.operator)

    def _claim_refused(
        self,
        campaign: DialerCampaign,
        board: OperatorBoard,
        operator: str,
        constraint: str | None,
        now: datetime,
    ) -> None:
        """Another instance is calling this operator (or this number) right now."""
        self._log.info(
            "claim refused: a call is already in flight; operator held back 5 s",
            campaign=campaign.name,
            operator=operator,
            constraint=constraint,
        )
        board.reserve(campaign.queue, operator, until=now + timedelta(seconds=5))

    async def _release_slots(
        self, campaign: DialerCampaign, board: OperatorBoard, free: int
    ) -> int:
        """Live callers first; with the campaign's interleave option, by original join time."""
        waiting = board.callers_waiting(campaign.queue)
        slots = release_slots(free, waiting)
        if slots > 0 or free == 0 or not campaign.settings.interleave_by_join_time:
            return slots
        head = await self._pool.fetchval(self._queries["next_due_joined"], campaign.id)
        return release_slots(
            free,
            waiting,
            interleave=True,
            oldest_callback_joined=head,
            oldest_caller_joined=board.oldest_caller_joined(campaign.queue),
        )

    async def _start_one(
        self,
        campaign: DialerCampaign,
        link: AmiLink,
        board: OperatorBoard,
        operator: str,
        now: datetime,
    ) -> bool:
        """Claim the best due request for this operator and start the call; False if none."""
        try:
            row = await self._claim_for_operator(campaign, self._new_offer(campaign, operator))
        except asyncpg.UniqueViolationError as err:
            self._claim_refused(
                campaign, board, operator, getattr(err, "constraint_name", None), now
            )
            return False
        except asyncpg.CheckViolationError:
            await self._fail_unusable_request(campaign)
            return False
        if row is None:
            return False  # nothing due for this operator
        ring = campaign.settings.operator_ring_seconds
        board.reserve(campaign.queue, operator, until=now + timedelta(seconds=ring + 5))
        await self._begin_call(row, campaign, link, board, operator=operator)
        return True

    async def _fail_unusable_request(self, campaign: DialerCampaign) -> None:
        """A number that is not E.164 got into the table by hand: it is never dialled."""
        bad = await self._pool.fetchrow(
            self._queries["fail_unusable_request"], campaign.id, "invalid_number"
        )
        if bad is not None:
            self._log.error(
                "callback request failed: its number is not E.164 and is never dialled",
                request_id=bad["id"],
                status="failed",
                number=bad["number"],
            )
            self.wake()  # look again at once: the next request may be fine

    async def _begin_call(
        self,
        row: Any,
        campaign: DialerCampaign,
        link: AmiLink,
        board: OperatorBoard,
        *,
        operator: str | None,
    ) -> None:
        """A claim's row (request + attempt) becomes a tracked call placed by its own task."""
        attempt = Attempt.model_validate(row["attempt"])
        self.stats.claimed += 1
        call = _Call(
            attempt=attempt,
            campaign=campaign,
            operator=operator,
            result=asyncio.get_running_loop().create_future(),
        )
        self._calls[attempt.id] = call
        self._track(attempt.id, self._place_call(call, link, board))
        # The call's task sends its Originate now; the log line (a fraction of a millisecond
        # to render) follows it instead of delaying it.
        await asyncio.sleep(0)
        request = CallbackRequest.model_validate(row["request"])  # for the log line only
        self._log.info(
            "callback request dialing",
            request_id=request.id,
            attempt_id=str(attempt.id),
            status=str(request.status),
            mode=self.ATTEMPT_MODE,
            campaign=campaign.name,
            queue=campaign.queue,
            number=request.number,
            operator=operator,
            client_attempts=request.client_attempts,
        )

    def _new_offer(self, campaign: DialerCampaign, operator: str) -> ClaimOffer:
        """A fresh attempt id for this operator; the channel ids follow from it."""
        return ClaimOffer(
            campaign_id=campaign.id,
            operator=operator,
            attempt_id=uuid.uuid4(),
            instance=self.instance,
        )

    async def _claim_for_operator(self, campaign: DialerCampaign, offer: ClaimOffer) -> Any:
        """ "Call now" requests first, then (not in CRM-task mode) the ordinary order: one
        statement, one round trip."""
        return await self._pool.fetchrow(
            self._queries["claim_for_operator"],
            campaign.id,
            offer.attempt_id,
            campaign.pbx,
            offer.operator,
            offer.operator_channel_id,
            offer.client_channel_id,
            offer.instance,
            campaign.settings.mode != "crm_task",
        )

    def _track(self, attempt_id: uuid.UUID, work: Coroutine[Any, Any, None]) -> None:
        """Every call runs as a named task the dialer owns; a crash in one is logged."""
        task = asyncio.create_task(work, name=f"attempt-{attempt_id}")
        self._tasks[attempt_id] = task
        task.add_done_callback(self._call_task_done)

    def _call_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._log.error(
                "call task crashed; its attempt stays in flight until reconciled",
                task=task.get_name(),
                exc_info=error,
            )

    # -- one call ------------------------------------------------------------------------------
    def _originate(self, call: _Call) -> dict[str, Any]:
        settings = call.campaign.settings
        number = call.campaign.dial_number(call.attempt.number)  # raises on anything not E.164
        channel_id = call.attempt.operator_channel_id
        presented = settings.presented_caller_id
        variables = {
            f"__{contract.VAR_ATTEMPT_ID}": str(call.attempt.id),
            contract.VAR_NUMBER: number,
            contract.VAR_DIAL_PREFIX: call.campaign.dial_prefix,
            contract.VAR_DIAL_SUFFIX: call.campaign.dial_suffix,
            contract.VAR_OPERATOR_CONFIRM: "1" if settings.operator_confirm else "0",
            contract.VAR_CLIENT_RING: str(settings.client_ring_seconds),
            contract.VAR_CLIENT_CONFIRM: "1" if settings.client_confirm else "0",
            contract.VAR_CONFIRM_TIMEOUT: str(settings.operator_confirm_timeout_seconds),
            contract.VAR_LANGUAGE: settings.language,
            contract.VAR_ANNOUNCE_NUMBER: settings.announce_number,
        }
        # Empty values reach the dialplan as "clear the caller id": never the client's own.
        variables[contract.VAR_CLIENT_CALLERID] = presented.number if presented else ""
        variables[contract.VAR_CLIENT_CALLERNAME] = presented.name if presented else ""
        for variable, sound in (
            (contract.VAR_ANNOUNCE, settings.announce),
            (contract.VAR_OPERATOR_PROMPT, settings.operator_prompt),
            (contract.VAR_CLIENT_PROMPT, settings.client_prompt),
        ):
            if sound:
                variables[variable] = sound
        # The operator's phone shows the client and the queue (caller id and, set by
        # Originate too, connected line), so nobody has to listen to the digits.
        display = operator_display_name(call.campaign.queue)
        return {
            "Action": "Originate",
            "Channel": call.operator or "",
            "Context": contract.OPERATOR_CONTEXT,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(settings.operator_ring_seconds * 1000),
            "CallerID": f'"{display}" <{number}>',
            "ChannelId": channel_id,
            "OtherChannelId": f"{channel_id};2",
            "Async": "true",
            "Variable": [f"{k}={v}" for k, v in variables.items()],
        }

    async def _place_call(self, call: _Call, link: AmiLink, board: OperatorBoard) -> None:
        log = self._log.bind(
            attempt_id=str(call.attempt.id),
            request_id=call.attempt.request_id,
            queue=call.campaign.queue,
            operator=call.operator,
        )
        report: CallReport | None = None
        outcome: AttemptOutcome
        try:
            headers = self._originate(call)
        except ValueError:
            log.error("refusing to dial a number that is not E.164", number=call.attempt.number)
            if call.operator is not None:
                board.release(call.campaign.queue, call.operator)
            outcome = AttemptOutcome.FAILED
        else:
            try:
                outcome, report = await self._originate_and_follow(call, link, headers, log)
            finally:
                self._settle(call, board)
        await self._finish(call, outcome, report, log)

    def _settle(self, call: _Call, board: OperatorBoard) -> None:
        """The call is over: its operator is offered again once the board is fresh."""
        if call.operator is None:
            return
        # Without the final report's mark (an Originate that failed, a reconciliation),
        # only reports from now on count: the safe side.
        after = call.ended_mark if call.ended_mark is not None else board.report_mark()
        board.settle(call.campaign.queue, call.operator, self._clock(), after=after)

    async def _originate_and_follow(
        self, call: _Call, link: AmiLink, headers: dict[str, Any], log: Any
    ) -> tuple[AttemptOutcome, CallReport | None]:
        ring = self._ring_seconds(call)
        try:
            result = await link.action(headers, timeout=ring + 15)
        except AmiActionFailed as err:
            log.warning("originate refused by Asterisk", reason=err.message)
            return AttemptOutcome.FAILED, None
        except (AmiNotConnected, AmiConnectionLost, AmiTimeout) as err:
            # The Originate may or may not have reached Asterisk: never send it again;
            # find out from Asterisk what became of the channel we named.
            log.warning("originate outcome unknown; reconciling", error=str(err))
            return await self._follow_existing(call, link, log)
        self.stats.originated += 1
        response = result[-1] if isinstance(result, list) else result
        if str(response.get("response", "")).lower() != "success":
            reason = int(str(response.get("reason", "0")) or 0)
            return self._outcome_of_failed_originate(reason), None
        await self._on_answered(call)
        return await self._await_report(call, link, log)

    # The three places where the client-first dialer's call differs (it rings the client).
    def _ring_seconds(self, call: _Call) -> int:
        """How long the originated leg rings (the Originate's own timeout)."""
        return call.campaign.settings.operator_ring_seconds

    def _outcome_of_failed_originate(self, reason: int) -> AttemptOutcome:
        """OriginateResponse Failure Reason -> outcome: here the operator did not answer."""
        return outcome_of_originate_failure(reason)

    async def _on_answered(self, call: _Call) -> None:
        """The originated leg answered: the operator is now on the line."""
        await self._pool.execute(
            self._queries["set_attempt_state"], call.attempt.id, "operator_answered", None
        )

    async def _await_report(
        self, call: _Call, link: AmiLink, log: Any
    ) -> tuple[AttemptOutcome, CallReport | None]:
        try:
            async with asyncio.timeout(self._max_call_seconds):
                report = await asyncio.shield(call.result)
        except TimeoutError:
            log.error("no report from the dialplan in time; reconciling")
            return await self._follow_existing(call, link, log)
        settings = call.campaign.settings
        return outcome_of_report(report, min_talk_seconds=settings.min_talk_seconds), report

    async def _follow_existing(
        self, call: _Call, link: AmiLink, log: Any
    ) -> tuple[AttemptOutcome, CallReport | None]:
        """The call may be up without us having seen how it went: ask Asterisk."""
        pause = FOLLOW_RETRY_SECONDS
        while True:
            if call.result.done():
                return await self._await_report(call, link, log)
            try:
                await link.wait_up(timeout=60)
                alive = await self._channel_exists(link, call.attempt.operator_channel_id)
            except (AmiNotConnected, AmiConnectionLost, AmiTimeout) as err:
                # A link that is going down can still look up and fail every action at
                # once, without ever suspending: pause (or stop at the report), never spin.
                log.info("cannot ask Asterisk about the call yet", error=str(err), retry_in=pause)
                await asyncio.wait([call.result], timeout=pause)
                pause = min(pause * 2, FOLLOW_RETRY_MAX_SECONDS)
                continue
            if call.result.done():
                return await self._await_report(call, link, log)
            if alive:
                log.info("call still up after reconciliation; following it")
                return await self._await_report(call, link, log)
            log.warning("call gone without a report; outcome unknown")
            return AttemptOutcome.UNKNOWN, None

    @staticmethod
    async def _channel_exists(link: AmiLink, channel_id: str) -> bool:
        messages = await link.action({"Action": "Status"}, as_list=True, timeout=10)
        return any(
            str(m.get("uniqueid", "")) == channel_id
            for m in (messages if isinstance(messages, list) else [messages])
        )

    # -- outcome -> next state -----------------------------------------------------------------
    async def _finish(
        self, call: _Call, outcome: AttemptOutcome, report: CallReport | None, log: Any
    ) -> None:
        """Persist the outcome; while the database is away, keep trying (the call is over
        and its outcome known: losing it would mean calling the client again)."""
        delay = 0.5
        try:
            while True:
                try:
                    await self._record_outcome(call, outcome, report, log)
                except DATABASE_DOWN as err:
                    log.error(
                        "cannot record the attempt's outcome yet; retrying",
                        outcome=str(outcome),
                        error=str(err),
                        retry_in=delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                else:
                    return
        finally:
            self._calls.pop(call.attempt.id, None)
            self._tasks.pop(call.attempt.id, None)
            self.stats.finished[str(outcome)] = self.stats.finished.get(str(outcome), 0) + 1
            self.wake()

    async def _record_outcome(
        self, call: _Call, outcome: AttemptOutcome, report: CallReport | None, log: Any
    ) -> None:
        settings = call.campaign.settings
        q = self._queries
        now = self._clock()
        zone = ZoneInfo(settings.window.timezone)
        local_midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._pool.acquire() as conn, conn.transaction():
            attempt_row = await conn.fetchrow(
                q["finish_attempt"],
                call.attempt.id,
                str(outcome),
                report.dial_status if report else None,
                report.hangup_source if report else None,
                report.talk_ms // 1000 if report and report.talk_ms is not None else None,
                report.stage if report else call.stage,
                {"stage": report.stage} if report else {},
            )
            if attempt_row is None:
                return  # already finished (by another instance's reconciliation)
            request = CallbackRequest.from_record(
                await conn.fetchrow(q["get_request"], call.attempt.request_id)
            )
            attempts_today = await conn.fetchval(
                q["client_attempts_since"], request.number, local_midnight
            )
            decision = after_attempt(
                outcome,
                RequestFacts(
                    client_attempts=request.client_attempts,
                    operator_declines=request.operator_declines,
                    created_at=request.created_at,
                    attempts_today_for_number=attempts_today,
                    due_at=request.due_at,
                ),
                settings.retry,
                settings.window,
                now=now,
            )
            inbound = request.resolved_inbound_at is not None
            if isinstance(decision, Completed):
                row = await conn.fetchrow(
                    q["close_request"], request.id, RequestStatus.COMPLETED, "talked", 1
                )
            elif inbound:
                counts = int(isinstance(decision, Retry) and decision.counts_client_attempt)
                row = await conn.fetchrow(
                    q["close_request"],
                    request.id,
                    RequestStatus.RESOLVED_INBOUND,
                    "client called in while a callback was in flight",
                    counts,
                )
            elif isinstance(decision, Failed | Expired):
                expired = isinstance(decision, Expired)
                row = await conn.fetchrow(
                    q["close_request"],
                    request.id,
                    RequestStatus.EXPIRED if expired else RequestStatus.FAILED,
                    decision.reason,
                    int(decision.counts_client_attempt),
                )
            else:
                row = await conn.fetchrow(
                    q["reschedule_request"],
                    request.id,
                    decision.due_at,
                    int(decision.counts_client_attempt),
                    int(decision.counts_operator_decline),
                    decision.reason,
                )
        if row is None:
            log.error("request was not dialing when its attempt ended", outcome=str(outcome))
            return
        updated = CallbackRequest.from_record(row)
        log.info(
            "callback attempt finished",
            outcome=str(outcome),
            dial_status=report.dial_status if report else None,
            talk_ms=report.talk_ms if report else None,
            number=updated.number,
        )
        event = {
            RequestStatus.PENDING: "callback request rescheduled",
            RequestStatus.COMPLETED: "callback request completed",
            RequestStatus.FAILED: "callback request failed",
            RequestStatus.EXPIRED: "callback request expired",
            RequestStatus.RESOLVED_INBOUND: "callback request resolved by inbound call",
        }.get(updated.status, "callback request updated")
        level = (
            log.warning
            if isinstance(decision, Retry) and decision.reason == ("operators_declining")
            else log.info
        )
        level(
            event,
            request_id=updated.id,
            status=str(updated.status),
            reason=updated.status_reason,
            due_at=updated.due_at.isoformat() if updated.status.is_open else None,
            client_attempts=updated.client_attempts,
            number=updated.number,
        )

    # -- crash safety --------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """Beat, and take over the calls of instances that stopped beating.

        A dead instance's in-flight calls go on in Asterisk without anyone to record how
        they end; a live instance adopts them once the owner has been silent for
        ``orphan_after`` s and reconciles them by channel id, as at start. So are this
        instance's own in-flight attempts it does not follow (a claim whose reply was lost).
        """
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self._pool.execute(self._queries["heartbeat"], self.instance)
                if self._claiming:  # a draining instance takes on no new work
                    scope = (
                        [c.id for c in self._campaigns],
                        sorted({c.pbx for c in self._campaigns}),
                    )
                    await self._adopt_orphans("adopt_dead_instances", *scope)
                    await self._adopt_orphans("adopt_untracked", list(self._calls), *scope)
            except DATABASE_DOWN as err:
                self._log.warning("heartbeat failed", error=str(err))

    async def _adopt_orphans(self, query: str = "adopt_orphans", *scope: list[Any]) -> None:
        rows = await self._pool.fetch(
            self._queries[query],
            self.instance,
            timedelta(seconds=self._orphan_after),
            *scope,
        )
        by_id = {c.id: c for c in self._campaigns}
        for row in rows:
            attempt = Attempt.from_record(row)
            if attempt.id in self._calls:
                continue  # followed already (its claim's reply came while this query ran)
            if attempt.mode != self.ATTEMPT_MODE:
                continue  # the other dialer of this instance (same name) follows it
            campaign = by_id.get(attempt.campaign_id or -1)
            link = self._links.get(attempt.pbx)
            if campaign is None or link is None:
                self._log.error(
                    "in-flight attempt of an unknown campaign or PBX left alone",
                    attempt_id=str(attempt.id),
                    pbx=attempt.pbx,
                )
                continue
            call = _Call(
                attempt=attempt,
                campaign=campaign,
                operator=attempt.operator_interface,
                result=asyncio.get_running_loop().create_future(),
                stage=attempt.stage,
            )
            self._calls[attempt.id] = call
            self.stats.adopted += 1
            self._log.warning(
                "adopted an in-flight attempt; reconciling with Asterisk",
                attempt_id=str(attempt.id),
                request_id=attempt.request_id,
                claimed_at=attempt.created_at.isoformat(),
            )
            self._track(attempt.id, self._reconcile(call, link))

    async def _reconcile(self, call: _Call, link: AmiLink) -> None:
        log = self._log.bind(attempt_id=str(call.attempt.id), request_id=call.attempt.request_id)
        board = self._boards[call.campaign.pbx]
        if call.operator is not None:
            board.reserve(
                call.campaign.queue, call.operator, until=self._clock() + timedelta(hours=4)
            )
        try:
            outcome, report = await self._follow_existing(call, link, log)
        finally:
            self._settle(call, board)
        await self._finish(call, outcome, report, log)

    async def _cancel_calls(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
