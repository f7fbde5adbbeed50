"""Replaying Asterisk's queue_log: abandons that happened while callbackd was not listening.

Asterisk appends one line per queue event: ``time|callid|queue|agent|event|data...``.
ENTERQUEUE carries the caller id (data2) and ABANDON carries position, original position
and wait (data1..3); the callid is the caller channel's Uniqueid, the same key the live
QueueCallerAbandon uses, so a replayed abandon that was already captured is a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from callbackd.db.sql import load_queries
from callbackd.domain.capture import QueueAbandon
from callbackd.services.capture import AbandonCapture, CaptureOutcome


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_queue_log(lines: Iterable[str], *, pbx: str, since: datetime) -> Iterator[QueueAbandon]:
    """Abandons at or after ``since``, with the caller id from their ENTERQUEUE line."""
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
        epoch = _int(stamp.split(".")[0])
        if epoch is None:
            continue
        at = datetime.fromtimestamp(epoch, UTC)
        if at < since:
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
class ReplayReport:
    read: int
    created: int
    merged: int
    already_known: int
    skipped: int


class QueueLogReplayer:
    """Replays one PBX's queue_log through the capture service (on start and reconnect)."""

    def __init__(
        self,
        pool: Any,
        capture: AbandonCapture,
        *,
        pbx: str,
        path: Path,
        horizon: timedelta = timedelta(hours=24),
        overlap: timedelta = timedelta(minutes=5),
    ) -> None:
        self._pool = pool
        self._capture = capture
        self._pbx = pbx
        self._path = path
        self._horizon = horizon
        self._overlap = overlap
        self._queries = load_queries("capture")
        self._lock = asyncio.Lock()
        self._log = structlog.get_logger("callbackd.queue_log").bind(pbx=pbx, path=str(path))

    async def replay(self) -> ReplayReport:
        async with self._lock:
            now = datetime.now(UTC)
            async with self._pool.acquire(timeout=5) as conn:
                latest = await conn.fetchval(self._queries["latest_abandon_at"], self._pbx)
            since = now - self._horizon if latest is None else latest - self._overlap
            since = max(since, now - self._horizon)
            abandons = await asyncio.to_thread(self._read, since)
            counts = dict.fromkeys(CaptureOutcome, 0)
            for abandon in abandons:
                counts[await self._capture.on_abandon(abandon)] += 1
            report = ReplayReport(
                read=len(abandons),
                created=counts[CaptureOutcome.CREATED],
                merged=counts[CaptureOutcome.MERGED],
                already_known=counts[CaptureOutcome.DUPLICATE],
                skipped=counts[CaptureOutcome.SKIPPED],
            )
            self._log.info(
                "queue_log replayed",
                since=since.isoformat(),
                abandons=report.read,
                created=report.created,
                merged=report.merged,
                already_known=report.already_known,
                skipped=report.skipped,
            )
            return report

    def _read(self, since: datetime) -> list[QueueAbandon]:
        try:
            with self._path.open(encoding="utf-8", errors="replace") as handle:
                return list(parse_queue_log(handle, pbx=self._pbx, since=since))
        except FileNotFoundError:
            self._log.warning("queue_log not found; nothing to replay")
            return []
