"""Customer categories mean something: the [categories.<name>] rules, mirrored into the
database, set the inbound route's priority, queue skip and sticky ring time, and the
priority of the category's requests. Route-level and statement-level, real PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from callbackd import dialplan_contract as contract
from callbackd.agi.routes import RouteDeps, SingleConnection, inbound_route
from callbackd.agi.session import AgiCall
from callbackd.db.sql import load_queries
from callbackd.domain.inbound import VIP_PRIORITY, CallerFacts, decide_inbound
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.categories import sync_categories
from callbackd.services.inbound import InboundService, Presence
from callbackd.settings import AgiSettings, Campaign, CategoryRule
from tests.agi_lab import crm_campaign

pytestmark = pytest.mark.postgres

CALLER = "79161234567"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
RULES = {
    "vip": CategoryRule(priority=50, skip_queue=True, sticky_ring_seconds=25),
    "gold": CategoryRule(priority=10),
    "plain": CategoryRule(),
}


class InboundCaller:
    """An AgiChannel for the inbound route: records the one MSet it gets."""

    def __init__(self, caller: str = CALLER) -> None:
        self.env: Mapping[str, str] = {
            "agi_channel": "Local/x;2",
            "agi_callerid": caller,
            "agi_uniqueid": "1.2",
            "agi_arg_1": contract.ROUTE_INBOUND,
            "agi_arg_2": "lab-sales",
        }
        self.hung_up = False
        self.variables: dict[str, str] = {}

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        if command.startswith("EXEC MSet"):
            body = command.split('"', 2)[1]
            for item in body.split(","):
                name, value = item.split("=", 1)
                self.variables[name] = value
        return "200 result=0", []


class _NoPresence:
    async def available(self, queue: str, interface: str) -> bool:
        return False


async def _customer(db: Any, category: str, priority: int = 0, skip: bool = False) -> None:
    await db.execute(
        "INSERT INTO customers (number, category, priority, skip_queue) VALUES ($1, $2, $3, $4)",
        f"+{CALLER}",
        category,
        priority,
        skip,
    )


async def _route(db: Any, **agi: Any) -> dict[str, str]:
    caller = InboundCaller()

    def presence(_call: AgiCall) -> Presence:
        return _NoPresence()

    deps = RouteDeps(
        database=SingleConnection(db),
        inbound=InboundService(policy=NumberPolicy.build("RU"), pbx="lab", sticky_days=30),
        agi=AgiSettings.model_validate(agi),
        campaigns={"lab-sales": ("sales", Campaign.model_validate(crm_campaign()))},
        presence=presence,
    )
    await inbound_route(AgiCall(caller), deps)
    return caller.variables


async def test_a_vip_category_skips_the_queue_and_rings_longer(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "vip")
    variables = await _route(db, sticky_ring_seconds=15)
    assert variables[contract.VAR_SKIP_QUEUE] == "1"
    assert variables[contract.VAR_PRIORITY] == str(VIP_PRIORITY)
    assert variables[contract.VAR_STICKY_RING] == "25"
    assert variables[contract.VAR_CATEGORY] == "vip"


async def test_a_category_priority_applies_when_the_customer_has_none(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "gold")
    variables = await _route(db, sticky_ring_seconds=15)
    assert variables[contract.VAR_PRIORITY] == "10"
    assert variables[contract.VAR_SKIP_QUEUE] == "0"
    assert variables[contract.VAR_STICKY_RING] == "15"  # unset in the rule: agi's


async def test_the_customers_own_values_win(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "gold", priority=3, skip=True)
    variables = await _route(db)
    assert variables[contract.VAR_SKIP_QUEUE] == "1"  # the customer's own skip_queue
    await db.execute("UPDATE customers SET skip_queue = false")
    assert (await _route(db))[contract.VAR_PRIORITY] == "3"  # not the category's 10


async def test_an_unconfigured_category_is_a_label_only(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "bronze")
    variables = await _route(db, sticky_ring_seconds=15)
    assert (variables[contract.VAR_PRIORITY], variables[contract.VAR_SKIP_QUEUE]) == ("0", "0")
    assert variables[contract.VAR_CATEGORY] == "bronze"


async def test_the_table_follows_the_configuration(db: Any) -> None:
    await sync_categories(db, RULES)
    await sync_categories(db, {"vip": CategoryRule(priority=70)})
    rows = await db.fetch("SELECT * FROM customer_categories ORDER BY name")
    assert [(r["name"], r["priority"], r["skip_queue"]) for r in rows] == [("vip", 70, None)]
    await sync_categories(db, {})
    assert await db.fetchval("SELECT count(*) FROM customer_categories") == 0


async def test_requests_get_the_category_priority_on_top_of_the_campaigns(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "gold")
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'lab', 'lab-sales', 'operator_first') RETURNING id"
    )
    capture = load_queries("capture")["capture_abandon"]
    row = await db.fetchrow(
        capture,
        "lab",
        "1700000000.1",
        "lab-sales",
        campaign_id,
        f"+{CALLER}",
        5,  # the campaign's priority
        NOW,
        NOW,
        NOW,
        None,
        None,
        None,
        None,
        None,
    )
    assert row is not None
    assert row["request"]["priority"] == 15  # the pool's codec decodes json
    # The customer's own priority wins over the category's.
    await db.execute("UPDATE customers SET priority = 2")
    assert await db.fetchval("SELECT callbackd_customer_priority($1)", f"+{CALLER}") == 2
    assert await db.fetchval("SELECT callbackd_customer_priority('+79990000000')") == 0


def test_the_decision_without_a_category_rule_is_unchanged() -> None:
    decision = decide_inbound(CallerFacts(category="vip", priority=4), sticky_ok=False)
    assert (decision.priority, decision.skip_queue, decision.sticky_ring_seconds) == (
        4,
        False,
        None,
    )


async def test_ivr_and_caller_pays_requests_get_the_category_priority(db: Any) -> None:
    await sync_categories(db, RULES)
    await _customer(db, "gold")
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('sales', 'lab', 'lab-sales', 'operator_first') RETURNING id"
    )
    ivr = await db.fetchrow(
        load_queries("agi")["store_ivr_request"],
        "sales",
        f"+{CALLER}",
        1,
        NOW,
        None,
        "lab",
        "lab-sales",
        None,
        "1.2",
        None,
    )
    priority = await db.fetchval("SELECT priority FROM callback_requests WHERE id = $1", ivr["id"])
    assert priority == 11
    await db.execute("UPDATE callback_requests SET status = 'cancelled', closed_at = now()")
    paid = await db.fetchrow(
        load_queries("modes")["upsert_request_from_caller_pays"],
        campaign_id,
        f"+{CALLER}",
        2,
        NOW,
        "lab",
        "lab-sales",
        "1.3",
        None,
    )
    assert paid["priority"] == 12
