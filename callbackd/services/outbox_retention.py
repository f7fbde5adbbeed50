"""Outbox retention: deletes finished outbox events older than ``outbox.retention_days``.

Without it the outbox grows for ever (every state change of every request writes an event,
migration 0009). A supervised task of the daemon runs :meth:`OutboxPruner.prune_once`
at start and then every ``interval`` seconds. A run walks the events older than the
retention in bounded batches, each batch one statement committed on its own, so a first run
on a huge outbox never holds many locks or a long transaction. The statement
(``prune_finished``) decides which rows may go: only finished ones (fanned out, every
delivery delivered or given up), and an SMS only once its quiet window is over. Rows another
instance's pruner holds are skipped, so several instances on one database prune side by side.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import structlog

from callbackd.db.sql import load_queries
from callbackd.domain.retention import PruneBatch, PruneTally, pruning_enabled
from callbackd.services.capture import DATABASE_DOWN

PRUNE_BATCH_ROWS = 1000
PRUNE_INTERVAL_SECONDS = 3600.0
# A backlog walk leaves the database to the hot paths (claims, captures) between batches.
PAUSE_BETWEEN_BATCHES_SECONDS = 0.05

Q = load_queries("outbox")


class OutboxPruner:
    def __init__(
        self,
        pool: Any,
        *,
        retention_days: int,
        timeout: float,
        batch_size: int = PRUNE_BATCH_ROWS,
        interval: float = PRUNE_INTERVAL_SECONDS,
        pause: float = PAUSE_BETWEEN_BATCHES_SECONDS,
    ) -> None:
        if not pruning_enabled(retention_days):
            raise ValueError("retention_days = 0 keeps the outbox forever: nothing to prune")
        self._pool = pool
        self._retention_days = retention_days
        self._timeout = timeout
        self._batch_size = batch_size
        self._interval = interval
        self._pause = pause
        self.total = PruneTally()
        self._log = structlog.get_logger("callbackd.outbox")

    async def run(self) -> None:
        """Prune now and then every interval, until cancelled (a supervised task)."""
        while True:
            try:
                await self.prune_once()
            except DATABASE_DOWN as err:
                self._log.error(
                    "database unavailable; outbox pruning resumes at the next run",
                    error=type(err).__name__,
                    retention_days=self._retention_days,
                    retry_in=self._interval,
                )
            await asyncio.sleep(self._interval)

    async def prune_once(self) -> PruneTally:
        """One walk over the events older than the retention; returns what it deleted.

        The log line is written even when the walk stops early (an error, a shutdown):
        the batches before that are committed and gone.
        """
        run = PruneTally()
        started = time.monotonic()
        complete = False
        try:
            cursor: tuple[datetime, int] | None = None
            while True:
                batch = await self._prune_batch(cursor)
                run = run.add(batch)
                self.total = self.total.add(batch)
                if batch.ends_walk(self._batch_size):
                    break
                cursor = batch.cursor
                await asyncio.sleep(self._pause)
            complete = True
        finally:
            if run.deleted_anything:
                self._log.info(
                    "outbox pruned",
                    events=run.events,
                    sms=run.sms,
                    deliveries=run.deliveries,
                    batches=run.batches,
                    retention_days=self._retention_days,
                    complete=complete,
                    seconds=round(time.monotonic() - started, 3),
                )
        return run

    async def _prune_batch(self, cursor: tuple[datetime, int] | None) -> PruneBatch:
        after_created_at, after_id = cursor if cursor is not None else (None, None)
        async with self._pool.acquire(timeout=self._timeout) as conn:
            row = await conn.fetchrow(
                Q["prune_finished"],
                after_created_at,
                after_id,
                self._retention_days,
                self._batch_size,
                timeout=self._timeout,
            )
        last = None if row["last_id"] is None else (row["last_created_at"], row["last_id"])
        return PruneBatch(
            scanned=row["scanned"],
            events=row["events"],
            sms=row["sms"],
            deliveries=row["deliveries"],
            cursor=last,
        )
