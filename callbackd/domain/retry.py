"""What happens to a callback request after one attempt: done, try again when, or give up.

Rules (``now`` is when the attempt ended; "expiry" is ``created_at + expiry_seconds``, and an
instant t is still alive while ``t <= expiry``):

1. ``COMPLETED`` -> :class:`Completed`, whatever else is true.
2. A request already past expiry at ``now`` -> ``Expired("past_expiry")``, whatever the
   outcome.
3. Client-side outcomes -- ``BUSY``, ``NO_ANSWER``, ``CONGESTION``, ``UNAVAILABLE``,
   ``SHORT_CALL`` (answered but talked less than the minimum: voicemail),
   ``CLIENT_DECLINED`` (did not press 1) and ``UNKNOWN`` (the daemon lost the call's
   outcome, e.g. it crashed) -- count one client attempt:

   * if ``client_attempts + 1 >= max_attempts`` -> ``Failed("max_attempts")``;
   * otherwise ``delay = base * backoff_factor ** client_attempts`` (attempts *before* this
     one, so the first retry waits the base delay). Base: busy -> ``busy_delay_seconds``;
     congestion -> ``congestion_delay_seconds``; unavailable -> ``unavailable_delay_seconds``;
     no answer, short call, client declined, unknown -> ``no_answer_delay_seconds``.
     ``UNKNOWN`` waits at least :data:`UNKNOWN_MIN_DELAY` even when the configured delay is
     0: the lost call may still be ringing or talking on the PBX, so it is never retried at
     once;
   * ``due = next_open(now + delay)``; if ``attempts_today_for_number >=
     daily_cap_per_number`` the number has had its share today: ``due =
     next_open(max(start of the next local day, now + delay))`` (reason ``"daily_cap"``);
   * ``due`` past expiry -> ``Expired("retry_past_expiry")``.

4. Operator-side outcomes -- ``OPERATOR_NO_ANSWER``, ``OPERATOR_BUSY``,
   ``OPERATOR_DECLINED`` -- are not the client's fault: no client attempt, and the request
   goes straight back (``due = next_open(now)``, i.e. ``now`` inside calling hours) for
   another free operator. ``OPERATOR_DECLINED`` counts an operator decline; once
   ``operator_declines + 1 >= max_operator_declines`` the caller is still not failed, but the
   request waits ``no_answer_delay_seconds`` (reason ``"operators_declining"``, which the
   dialer logs loudly). Expiry applies.
5. ``FAILED`` (the Originate itself failed, e.g. the operator channel is unavailable): no
   client attempt; ``due = next_open(now + 10 s)``, reason ``"originate_failed"``.
   Expiry applies.

Every :class:`Retry` is therefore due at or after ``now``, inside the calling window, and no
later than expiry. An :class:`Expired` request is closed with status ``expired`` (webhook
``callback.expired``), the status the dialer also gives a pending request that outlived its
expiry before it was ever claimed (the claim never hands one out). Calling hours that never
open again (a window made only of holidays) give ``Failed("no_calling_hours")`` rather than
an exception: the dialer must close the request either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from callbackd.db.models import AttemptOutcome
from callbackd.domain.window import clamp_preferred, next_day_start, next_open
from callbackd.settings import CallingWindow, RetryPolicy

__all__ = [
    "CLIENT_OUTCOMES",
    "OPERATOR_OUTCOMES",
    "ORIGINATE_RETRY_DELAY",
    "PAST_EXPIRY",
    "RETRY_PAST_EXPIRY",
    "UNKNOWN_MIN_DELAY",
    "Completed",
    "Decision",
    "Expired",
    "Failed",
    "RequestFacts",
    "Retry",
    "after_attempt",
    "initial_due",
]

ORIGINATE_RETRY_DELAY = timedelta(seconds=10)
"""Wait after a failed Originate: long enough not to spin, short enough to catch the next free
operator."""

PAST_EXPIRY = "past_expiry"
"""Expired's reason when the request was past expiry already (also the dialer's sweep's)."""
RETRY_PAST_EXPIRY = "retry_past_expiry"
"""Expired's reason when the next try would fall after expiry."""

UNKNOWN_MIN_DELAY = timedelta(minutes=5)
"""Least wait after a lost outcome: outlasts the longest default ring + a short talk."""

CLIENT_OUTCOMES = frozenset(
    {
        AttemptOutcome.BUSY,
        AttemptOutcome.NO_ANSWER,
        AttemptOutcome.CONGESTION,
        AttemptOutcome.UNAVAILABLE,
        AttemptOutcome.SHORT_CALL,
        AttemptOutcome.CLIENT_DECLINED,
        AttemptOutcome.UNKNOWN,
    }
)
"""Outcomes that used up one of the client's attempts."""

OPERATOR_OUTCOMES = frozenset(
    {
        AttemptOutcome.OPERATOR_NO_ANSWER,
        AttemptOutcome.OPERATOR_BUSY,
        AttemptOutcome.OPERATOR_DECLINED,
    }
)
"""Outcomes where the client was never rung because no operator took the call."""


@dataclass(frozen=True)
class RequestFacts:
    """What the decision needs to know of the request, as it was before this attempt."""

    client_attempts: int
    """Client attempts before this one."""
    operator_declines: int
    """Operator declines before this one."""
    created_at: datetime
    attempts_today_for_number: int
    """Client attempts to this number today (window's local date), including this one."""
    due_at: datetime
    """When this attempt was due; carried for logging, the rules do not depend on it."""

    def __post_init__(self) -> None:
        for name in ("client_attempts", "operator_declines", "attempts_today_for_number"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("created_at", "due_at"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class Completed:
    """The client and an operator talked: close the request."""


@dataclass(frozen=True)
class Retry:
    """Put the request back, due at ``due_at``; the counters to bump are named explicitly."""

    due_at: datetime
    counts_client_attempt: bool
    counts_operator_decline: bool
    reason: str


@dataclass(frozen=True)
class Failed:
    """Give up on the request; ``counts_client_attempt`` says whether this attempt rang them."""

    reason: str
    counts_client_attempt: bool


@dataclass(frozen=True)
class Expired:
    """The request outlived its campaign's ``expiry_seconds`` (``reason`` says how): close it
    as expired; ``counts_client_attempt`` as for :class:`Failed`."""

    reason: str
    counts_client_attempt: bool


Decision = Completed | Retry | Failed | Expired


def after_attempt(
    outcome: AttemptOutcome,
    facts: RequestFacts,
    policy: RetryPolicy,
    window: CallingWindow,
    *,
    now: datetime,
) -> Decision:
    """Apply the module's rules to one finished attempt."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if outcome is AttemptOutcome.COMPLETED:
        return Completed()
    expires_at = _expires_at(facts.created_at, policy.expiry_seconds)
    client_side = outcome in CLIENT_OUTCOMES
    if now > expires_at:
        return Expired(PAST_EXPIRY, counts_client_attempt=client_side)
    if client_side:
        return _after_client_outcome(outcome, facts, policy, window, now, expires_at)
    if outcome in OPERATOR_OUTCOMES:
        declined = outcome is AttemptOutcome.OPERATOR_DECLINED
        if declined and facts.operator_declines + 1 >= policy.max_operator_declines:
            delay = timedelta(seconds=policy.no_answer_delay_seconds)
            return _retry_at(now + delay, window, expires_at, declined, "operators_declining")
        return _retry_at(now, window, expires_at, declined, outcome.value)
    if outcome is AttemptOutcome.FAILED:  # the Originate never got anywhere
        return _retry_at(now + ORIGINATE_RETRY_DELAY, window, expires_at, False, "originate_failed")
    # A new outcome must get a rule here, not silently borrow another one's.
    raise ValueError(f"no retry rule for outcome {outcome!r}")


def initial_due(
    now: datetime, window: CallingWindow, preferred_at: datetime | None = None
) -> datetime:
    """When a new request is first due: now (or the client's preferred time), within hours."""
    if preferred_at is None:
        return next_open(now, window)
    return clamp_preferred(preferred_at, window, now)


# --------------------------------------------------------------------------- internals


def _expires_at(created_at: datetime, expiry_seconds: int) -> datetime:
    """Expiry, saturating at the end of the calendar (the setting has no upper bound)."""
    try:
        return created_at + timedelta(seconds=expiry_seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _base_delay_seconds(outcome: AttemptOutcome, policy: RetryPolicy) -> int:
    if outcome is AttemptOutcome.BUSY:
        return policy.busy_delay_seconds
    if outcome is AttemptOutcome.CONGESTION:
        return policy.congestion_delay_seconds
    if outcome is AttemptOutcome.UNAVAILABLE:
        return policy.unavailable_delay_seconds
    return policy.no_answer_delay_seconds  # no answer, short call, declined, unknown


def _after_client_outcome(
    outcome: AttemptOutcome,
    facts: RequestFacts,
    policy: RetryPolicy,
    window: CallingWindow,
    now: datetime,
    expires_at: datetime,
) -> Decision:
    if facts.client_attempts + 1 >= policy.max_attempts:
        return Failed("max_attempts", counts_client_attempt=True)
    # client_attempts < max_attempts - 1 <= 99 here, so the power cannot overflow a float.
    seconds = _base_delay_seconds(outcome, policy) * policy.backoff_factor**facts.client_attempts
    if outcome is AttemptOutcome.UNKNOWN:
        seconds = max(seconds, UNKNOWN_MIN_DELAY.total_seconds())
    if seconds > (expires_at - now).total_seconds():  # also keeps timedelta() in range
        return Expired(RETRY_PAST_EXPIRY, counts_client_attempt=True)
    earliest = now + timedelta(seconds=seconds)
    reason = outcome.value
    if facts.attempts_today_for_number >= policy.daily_cap_per_number:
        tomorrow = next_day_start(now, window)
        if tomorrow > earliest:
            earliest, reason = tomorrow, "daily_cap"
    return _retry_at(earliest, window, expires_at, False, reason, counts_client_attempt=True)


def _retry_at(
    earliest: datetime,
    window: CallingWindow,
    expires_at: datetime,
    counts_operator_decline: bool,
    reason: str,
    *,
    counts_client_attempt: bool = False,
) -> Decision:
    if earliest > expires_at:
        return Expired(RETRY_PAST_EXPIRY, counts_client_attempt=counts_client_attempt)
    try:
        due = next_open(earliest, window)
    except OverflowError:  # the search ran off the end of the calendar
        return Expired(RETRY_PAST_EXPIRY, counts_client_attempt=counts_client_attempt)
    except ValueError:
        return Failed("no_calling_hours", counts_client_attempt=counts_client_attempt)
    if due > expires_at:
        return Expired(RETRY_PAST_EXPIRY, counts_client_attempt=counts_client_attempt)
    return Retry(
        due_at=due,
        counts_client_attempt=counts_client_attempt,
        counts_operator_decline=counts_operator_decline,
        reason=reason,
    )
