"""Pure decisions of outbox retention: which setting keeps events forever, when a pruning
walk is over, and what a run deleted in all.

callbackd/services/outbox_retention.py runs the walk against the database; the rule of
which rows may go (finished, old enough, an SMS past its quiet window) is one SQL statement,
``prune_finished`` in callbackd/db/queries/outbox.sql, so that it holds under concurrency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

KEEP_FOREVER_DAYS = 0


def pruning_enabled(retention_days: int) -> bool:
    """Whether outbox events are ever deleted (``retention_days = 0`` keeps them forever)."""
    if retention_days < 0:
        raise ValueError("retention_days must not be negative")
    return retention_days != KEEP_FOREVER_DAYS


@dataclass(frozen=True)
class PruneBatch:
    """What one bounded prune statement did, and where the walk goes on from."""

    scanned: int
    events: int
    sms: int
    deliveries: int
    cursor: tuple[datetime, int] | None

    def ends_walk(self, batch_size: int) -> bool:
        """A batch that read fewer rows than it could has reached the young end of the walk."""
        return self.scanned < batch_size or self.cursor is None


@dataclass(frozen=True)
class PruneTally:
    """Rows deleted by one run (or, summed, by every run since the start)."""

    events: int = 0
    sms: int = 0
    deliveries: int = 0
    batches: int = 0

    def add(self, batch: PruneBatch) -> PruneTally:
        return PruneTally(
            events=self.events + batch.events,
            sms=self.sms + batch.sms,
            deliveries=self.deliveries + batch.deliveries,
            batches=self.batches + 1,
        )

    @property
    def deleted_anything(self) -> bool:
        return self.events + self.sms + self.deliveries > 0
