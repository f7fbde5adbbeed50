"""Pure decisions of the dialer modes: client-first outcomes and release, caller-pays
verdicts, reminder calls."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from callbackd.db.models import AttemptOutcome
from callbackd.dialplan_contract import ClientFirstStage
from callbackd.domain.capture import CampaignRef
from callbackd.domain.numbers import Accepted, NumberPolicy, classify_caller
from callbackd.domain.operators import release_slots

# OriginateResponse "Reason" when the CLIENT's leg never reached our context.
_CLIENT_ORIGINATE_REASONS = {
    1: AttemptOutcome.UNAVAILABLE,  # hung up / rejected before answering
    3: AttemptOutcome.NO_ANSWER,  # rang until the Originate timeout
    5: AttemptOutcome.BUSY,
    8: AttemptOutcome.CONGESTION,
}

_CLIENT_FIRST_STAGES = {
    ClientFirstStage.QUEUED: AttemptOutcome.COMPLETED,
    ClientFirstStage.LANDED: AttemptOutcome.COMPLETED,
    ClientFirstStage.CLIENT_DECLINED: AttemptOutcome.CLIENT_DECLINED,
    ClientFirstStage.INVALID: AttemptOutcome.FAILED,
    # Answered, then hung up before being put through (at the "press 1" prompt).
    ClientFirstStage.CLIENT_ANSWERED: AttemptOutcome.SHORT_CALL,
    ClientFirstStage.CLIENT_CONFIRMED: AttemptOutcome.SHORT_CALL,
}


def outcome_of_client_originate_failure(reason: int) -> AttemptOutcome:
    """The client's leg failed before answering (0: no channel at all, e.g. a bad trunk:
    FAILED, which does not count as a client attempt)."""
    return _CLIENT_ORIGINATE_REASONS.get(reason, AttemptOutcome.FAILED)


def outcome_of_client_stage(stage: str) -> AttemptOutcome:
    """The last client-first stage the dialplan reported -> the attempt's outcome."""
    try:
        return _CLIENT_FIRST_STAGES[ClientFirstStage(stage)]
    except ValueError:
        return AttemptOutcome.FAILED


def client_is_through(stage: str) -> bool:
    """The stage that makes a client-first callback a success (queue or landing reached):
    the attempt can be finished without waiting for the call to end."""
    return stage in (ClientFirstStage.QUEUED, ClientFirstStage.LANDED)


def client_first_slots(
    *,
    max_concurrent: int,
    in_flight: int,
    require_free_operator: bool,
    free_operators: int,
    callers_waiting: int,
) -> int:
    """How many more clients to ring now for one client-first campaign.

    Never more than ``max_concurrent`` in flight. With ``require_free_operator``, only as
    many as there are free operators the live callers do not need, counting the clients
    already ringing (once through, a client is a waiting caller like any other).
    """
    room = max(0, max_concurrent - in_flight)
    if not require_free_operator:
        return room
    return max(0, min(room, release_slots(free_operators, callers_waiting) - in_flight))


@dataclass(frozen=True)
class CallerPaysStore:
    campaign: CampaignRef
    number: str


@dataclass(frozen=True)
class CallerPaysSkip:
    reason: str


def judge_caller_pays(
    pbx: str,
    campaign_name: str,
    raw_number: str | None,
    campaigns: Mapping[str, CampaignRef],
    policy: NumberPolicy,
) -> CallerPaysStore | CallerPaysSkip:
    """A call to a caller-pays DID on ``pbx``: which client-first campaign and number, or
    why not.

    ``campaigns`` holds the client-first campaigns by name; any other name (or an empty
    one: the dialplan blanks invalid names), or a campaign of another PBX, is refused, as
    are numbers the number policy refuses (withheld, invalid, emergency, premium, blocked).
    """
    campaign = campaigns.get(campaign_name)
    if campaign is None:
        return CallerPaysSkip("no_client_first_campaign")
    if campaign.pbx != pbx:
        return CallerPaysSkip("campaign_of_another_pbx")
    verdict = classify_caller(raw_number or None, policy)
    if not isinstance(verdict, Accepted):
        return CallerPaysSkip(str(verdict.reason))
    return CallerPaysStore(campaign=campaign, number=verdict.e164)


def operators_to_remind(free_operators: Collection[str], ringing: Collection[str]) -> list[str]:
    """Free operators (idle, not paused, not in a call) not being rung by a reminder now."""
    return sorted(set(free_operators) - set(ringing))
