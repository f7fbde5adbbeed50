"""Which abandoned calls become callback requests: a pure verdict per abandon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from callbackd.domain.numbers import Accepted, Verdict


@dataclass(frozen=True)
class QueueAbandon:
    """A caller hung up while waiting in a queue (from AMI or replayed from queue_log)."""

    pbx: str
    queue: str
    uniqueid: str
    caller_number: str | None
    abandoned_at: datetime
    hold_seconds: int | None = None
    position: int | None = None
    original_position: int | None = None
    caller_name: str | None = None
    linkedid: str | None = None
    replayed: bool = False

    @property
    def joined_at(self) -> datetime:
        return self.abandoned_at - timedelta(seconds=self.hold_seconds or 0)


@dataclass(frozen=True)
class AgentConnected:
    """The caller got through by themselves: a queue member picked them up (AgentConnect),
    or callbackd-inbound's sticky operator or VIP target answered them (a direct Dial,
    UserEvent CallbackdInboundConnected; ``queue`` is the queue they were headed for, "" if
    unknown)."""

    pbx: str
    queue: str
    uniqueid: str
    caller_number: str | None
    member_interface: str
    connected_at: datetime


@dataclass(frozen=True)
class CampaignRef:
    """What capture needs to know of a campaign (its row id and its capture settings)."""

    id: int
    name: str
    pbx: str
    queue: str
    min_hold_seconds: int
    priority: int
    initial_delay: timedelta
    expiry: timedelta


@dataclass(frozen=True)
class Store:
    number: str
    due_at: datetime


@dataclass(frozen=True)
class Skip:
    """Recorded as seen, with a reason, and never turned into a request."""

    reason: str


def judge_abandon(
    abandon: QueueAbandon,
    campaign: CampaignRef,
    verdict_of: Callable[[str | None], Verdict],
    *,
    now: datetime,
) -> Store | Skip:
    """Store or skip, and when; *verdict_of* is the number policy (classify_caller under the
    site's policy, e.g. a :class:`~callbackd.domain.numbers.CallerVerdicts`)."""
    if abandon.hold_seconds is not None and abandon.hold_seconds < campaign.min_hold_seconds:
        return Skip("short_hold")
    if now - abandon.abandoned_at > campaign.expiry:
        return Skip("expired")
    verdict = verdict_of(abandon.caller_number)
    if not isinstance(verdict, Accepted):
        return Skip(str(verdict.reason))
    due = max(now, abandon.abandoned_at + campaign.initial_delay)
    return Store(number=verdict.e164, due_at=due)
