"""Retry decisions: every outcome, backoff, caps, expiry, calling hours (and properties)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbackd.db.models import AttemptOutcome
from callbackd.domain.retry import (
    CLIENT_OUTCOMES,
    OPERATOR_OUTCOMES,
    ORIGINATE_RETRY_DELAY,
    PAST_EXPIRY,
    RETRY_PAST_EXPIRY,
    UNKNOWN_MIN_DELAY,
    Completed,
    Decision,
    Expired,
    Failed,
    RequestFacts,
    Retry,
    after_attempt,
    initial_due,
)
from callbackd.domain.window import is_open, local_date
from callbackd.settings import CallingWindow, RetryPolicy

Out = AttemptOutcome
ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = CallingWindow(days=ALL_DAYS, start=time(0), end=time(23, 59, 59, 999999))
OFFICE = CallingWindow()  # UTC, mon-fri, 09:00-21:00
NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)  # a Wednesday, open in OFFICE
POLICY = RetryPolicy(
    max_attempts=5,
    busy_delay_seconds=120,
    no_answer_delay_seconds=300,
    congestion_delay_seconds=60,
    unavailable_delay_seconds=90,
    backoff_factor=2.0,
    daily_cap_per_number=6,
    expiry_seconds=3 * 86400,
    max_operator_declines=3,
)


def facts(**changes: Any) -> RequestFacts:
    base = RequestFacts(
        client_attempts=0,
        operator_declines=0,
        created_at=NOW - timedelta(minutes=10),
        attempts_today_for_number=1,
        due_at=NOW - timedelta(minutes=2),
    )
    return replace(base, **changes)


def decide(
    outcome: AttemptOutcome,
    *,
    policy: RetryPolicy = POLICY,
    window: CallingWindow = ALWAYS,
    now: datetime = NOW,
    **fact_changes: Any,
) -> Decision:
    return after_attempt(outcome, facts(**fact_changes), policy, window, now=now)


def test_the_outcome_groups_cover_every_outcome_once() -> None:
    assert CLIENT_OUTCOMES.isdisjoint(OPERATOR_OUTCOMES)
    rest = set(Out) - CLIENT_OUTCOMES - OPERATOR_OUTCOMES
    assert rest == {Out.COMPLETED, Out.FAILED}


# --------------------------------------------------------------------------- completed


def test_completed_is_completed() -> None:
    assert decide(Out.COMPLETED) == Completed()


def test_completed_even_past_expiry_and_attempts() -> None:
    assert decide(Out.COMPLETED, client_attempts=50, created_at=NOW - timedelta(days=30)) == (
        Completed()
    )


# --------------------------------------------------------------------------- client side


@pytest.mark.parametrize(
    ("outcome", "base_seconds"),
    [
        (Out.BUSY, 120),
        (Out.NO_ANSWER, 300),
        (Out.CONGESTION, 60),
        (Out.UNAVAILABLE, 90),
        (Out.SHORT_CALL, 300),
        (Out.CLIENT_DECLINED, 300),
    ],
)
def test_first_retry_waits_the_base_delay_of_its_outcome(
    outcome: AttemptOutcome, base_seconds: int
) -> None:
    assert decide(outcome) == Retry(
        due_at=NOW + timedelta(seconds=base_seconds),
        counts_client_attempt=True,
        counts_operator_decline=False,
        reason=outcome.value,
    )


@pytest.mark.parametrize(("before", "seconds"), [(0, 120), (1, 240), (2, 480), (3, 960)])
def test_backoff_grows_with_the_attempts_before(before: int, seconds: int) -> None:
    decision = decide(Out.BUSY, client_attempts=before)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + timedelta(seconds=seconds)


def test_fractional_backoff_factor() -> None:
    policy = POLICY.model_copy(update={"backoff_factor": 1.5})
    decision = decide(Out.NO_ANSWER, policy=policy, client_attempts=2)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + timedelta(seconds=300 * 2.25)


@pytest.mark.parametrize("outcome", sorted(CLIENT_OUTCOMES))
def test_last_attempt_fails_with_max_attempts(outcome: AttemptOutcome) -> None:
    assert decide(outcome, client_attempts=4) == Failed("max_attempts", counts_client_attempt=True)


def test_one_before_the_last_attempt_still_retries() -> None:
    decision = decide(Out.NO_ANSWER, client_attempts=3)
    assert isinstance(decision, Retry)
    assert decision.counts_client_attempt


def test_a_single_attempt_policy_never_retries_the_client() -> None:
    policy = POLICY.model_copy(update={"max_attempts": 1})
    assert decide(Out.BUSY, policy=policy) == Failed("max_attempts", counts_client_attempt=True)


def test_unknown_counts_as_an_attempt_with_the_no_answer_delay() -> None:
    assert decide(Out.UNKNOWN) == Retry(
        due_at=NOW + timedelta(seconds=300),
        counts_client_attempt=True,
        counts_operator_decline=False,
        reason="unknown",
    )


def test_unknown_is_never_retried_at_once_even_with_zero_delay() -> None:
    policy = POLICY.model_copy(update={"no_answer_delay_seconds": 0})
    decision = decide(Out.UNKNOWN, policy=policy)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + UNKNOWN_MIN_DELAY
    # A plain no-answer with a zero delay may go again at once: the call is known to be over.
    no_answer = decide(Out.NO_ANSWER, policy=policy)
    assert isinstance(no_answer, Retry)
    assert no_answer.due_at == NOW


def test_retry_delay_lands_in_closed_hours_and_moves_to_the_opening() -> None:
    evening = datetime(2024, 6, 7, 20, 58, tzinfo=UTC)  # Friday, 2 minutes before closing
    decision = decide(Out.BUSY, window=OFFICE, now=evening, created_at=evening)
    assert isinstance(decision, Retry)
    assert decision.due_at == datetime(2024, 6, 10, 9, 0, tzinfo=UTC)  # Monday
    assert decision.reason == "busy"


def test_retry_respects_holidays() -> None:
    window = CallingWindow(holidays=[date(2024, 6, 6)])
    evening = datetime(2024, 6, 5, 20, 59, tzinfo=UTC)
    decision = decide(Out.NO_ANSWER, window=window, now=evening, created_at=evening)
    assert isinstance(decision, Retry)
    assert decision.due_at == datetime(2024, 6, 7, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- daily cap


def test_daily_cap_moves_the_retry_to_the_next_local_day() -> None:
    decision = decide(Out.NO_ANSWER, window=OFFICE, attempts_today_for_number=6)
    assert decision == Retry(
        due_at=datetime(2024, 6, 6, 9, 0, tzinfo=UTC),
        counts_client_attempt=True,
        counts_operator_decline=False,
        reason="daily_cap",
    )


def test_below_the_daily_cap_nothing_moves() -> None:
    decision = decide(Out.NO_ANSWER, window=OFFICE, attempts_today_for_number=5)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + timedelta(seconds=300)


def test_daily_cap_counts_days_in_the_windows_zone() -> None:
    moscow = CallingWindow(timezone="Europe/Moscow", days=ALL_DAYS, start=time(0), end=time(23, 59))
    now = datetime(2024, 6, 5, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    decision = decide(Out.BUSY, window=moscow, now=now, attempts_today_for_number=6)
    assert isinstance(decision, Retry)
    assert decision.due_at == datetime(2024, 6, 5, 21, 0, tzinfo=UTC)  # 00:00 Moscow, 6 June
    assert local_date(decision.due_at, moscow) == date(2024, 6, 6)


def test_daily_cap_is_not_earlier_than_the_backoff_delay() -> None:
    late = datetime(2024, 6, 5, 23, 30, tzinfo=UTC)
    decision = decide(
        Out.NO_ANSWER, now=late, created_at=late, client_attempts=3, attempts_today_for_number=9
    )
    assert isinstance(decision, Retry)
    assert decision.due_at == late + timedelta(seconds=300 * 8)  # 00:10, past midnight anyway
    assert decision.reason == "no_answer"


def test_daily_cap_with_a_delay_beyond_the_next_day() -> None:
    policy = POLICY.model_copy(update={"busy_delay_seconds": 2 * 86400, "expiry_seconds": 10**6})
    decision = decide(Out.BUSY, policy=policy, attempts_today_for_number=100)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + timedelta(days=2)


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("outcome", sorted(set(Out) - {Out.COMPLETED}))
def test_a_request_past_expiry_expires_whatever_the_outcome(outcome: AttemptOutcome) -> None:
    decision = decide(outcome, created_at=NOW - timedelta(days=3, seconds=1))
    assert decision == Expired(PAST_EXPIRY, counts_client_attempt=outcome in CLIENT_OUTCOMES)


def test_expiry_exactly_now_is_still_alive() -> None:
    decision = decide(Out.OPERATOR_BUSY, created_at=NOW - timedelta(days=3))
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW


def test_a_retry_after_expiry_fails_as_expired() -> None:
    decision = decide(Out.NO_ANSWER, created_at=NOW - timedelta(days=3) + timedelta(seconds=299))
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=True)


def test_a_retry_exactly_at_expiry_is_allowed() -> None:
    decision = decide(Out.NO_ANSWER, created_at=NOW - timedelta(days=3) + timedelta(seconds=300))
    assert isinstance(decision, Retry)


def test_closed_hours_pushing_past_expiry_fail_as_expired() -> None:
    evening = datetime(2024, 6, 7, 20, 58, tzinfo=UTC)  # Friday
    created = evening - timedelta(days=2)  # expires Sunday 20:58
    decision = decide(Out.BUSY, window=OFFICE, now=evening, created_at=created)
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=True)


def test_huge_backoff_expires_instead_of_overflowing() -> None:
    policy = POLICY.model_copy(update={"max_attempts": 100, "backoff_factor": 10.0})
    decision = decide(Out.BUSY, policy=policy, client_attempts=98)
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=True)


def test_daily_cap_past_expiry_fails_as_expired() -> None:
    decision = decide(
        Out.BUSY,
        attempts_today_for_number=6,
        created_at=NOW - timedelta(days=3) + timedelta(hours=1),
    )
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=True)


# --------------------------------------------------------------------------- operator side


@pytest.mark.parametrize("outcome", [Out.OPERATOR_NO_ANSWER, Out.OPERATOR_BUSY])
def test_operator_missed_goes_back_at_once_without_counting(outcome: AttemptOutcome) -> None:
    assert decide(outcome, operator_declines=2, client_attempts=4) == Retry(
        due_at=NOW, counts_client_attempt=False, counts_operator_decline=False, reason=outcome.value
    )


def test_operator_declined_goes_back_at_once_and_counts_a_decline() -> None:
    assert decide(Out.OPERATOR_DECLINED, operator_declines=1) == Retry(
        due_at=NOW,
        counts_client_attempt=False,
        counts_operator_decline=True,
        reason="operator_declined",
    )


def test_too_many_operator_declines_wait_but_do_not_fail_the_caller() -> None:
    decision = decide(Out.OPERATOR_DECLINED, operator_declines=2)
    assert decision == Retry(
        due_at=NOW + timedelta(seconds=300),
        counts_client_attempt=False,
        counts_operator_decline=True,
        reason="operators_declining",
    )
    again = decide(Out.OPERATOR_DECLINED, operator_declines=7)
    assert isinstance(again, Retry)
    assert again.reason == "operators_declining"


def test_operators_declining_near_expiry_fails_as_expired() -> None:
    decision = decide(
        Out.OPERATOR_DECLINED,
        operator_declines=2,
        created_at=NOW - timedelta(days=3) + timedelta(seconds=60),
    )
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=False)


def test_operator_side_retry_after_closing_waits_for_the_opening() -> None:
    late = datetime(2024, 6, 5, 21, 0, 5, tzinfo=UTC)  # the window closed during the attempt
    decision = decide(Out.OPERATOR_NO_ANSWER, window=OFFICE, now=late, created_at=late)
    assert isinstance(decision, Retry)
    assert decision.due_at == datetime(2024, 6, 6, 9, 0, tzinfo=UTC)


def test_operator_side_outcomes_ignore_the_daily_cap() -> None:
    decision = decide(Out.OPERATOR_BUSY, attempts_today_for_number=99)
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW


# --------------------------------------------------------------------------- originate failed


def test_failed_originate_retries_in_ten_seconds_without_counting() -> None:
    assert decide(Out.FAILED, client_attempts=4, operator_declines=2) == Retry(
        due_at=NOW + ORIGINATE_RETRY_DELAY,
        counts_client_attempt=False,
        counts_operator_decline=False,
        reason="originate_failed",
    )
    assert timedelta(seconds=10) == ORIGINATE_RETRY_DELAY


def test_failed_originate_at_closing_time_waits_for_the_opening() -> None:
    late = datetime(2024, 6, 5, 20, 59, 55, tzinfo=UTC)
    decision = decide(Out.FAILED, window=OFFICE, now=late, created_at=late)
    assert isinstance(decision, Retry)
    assert decision.due_at == datetime(2024, 6, 6, 9, 0, tzinfo=UTC)


def test_failed_originate_just_before_expiry_fails_as_expired() -> None:
    decision = decide(Out.FAILED, created_at=NOW - timedelta(days=3) + timedelta(seconds=5))
    assert decision == Expired(RETRY_PAST_EXPIRY, counts_client_attempt=False)


# --------------------------------------------------------------------------- odd inputs


def test_calling_hours_that_never_open_fail_the_request() -> None:
    mondays = [date(2024, 6, 3) + timedelta(weeks=n) for n in range(60)]
    window = CallingWindow(days=["mon"], holidays=mondays)
    policy = POLICY.model_copy(update={"expiry_seconds": 400 * 86400})
    assert decide(Out.BUSY, policy=policy, window=window) == Failed(
        "no_calling_hours", counts_client_attempt=True
    )
    assert decide(Out.OPERATOR_BUSY, policy=policy, window=window) == Failed(
        "no_calling_hours", counts_client_attempt=False
    )


def test_request_facts_are_validated() -> None:
    with pytest.raises(ValueError, match="client_attempts"):
        facts(client_attempts=-1)
    with pytest.raises(ValueError, match="attempts_today_for_number"):
        facts(attempts_today_for_number=-1)
    with pytest.raises(ValueError, match="created_at"):
        facts(created_at=datetime(2024, 6, 5))
    with pytest.raises(ValueError, match="due_at"):
        facts(due_at=datetime(2024, 6, 5))


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="now"):
        after_attempt(Out.BUSY, facts(), POLICY, ALWAYS, now=datetime(2024, 6, 5, 12))


def test_decisions_are_frozen() -> None:
    decision = decide(Out.BUSY)
    with pytest.raises(AttributeError):
        decision.reason = "x"  # type: ignore[misc, union-attr]


# --------------------------------------------------------------------------- initial_due


def test_initial_due_is_now_when_open() -> None:
    assert initial_due(NOW, OFFICE) == NOW


def test_initial_due_waits_for_the_opening() -> None:
    night = datetime(2024, 6, 5, 23, 0, tzinfo=UTC)
    assert initial_due(night, OFFICE) == datetime(2024, 6, 6, 9, 0, tzinfo=UTC)


def test_initial_due_honours_a_preferred_time() -> None:
    preferred = datetime(2024, 6, 6, 14, 30, tzinfo=UTC)
    assert initial_due(NOW, OFFICE, preferred) == preferred
    assert initial_due(NOW, OFFICE, NOW - timedelta(hours=1)) == NOW
    assert initial_due(NOW, OFFICE, datetime(2024, 6, 8, 10, tzinfo=UTC)) == datetime(
        2024, 6, 10, 9, 0, tzinfo=UTC
    )


# --------------------------------------------------------------------------- properties

ZONES = ["UTC", "Europe/Moscow", "America/New_York", "Europe/Berlin"]
outcomes = st.sampled_from(list(Out))


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    delays = st.integers(0, 86400)
    return RetryPolicy(
        max_attempts=draw(st.integers(1, 100)),
        busy_delay_seconds=draw(delays),
        no_answer_delay_seconds=draw(delays),
        congestion_delay_seconds=draw(delays),
        unavailable_delay_seconds=draw(delays),
        backoff_factor=draw(st.floats(1.0, 10.0)),
        daily_cap_per_number=draw(st.integers(1, 20)),
        expiry_seconds=draw(st.integers(1, 30 * 86400)),
        max_operator_declines=draw(st.integers(1, 10)),
    )


@st.composite
def calling_windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.times(max_value=time(22)))
    end = draw(st.times(min_value=(datetime.combine(date.min, start) + timedelta(hours=1)).time()))
    return CallingWindow(
        timezone=draw(st.sampled_from(ZONES)),
        days=draw(st.lists(st.sampled_from(ALL_DAYS), min_size=1, max_size=7, unique=True)),
        start=start,
        end=end,
    )


nows = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)).map(lambda d: d.replace(tzinfo=UTC))


@st.composite
def request_facts(draw: st.DrawFn, now: datetime) -> RequestFacts:
    return RequestFacts(
        client_attempts=draw(st.integers(0, 120)),
        operator_declines=draw(st.integers(0, 20)),
        created_at=now - timedelta(seconds=draw(st.integers(0, 40 * 86400))),
        attempts_today_for_number=draw(st.integers(1, 30)),
        due_at=now,
    )


@given(st.data(), outcomes, policies(), calling_windows(), nows)
@settings(max_examples=500, deadline=None)
def test_every_decision_is_sound(
    data: st.DataObject,
    outcome: AttemptOutcome,
    policy: RetryPolicy,
    window: CallingWindow,
    now: datetime,
) -> None:
    request = data.draw(request_facts(now))
    decision = after_attempt(outcome, request, policy, window, now=now)
    expires_at = request.created_at + timedelta(seconds=policy.expiry_seconds)
    if outcome is Out.COMPLETED:
        assert decision == Completed()
        return
    client_side = outcome in CLIENT_OUTCOMES
    if isinstance(decision, Retry):
        assert decision.due_at >= now  # never before now
        assert decision.due_at <= expires_at
        assert is_open(decision.due_at, window)
        assert decision.counts_client_attempt is client_side
        assert decision.counts_operator_decline is (outcome is Out.OPERATOR_DECLINED)
        if client_side:
            assert request.client_attempts + 1 < policy.max_attempts
        if outcome is Out.UNKNOWN:
            assert decision.due_at >= now + UNKNOWN_MIN_DELAY
    elif isinstance(decision, Expired):
        assert decision.counts_client_attempt is client_side
        assert decision.reason in (PAST_EXPIRY, RETRY_PAST_EXPIRY)
    else:
        assert isinstance(decision, Failed)
        assert decision.counts_client_attempt is client_side
        assert decision.reason == "max_attempts"
        assert client_side
        assert request.client_attempts + 1 >= policy.max_attempts
    if client_side and now <= expires_at and request.client_attempts + 1 >= policy.max_attempts:
        assert decision == Failed("max_attempts", counts_client_attempt=True)
    if now > expires_at:
        assert decision == Expired(PAST_EXPIRY, counts_client_attempt=client_side)


@given(
    st.sampled_from(sorted(CLIENT_OUTCOMES)),
    policies(),
    st.integers(0, 98),
    nows,
)
@settings(max_examples=300, deadline=None)
def test_delays_never_shrink_with_more_attempts(
    outcome: AttemptOutcome, policy: RetryPolicy, attempts: int, now: datetime
) -> None:
    policy = policy.model_copy(
        update={"max_attempts": 100, "expiry_seconds": 10**12, "daily_cap_per_number": 1000}
    )
    request = RequestFacts(
        client_attempts=attempts,
        operator_declines=0,
        created_at=now,
        attempts_today_for_number=1,
        due_at=now,
    )
    first = after_attempt(outcome, request, policy, ALWAYS, now=now)
    second = after_attempt(
        outcome, replace(request, client_attempts=attempts + 1), policy, ALWAYS, now=now
    )
    if isinstance(first, Expired):  # only past the end of the calendar
        assert first.reason == RETRY_PAST_EXPIRY
        assert second == first or second == Failed("max_attempts", counts_client_attempt=True)
        return
    assert isinstance(first, Retry)
    if isinstance(second, Retry):
        assert second.due_at >= first.due_at
    else:
        assert isinstance(second, Failed | Expired)
        assert second.reason in {RETRY_PAST_EXPIRY, "max_attempts"}


@given(outcomes, policies(), calling_windows(), nows, st.integers(0, 10))
@settings(max_examples=200, deadline=None)
def test_the_daily_cap_never_brings_a_retry_forward(
    outcome: AttemptOutcome, policy: RetryPolicy, window: CallingWindow, now: datetime, n: int
) -> None:
    request = RequestFacts(
        client_attempts=0,
        operator_declines=0,
        created_at=now,
        attempts_today_for_number=1,
        due_at=now,
    )
    uncapped = after_attempt(outcome, request, policy, window, now=now)
    capped = after_attempt(
        outcome,
        replace(request, attempts_today_for_number=policy.daily_cap_per_number + n),
        policy,
        window,
        now=now,
    )
    if isinstance(capped, Retry):
        assert isinstance(uncapped, Retry)
        assert capped.due_at >= uncapped.due_at
        if outcome in CLIENT_OUTCOMES:
            assert local_date(capped.due_at, window) > local_date(now, window)


@given(calling_windows(), nows, st.none() | nows)
@settings(max_examples=200, deadline=None)
def test_initial_due_is_open_and_not_before_now(
    window: CallingWindow, now: datetime, preferred: datetime | None
) -> None:
    due = initial_due(now, window, preferred)
    assert due >= now
    assert is_open(due, window)
    if preferred is not None:
        assert due >= preferred
