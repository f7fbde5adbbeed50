"""Dialer modes: the pure decisions, and the SQL and services on the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from callbackd.db.models import AttemptOutcome, CallbackRequest
from callbackd.db.pool import connect
from callbackd.db.sql import load_queries
from callbackd.domain.capture import CampaignRef
from callbackd.domain.modes import (
    CallerPaysSkip,
    CallerPaysStore,
    client_first_slots,
    client_is_through,
    judge_caller_pays,
    operators_to_remind,
    outcome_of_client_originate_failure,
    outcome_of_client_stage,
)
from callbackd.services.call_now import (
    InvalidOperator,
    RequestNotFound,
    RequestNotPending,
    assign,
    request_call_now,
)
from callbackd.services.caller_pays import CallerPaysCapture, CallerPaysOutcome
from callbackd.settings import ConfigError, load_settings
from tests.caller_pays_refs import HOTLINE, POLICY

Q = load_queries("modes")
D = load_queries("dialer")


# ----------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        (3, AttemptOutcome.NO_ANSWER),
        (5, AttemptOutcome.BUSY),
        (8, AttemptOutcome.CONGESTION),
        (1, AttemptOutcome.UNAVAILABLE),
        (0, AttemptOutcome.FAILED),
        (42, AttemptOutcome.FAILED),
    ],
)
def test_client_originate_failures(reason: int, outcome: AttemptOutcome) -> None:
    assert outcome_of_client_originate_failure(reason) is outcome


@pytest.mark.parametrize(
    ("stage", "outcome", "through"),
    [
        ("queued", AttemptOutcome.COMPLETED, True),
        ("landed", AttemptOutcome.COMPLETED, True),
        ("client_declined", AttemptOutcome.CLIENT_DECLINED, False),
        ("invalid", AttemptOutcome.FAILED, False),
        ("client_answered", AttemptOutcome.SHORT_CALL, False),
        ("client_confirmed", AttemptOutcome.SHORT_CALL, False),
        ("", AttemptOutcome.FAILED, False),
        ("operator_answered", AttemptOutcome.FAILED, False),
    ],
)
def test_client_stages(stage: str, outcome: AttemptOutcome, through: bool) -> None:
    assert outcome_of_client_stage(stage) is outcome
    assert client_is_through(stage) is through


def test_client_first_slots_without_operators_is_the_concurrency_room() -> None:
    kwargs: dict[str, Any] = {"require_free_operator": False, "free_operators": 0}
    assert client_first_slots(max_concurrent=5, in_flight=0, callers_waiting=9, **kwargs) == 5
    assert client_first_slots(max_concurrent=5, in_flight=4, callers_waiting=0, **kwargs) == 1
    assert client_first_slots(max_concurrent=5, in_flight=7, callers_waiting=0, **kwargs) == 0


def test_client_first_slots_with_free_operators_leaves_live_callers_theirs() -> None:
    def slots(free: int, waiting: int, in_flight: int = 0) -> int:
        return client_first_slots(
            max_concurrent=5,
            in_flight=in_flight,
            require_free_operator=True,
            free_operators=free,
            callers_waiting=waiting,
        )

    assert slots(0, 0) == 0
    assert slots(3, 0) == 3
    assert slots(3, 2) == 1
    assert slots(3, 3) == 0
    assert slots(3, 0, in_flight=2) == 1  # two clients already ringing for those operators
    assert slots(9, 0) == 5  # never above the concurrency cap


def test_caller_pays_verdicts() -> None:
    campaigns = {"hotline": HOTLINE}
    assert judge_caller_pays("pbx", "hotline", "79161234567", campaigns, POLICY) == CallerPaysStore(
        campaign=HOTLINE, number="+79161234567"
    )
    assert judge_caller_pays("pbx", "", "79161234567", campaigns, POLICY) == CallerPaysSkip(
        "no_client_first_campaign"
    )
    assert judge_caller_pays("pbx", "sales", "79161234567", campaigns, POLICY) == CallerPaysSkip(
        "no_client_first_campaign"
    )
    assert judge_caller_pays("branch", "hotline", "79161234567", campaigns, POLICY) == (
        CallerPaysSkip("campaign_of_another_pbx")
    )
    withheld = judge_caller_pays("pbx", "hotline", "", campaigns, POLICY)
    assert isinstance(withheld, CallerPaysSkip)
    assert withheld.reason == "withheld"
    emergency = judge_caller_pays("pbx", "hotline", "112", campaigns, POLICY)
    assert isinstance(emergency, CallerPaysSkip)
    assert emergency.reason == "emergency"


def test_operators_to_remind_skips_those_being_rung() -> None:
    assert operators_to_remind(["B", "A", "C"], ["C", "X"]) == ["A", "B"]
    assert operators_to_remind([], ["A"]) == []


# ----------------------------------------------------------------- database

OP1, OP2 = "Local/op1@lab-operators", "Local/op2@lab-operators"


async def _campaign(db: Any, name: str = "sales", mode: str = "operator_first") -> int:
    campaign_id: int = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) VALUES ($1, 'pbx', $1, $2) RETURNING id",
        name,
        mode,
    )
    return campaign_id


async def _request(db: Any, campaign_id: int, number: str, **extra: Any) -> int:
    request_id: int = await db.fetchval(
        "INSERT INTO callback_requests (campaign_id, number, source, due_at) "
        "VALUES ($1, $2, 'api', now() + $3::interval) RETURNING id",
        campaign_id,
        number,
        extra.get("due_in", timedelta(0)),
    )
    return request_id


async def _claim(
    db: Any, campaign_id: int, operator: str, *, ordinary: bool
) -> CallbackRequest | None:
    """The dialer's claim for ``operator``: call-now requests only (``ordinary`` False, as in
    CRM-task mode) or call-now first, then the ordinary order."""
    attempt = uuid.uuid4()
    row = await db.fetchrow(
        D["claim_for_operator"],
        campaign_id,
        attempt,
        "pbx",
        operator,
        f"c-{attempt}",
        f"c-{attempt}-x",
        "me",
        ordinary,
    )
    return None if row is None else CallbackRequest.model_validate(row["request"])


async def test_call_now_errors_are_typed(db: Any) -> None:
    campaign = await _campaign(db)
    request_id = await _request(db, campaign, "+79161234567")
    with pytest.raises(RequestNotFound):
        await request_call_now(db, request_id + 1000)
    with pytest.raises(InvalidOperator):
        await request_call_now(db, request_id, "PJSIP/1&Local/evil")
    with pytest.raises(InvalidOperator):
        await assign(db, request_id, "PJSIP/1,30")
    await db.execute("UPDATE callback_requests SET status = 'dialing' WHERE id = $1", request_id)
    with pytest.raises(RequestNotPending) as raised:
        await request_call_now(db, request_id)
    assert raised.value.status == "dialing"
    with pytest.raises(RequestNotPending):
        await assign(db, request_id, OP1)


async def test_call_now_is_claimed_first_whatever_its_due_time_and_only_once(db: Any) -> None:
    campaign = await _campaign(db)
    ordinary = await _request(db, campaign, "+79161234567")
    later = await _request(db, campaign, "+79161234568", due_in=timedelta(hours=3))
    asked = await request_call_now(db, later)
    assert asked.call_now_requested_at is not None
    claimed = await _claim(db, campaign, OP1, ordinary=False)
    assert claimed is not None
    assert claimed.id == later
    assert claimed.call_now_requested_at is None  # a one-shot
    assert await _claim(db, campaign, OP2, ordinary=False) is None
    claimed = await _claim(db, campaign, OP2, ordinary=True)
    assert claimed is not None
    assert claimed.id == ordinary


async def test_an_assigned_request_goes_only_to_its_operator(db: Any) -> None:
    campaign = await _campaign(db)
    request_id = await _request(db, campaign, "+79161234567")
    assigned = await assign(db, request_id, OP2)
    assert assigned.assigned_operator == OP2
    assert await _claim(db, campaign, OP1, ordinary=True) is None
    await request_call_now(db, request_id)  # keeps the assignment
    assert await _claim(db, campaign, OP1, ordinary=False) is None
    claimed = await _claim(db, campaign, OP2, ordinary=False)
    assert claimed is not None
    assert claimed.id == request_id


async def test_call_now_to_a_given_operator_reassigns(db: Any) -> None:
    campaign = await _campaign(db)
    request_id = await _request(db, campaign, "+79161234567")
    await assign(db, request_id, OP1)
    asked = await request_call_now(db, request_id, OP2)
    assert asked.assigned_operator == OP2
    assert await _claim(db, campaign, OP1, ordinary=False) is None
    assert await _claim(db, campaign, OP2, ordinary=False) is not None


async def test_two_instances_claim_one_reminder_per_interval(database: str) -> None:
    one, two = await connect(database), await connect(database)
    try:
        campaign = await _campaign(one, "crm", "crm_task")

        async def claim(conn: Any, name: str) -> Any:
            reminder = uuid.uuid4()
            return await conn.fetchrow(
                Q["claim_reminder"],
                reminder,
                "pbx",
                OP1,
                f"callbackd-reminder-{reminder}",
                campaign,
                timedelta(minutes=5),
                3,
                name,
            )

        for _ in range(5):
            rows = await asyncio.gather(claim(one, "one"), claim(two, "two"))
            assert sum(row is not None for row in rows) <= 1
        assert await one.fetchval("SELECT count(*) FROM reminder_calls") == 1
        other = await one.fetchrow(
            Q["claim_reminder"],
            uuid.uuid4(),
            "pbx",
            OP2,
            "x",
            campaign,
            timedelta(minutes=5),
            1,
            "one",
        )
        assert other is not None  # per operator
        await one.execute(
            "UPDATE operator_reminders SET last_reminded_at = now() - interval '6 minutes'"
        )
        assert await claim(two, "two") is not None  # the interval passed
    finally:
        await one.close()
        await two.close()


async def test_reminder_candidates_count_assigned_pending_requests(db: Any) -> None:
    campaign = await _campaign(db, "crm", "crm_task")
    for n in range(3):
        request_id = await _request(db, campaign, f"+7916123456{n}")
        await assign(db, request_id, OP1 if n < 2 else OP2)
    await db.execute("UPDATE callback_requests SET created_at = now() - interval '1 hour'")
    fresh = await _request(db, campaign, "+79161234569")
    await assign(db, fresh, OP2)
    rows = await db.fetch(Q["reminder_candidates"], campaign, [OP1, OP2], timedelta(minutes=30))
    assert {r["operator"]: r["pending"] for r in rows} == {OP1: 2, OP2: 2}
    rows = await db.fetch(Q["reminder_candidates"], campaign, [OP1], timedelta(hours=2))
    assert rows == []


async def test_caller_pays_is_stored_once_per_uniqueid(database: str, db: Any) -> None:
    campaign = await _campaign(db, "hotline", "client_first")
    ref = CampaignRef(
        id=campaign,
        name="hotline",
        pbx="pbx",
        queue="hotline",
        min_hold_seconds=0,
        priority=5,
        initial_delay=timedelta(0),
        expiry=timedelta(days=1),
    )
    woken: list[bool] = []
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        capture = CallerPaysCapture(
            pool, {"hotline": ref}, POLICY, on_stored=lambda: woken.append(True)
        )

        async def record(uniqueid: str, number: str, name: str = "hotline") -> CallerPaysOutcome:
            return await capture.record(
                pbx="pbx", uniqueid=uniqueid, campaign_name=name, raw_number=number
            )

        assert await record("1.1", "79161234567") is CallerPaysOutcome.CREATED
        assert await record("1.1", "79161234567") is CallerPaysOutcome.DUPLICATE
        assert await record("1.2", "+79161234567") is CallerPaysOutcome.MERGED
        assert await record("1.3", "") is CallerPaysOutcome.SKIPPED
        assert await record("1.4", "79161234567", "nope") is CallerPaysOutcome.SKIPPED
    finally:
        await pool.close()
    rows = await db.fetch("SELECT * FROM callback_requests")
    assert [(r["number"], r["source"], r["priority"]) for r in rows] == [
        ("+79161234567", "caller_pays", 5)
    ]
    calls = dict(await db.fetch("SELECT uniqueid, outcome FROM caller_pays_calls"))
    assert calls == {
        "1.1": "stored",
        "1.2": "merged",
        "1.3": "withheld",
        "1.4": "no_client_first_campaign",
    }
    assert len(woken) == 2


async def test_client_first_claim_takes_call_now_first_and_due_requests_only(db: Any) -> None:
    campaign = await _campaign(db, "hotline", "client_first")
    due = await _request(db, campaign, "+79161234567")
    later = await _request(db, campaign, "+79161234568", due_in=timedelta(hours=1))
    asked = await _request(db, campaign, "+79161234569", due_in=timedelta(hours=2))
    await request_call_now(db, asked)

    async def claim() -> Any:
        attempt = uuid.uuid4()
        return await db.fetchrow(
            Q["claim_client_first"], campaign, attempt, "pbx", f"callbackd-{attempt}", "me"
        )

    first = await claim()
    assert CallbackRequest.model_validate(first["request"]).id == asked
    assert first["attempt"]["mode"] == "client_first"
    assert first["attempt"]["operator_interface"] is None
    assert first["attempt"]["client_channel_id"] == first["attempt"]["operator_channel_id"]
    second = await claim()
    assert CallbackRequest.model_validate(second["request"]).id == due
    assert await claim() is None  # the last one is due in an hour
    assert await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", later) == (
        "pending"
    )


def test_client_first_queue_names_must_pass_the_dialplan_check() -> None:
    ok = load_settings(
        None, env={}, campaigns={"hotline": {"mode": "client_first", "caller_id": "+15551234567"}}
    )
    assert ok.campaigns["hotline"].client_first.require_free_operator is False
    with pytest.raises(ConfigError) as raised:
        load_settings(
            None,
            env={},
            campaigns={
                "hotline": {
                    "mode": "client_first",
                    "queue": "help+desk",
                    "caller_id": "+15551234567",
                }
            },
        )
    assert raised.value.key == "campaigns.hotline.queue"
    # Other modes keep accepting any Asterisk queue name.
    load_settings(
        None,
        env={},
        campaigns={"sales": {"queue": "Sales+Support", "caller_id": "+15551234567"}},
    )
