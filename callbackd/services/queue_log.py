"""Replaying Asterisk's queue_log: abandons and caller-pays calls that happened while
callbackd was not listening.

Asterisk appends one line per queue event: ``time|callid|queue|agent|event|data...``.
ENTERQUEUE carries the caller id (data2) and ABANDON carries position, original position
and wait (data1..3); the callid is the caller channel's Uniqueid, the same key the live
QueueCallerAbandon uses, so a replayed abandon that was already captured is a no-op.

The shipped caller-pays routine writes its own line (QueueLog, see
:data:`~callbackd.dialplan_contract.CALLER_PAYS_QUEUE_LOG_EVENT`) with the Uniqueid its
UserEvent carries; replayed through the caller-pays service, it is stored once either way.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import structlog

from callbackd import dialplan_contract as contract
from callbackd.domain.capture import QueueAbandon
from callbackd.services.caller_pays import CallerPaysCapture, CallerPaysOutcome
from callbackd.services.capture import AbandonCapture, CaptureOutcome

# Epoch seconds as Asterisk writes them; 11 digits at most keeps datetime in range.
_EPOCH = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,6})?")
# Asterisk's Uniqueid (or an Originate ChannelId): at most 150 printable ASCII characters.
_UNIQUEID = re.compile(r"[!-~]{1,150}")
_CALLER_PAYS_FIELDS = 5 + len(contract.CALLER_PAYS_QUEUE_LOG_DATA)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_queue_log(
    lines: Iterable[str], *, pbx: str, since: datetime, until: datetime | None = None
) -> Iterator[QueueAbandon]:
    """Abandons from ``since`` to ``until``, with the caller id from their ENTERQUEUE line.

    A line whose time is unreadable or out of datetime's range is passed over, not raised
    on (one bad line must not stop the replay of the rest); one from after ``until`` cannot
    be an abandon that happened yet and is passed over too.
    """
    callers: dict[str, str] = {}
    for line in lines:
        fields = line.rstrip("\r\n").split("|")
        if len(fields) < 5:
            continue
        stamp, callid, queue, _agent, event = fields[:5]
        data = fields[5:]
        if event == "ENTERQUEUE":
            callers[callid] = data[1] if len(data) > 1 else ""
            continue
        if event != "ABANDON":
            continue
        number = callers.pop(callid, None)
        at = _time_of(stamp)
        if at is None or at < since or (until is not None and at > until):
            continue
        yield QueueAbandon(
            pbx=pbx,
            queue=queue,
            uniqueid=callid,
            caller_number=number or None,
            abandoned_at=at,
            position=_int(data[0]) if data else None,
            original_position=_int(data[1]) if len(data) > 1 else None,
            hold_seconds=_int(data[2]) if len(data) > 2 else None,
            replayed=True,
        )


@dataclass(frozen=True)
class CallerPaysLine:
    """A caller-pays call as the shipped dialplan logged it: shaped right, not yet judged
    (campaign and number go through the same verdict as the live UserEvent's)."""

    uniqueid: str
    campaign: str
    raw_number: str
    called_at: datetime


class LineRefusal(StrEnum):
    """Why a line with the caller-pays event is not the shipped dialplan's (someone else's
    QueueLog, a cut line, a hand edit): refused whole, never half-trusted."""

    FIELD_COUNT = "field_count"
    TIME = "time"
    UNIQUEID = "uniqueid"
    MARKER = "marker"
    AGENT = "agent"
    CAMPAIGN = "campaign"
    NUMBER = "number"


def _only(text: str, allowed: str, longest: int) -> bool:
    return len(text) <= longest and set(text) <= set(allowed)


def _time_of(stamp: str) -> datetime | None:
    if not _EPOCH.fullmatch(stamp):
        return None
    return datetime.fromtimestamp(int(stamp.split(".")[0]), UTC)


def parse_caller_pays_line(line: str) -> CallerPaysLine | LineRefusal | None:
    """One queue_log line: a caller-pays call, a refusal (the caller-pays event in another
    shape than the shipped dialplan writes), or None (any other line)."""
    fields = line.rstrip("\r\n").split("|")
    if len(fields) < 5 or fields[4] != contract.CALLER_PAYS_QUEUE_LOG_EVENT:
        return None
    if len(fields) != _CALLER_PAYS_FIELDS:
        return LineRefusal.FIELD_COUNT
    stamp, uniqueid, marker, agent, _event, campaign, number = fields
    called_at = _time_of(stamp)
    if called_at is None:
        return LineRefusal.TIME
    if not _UNIQUEID.fullmatch(uniqueid):
        return LineRefusal.UNIQUEID
    if marker != contract.CALLER_PAYS_QUEUE_LOG_QUEUE:
        return LineRefusal.MARKER
    if agent != contract.CALLER_PAYS_QUEUE_LOG_AGENT:
        return LineRefusal.AGENT
    if not _only(campaign, contract.CAMPAIGN_NAME_CHARACTERS, contract.MAX_CAMPAIGN_NAME_LENGTH):
        return LineRefusal.CAMPAIGN
    if not _only(number, contract.CALLER_CHARACTERS, contract.MAX_CALLER_LENGTH):
        return LineRefusal.NUMBER
    return CallerPaysLine(
        uniqueid=uniqueid,
        campaign=campaign,
        raw_number=number,
        called_at=called_at,
    )


def parse_caller_pays_log(
    lines: Iterable[str], *, since: datetime, until: datetime
) -> Iterator[CallerPaysLine | LineRefusal]:
    """Caller-pays calls from ``since`` to ``until``, and a refusal for each malformed line
    of that time (or of no readable time). A line from after ``until`` cannot be a call
    made yet: refused, so it never becomes a request due in the future."""
    for line in lines:
        parsed = parse_caller_pays_line(line)
        if parsed is None:
            continue
        if isinstance(parsed, CallerPaysLine):
            at: datetime | None = parsed.called_at
        else:
            at = _time_of(line.split("|", 1)[0])
        if at is not None and at < since:
            continue
        if at is not None and at > until:
            yield LineRefusal.TIME
            continue
        yield parsed


@dataclass(frozen=True)
class CallerPaysReplay:
    """What one replay did with the caller-pays lines (``lost``: the database failed; the
    line is tried again at the next replay)."""

    read: int = 0
    created: int = 0
    merged: int = 0
    already_known: int = 0
    skipped: int = 0
    lost: int = 0
    refused: int = 0


@dataclass(frozen=True)
class ReplayReport:
    read: int
    created: int
    merged: int
    already_known: int
    skipped: int
    caller_pays: CallerPaysReplay = field(default_factory=CallerPaysReplay)


class QueueLogReplayer:
    """Replays one PBX's queue_log through the capture services (on start and reconnect):
    abandons through abandon capture, caller-pays lines through the caller-pays service."""

    def __init__(
        self,
        capture: AbandonCapture,
        *,
        pbx: str,
        path: Path,
        caller_pays: CallerPaysCapture | None = None,
        horizon: timedelta = timedelta(hours=24),
        clock_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self._capture = capture
        self._caller_pays = caller_pays
        self._pbx = pbx
        self._path = path
        self._horizon = horizon
        self._clock_skew = clock_skew  # how far ahead of ours the PBX's clock may run
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("callbackd.queue_log").bind(pbx=pbx, path=str(path))

    async def replay(self) -> ReplayReport:
        async with self._lock:
            now = datetime.now(UTC)
            # The whole horizon, filtered by what was seen already. Never "since the latest
            # abandon stored": a live abandon stored while this replay is starting (the link
            # is up, events flow) would hide every older one missed while it was down.
            since = now - self._horizon
            abandons, calls = await asyncio.to_thread(self._read, since, now + self._clock_skew)
            known = await self._capture.known_uniqueids(
                self._pbx, [abandon.uniqueid for abandon in abandons]
            )
            counts = dict.fromkeys(CaptureOutcome, 0)
            for abandon in abandons:
                if abandon.uniqueid in known:
                    counts[CaptureOutcome.DUPLICATE] += 1
                    continue
                counts[await self._capture.on_abandon(abandon)] += 1
            report = ReplayReport(
                read=len(abandons),
                created=counts[CaptureOutcome.CREATED],
                merged=counts[CaptureOutcome.MERGED],
                already_known=counts[CaptureOutcome.DUPLICATE],
                skipped=counts[CaptureOutcome.SKIPPED],
                caller_pays=await self._replay_caller_pays(calls),
            )
            paid = report.caller_pays
            self._log.info(
                "queue_log replayed",
                since=since.isoformat(),
                abandons=report.read,
                created=report.created,
                merged=report.merged,
                already_known=report.already_known,
                skipped=report.skipped,
                caller_pays=paid.read,
                caller_pays_created=paid.created,
                caller_pays_merged=paid.merged,
                caller_pays_already_known=paid.already_known,
                caller_pays_skipped=paid.skipped,
                caller_pays_lost=paid.lost,
                caller_pays_refused=paid.refused,
            )
            return report

    async def _replay_caller_pays(
        self, lines: list[CallerPaysLine | LineRefusal]
    ) -> CallerPaysReplay:
        service = self._caller_pays
        calls = [line for line in lines if isinstance(line, CallerPaysLine)]
        refusals = Counter(line for line in lines if isinstance(line, LineRefusal))
        if refusals:
            self._log.warning(
                "caller-pays queue_log lines refused (not the shipped dialplan's format)",
                reasons={str(reason): count for reason, count in refusals.items()},
            )
        if service is None or not calls:
            return CallerPaysReplay(read=len(calls), refused=refusals.total())
        known = await service.known_uniqueids(self._pbx, [call.uniqueid for call in calls])
        counts: Counter[CallerPaysOutcome] = Counter()
        for call in calls:
            if call.uniqueid in known:
                counts[CallerPaysOutcome.DUPLICATE] += 1
                continue
            outcome = await service.record(
                pbx=self._pbx,
                uniqueid=call.uniqueid,
                campaign_name=call.campaign,
                raw_number=call.raw_number,
                called_at=call.called_at,
                replayed=True,
            )
            counts[outcome] += 1
        return CallerPaysReplay(
            read=len(calls),
            created=counts[CallerPaysOutcome.CREATED],
            merged=counts[CallerPaysOutcome.MERGED],
            already_known=counts[CallerPaysOutcome.DUPLICATE],
            skipped=counts[CallerPaysOutcome.SKIPPED],
            lost=counts[CallerPaysOutcome.LOST],
            refused=refusals.total(),
        )

    def _read(
        self, since: datetime, until: datetime
    ) -> tuple[list[QueueAbandon], list[CallerPaysLine | LineRefusal]]:
        try:
            # Lines end at "\n" only, as Asterisk ends them. Asterisk writes caller ids
            # unescaped: with universal newlines, a "\r" in one would start a line of the
            # caller's making.
            with self._path.open(encoding="utf-8", errors="replace", newline="\n") as handle:
                # One pass: the (few) caller-pays lines are set aside on the way.
                caller_pays_lines: list[str] = []
                queue_lines = _set_aside_caller_pays(handle, caller_pays_lines)
                abandons = list(
                    parse_queue_log(queue_lines, pbx=self._pbx, since=since, until=until)
                )
        except FileNotFoundError:
            self._log.warning("queue_log not found; nothing to replay")
            return [], []
        if self._caller_pays is None:
            return abandons, []
        calls = list(parse_caller_pays_log(caller_pays_lines, since=since, until=until))
        return abandons, calls


def _set_aside_caller_pays(lines: Iterable[str], aside: list[str]) -> Iterator[str]:
    """The lines of queue events, in order; the caller-pays routine's lines go to *aside*."""
    for line in lines:
        fields = line.split("|", 5)
        if len(fields) > 4 and fields[4] == contract.CALLER_PAYS_QUEUE_LOG_EVENT:
            aside.append(line)
        else:
            yield line
