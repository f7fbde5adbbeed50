"""The HTTP API end to end: a real daemon process serving on 127.0.0.1, real Postgres."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callbackd.db.pool import connect, create_pool
from callbackd.domain.numbers import NumberPolicy
from callbackd.http.server import OPERATIONS
from callbackd.lab.postgres import LabPostgres
from callbackd.services.requests import RequestService
from tests.api_daemon import ApiDaemon, api_daemon

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def daemon(
    lab_postgres: LabPostgres, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiDaemon]:
    name = f"api_{uuid.uuid4().hex[:12]}"
    with (
        lab_postgres.database(name, template=migrated_template) as dsn,
        api_daemon(dsn, tmp_path_factory.mktemp("api")) as running,
    ):
        yield running


@pytest.fixture
async def http(daemon: ApiDaemon) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(daemon.base_url, timeout=timeout) as session:
        yield session


@pytest.fixture
async def conn(daemon: ApiDaemon) -> AsyncIterator[Any]:
    db = await connect(daemon.dsn)
    try:
        yield db
    finally:
        await db.close()


def mobile() -> str:
    """A fresh valid Russian mobile number in E.164."""
    return f"+7916{secrets.randbelow(10**7):07d}"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    token: dict[str, str] | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: Any = None,
) -> tuple[int, Any, Any]:
    all_headers = {**(token or {}), **(headers or {})}
    async with http.request(
        method, path, json=body, data=data, headers=all_headers, params=params
    ) as reply:
        text = await reply.text()
        payload = json.loads(text) if text and "json" in reply.content_type else text
        return reply.status, payload, reply.headers


async def create(http: aiohttp.ClientSession, daemon: ApiDaemon, **fields: Any) -> dict[str, Any]:
    body = {"campaign": "sales", "number": mobile(), **fields}
    status, payload, _ = await call(http, "POST", "/v1/callbacks", token=daemon.auth(), body=body)
    assert status == 201, payload
    return dict(payload)


# --------------------------------------------------------------------------- document, auth


async def test_openapi_document_is_served_without_a_token(
    http: aiohttp.ClientSession,
) -> None:
    status, doc, _ = await call(http, "GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    assert {"/v1/callbacks", "/v1/callbacks/{id}/cancel", "/v1/customers/{number}"} <= set(
        doc["paths"]
    )
    create_op = doc["paths"]["/v1/callbacks"]["post"]
    schema_ref = create_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert {"number", "campaign", "queue", "preferred_at", "timezone", "priority"} <= set(
        schema["properties"]
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/callbacks"),
        ("POST", "/v1/callbacks"),
        ("GET", "/v1/health"),
        ("GET", "/metrics"),
        ("PUT", "/v1/customers/79161234567"),
    ],
)
async def test_missing_or_unknown_token_is_401_problem(
    http: aiohttp.ClientSession, method: str, path: str
) -> None:
    for token in (
        None,
        {"Authorization": "Bearer not-a-configured-token"},
        {"Authorization": "Basic eDp5"},
    ):
        status, problem, headers = await call(http, method, path, token=token, body={})
        assert status == 401
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["status"] == 401
        assert headers["WWW-Authenticate"] == "Bearer"


async def test_read_token_reads_but_cannot_write(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    number = mobile()
    status, _, _ = await call(http, "GET", "/v1/callbacks", token=daemon.auth("reader"))
    assert status == 200
    status, problem, _ = await call(
        http,
        "POST",
        "/v1/callbacks",
        token=daemon.auth("reader"),
        body={"campaign": "sales", "number": number},
    )
    assert status == 403
    assert problem["title"] == "Forbidden"
    status, _, _ = await call(
        http, "PUT", f"/v1/customers/{number[1:]}", token=daemon.auth("reader"), body={}
    )
    assert status == 403
    assert (
        await conn.fetchval("SELECT count(*) FROM callback_requests WHERE number = $1", number) == 0
    )
    assert await conn.fetchval("SELECT count(*) FROM customers WHERE number = $1", number) == 0


# --------------------------------------------------------------------------- create and get


async def test_create_normalises_the_number_and_show_lists_attempts(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    national = "8 (916) " + f"{secrets.randbelow(10**7):07d}"
    e164 = "+7916" + national[-7:]
    local = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0, tzinfo=None)
    body = {
        "queue": "lab-sales",
        "number": national,
        "preferred_at": local.isoformat(),
        "timezone": "Europe/Moscow",
        "note": "Wants a quote — urgent",
        "external_id": "crm-42",
    }
    status, created, headers = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), body=body
    )
    assert status == 201, created
    assert created["number"] == e164
    assert created["campaign"] == "sales"
    assert created["status"] == "pending"
    assert created["source"] == "api"
    assert created["priority"] == 5  # the campaign's
    assert created["attempts"] == []
    assert headers["Location"] == f"/v1/callbacks/{created['id']}"
    moscow = local - timedelta(hours=3)  # Moscow is UTC+3 all year
    assert datetime.fromisoformat(created["due_at"]) == moscow.replace(tzinfo=UTC)
    row = await conn.fetchrow("SELECT * FROM callback_requests WHERE id = $1", created["id"])
    assert row["number"] == e164
    assert row["note"] == "Wants a quote — urgent"
    assert row["external_id"] == "crm-42"

    attempt = uuid.uuid4()
    await conn.execute(
        "INSERT INTO attempts (id, request_id, number, pbx, operator_interface, "
        "operator_channel_id, client_channel_id, state, outcome, claimed_by, ended_at) "
        "VALUES ($1, $2, $3, 'lab', 'PJSIP/101', $4, $5, 'finished', 'busy', 'x', now())",
        attempt,
        created["id"],
        e164,
        f"op-{attempt}",
        f"cl-{attempt}",
    )
    status, shown, _ = await call(
        http, "GET", f"/v1/callbacks/{created['id']}", token=daemon.auth("reader")
    )
    assert status == 200
    assert [(a["id"], a["outcome"], a["operator"]) for a in shown["attempts"]] == [
        (str(attempt), "busy", "PJSIP/101")
    ]
    status, problem, _ = await call(
        http, "GET", "/v1/callbacks/999999999", token=daemon.auth("reader")
    )
    assert status == 404
    assert problem["status"] == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"campaign": "sales", "number": "112"}, 422, "refused"),
        ({"campaign": "sales", "number": "+7 916 12"}, 422, "refused"),
        ({"campaign": "sales", "number": "+1 202 555 0123"}, 422, "blocked_prefix"),
        ({"campaign": "nope", "number": "+79161234567"}, 422, "unknown campaign"),
        ({"queue": "not-a-queue", "number": "+79161234567"}, 422, "no campaign"),
        ({"number": "+79161234567"}, 422, "exactly one"),
        ({"campaign": "sales", "number": "+79161234567", "bogus": 1}, 422, "bogus"),
        ({"campaign": "sales", "number": "+79161234567", "note": "a\x00b"}, 422, "NUL"),
        (
            {"campaign": "sales", "number": "+79161234567", "preferred_at": "2030-01-01T10:00"},
            422,
            "offset",
        ),
        (
            {
                "campaign": "sales",
                "number": "+79161234567",
                "preferred_at": "2030-01-01T10:00",
                "timezone": "Mars/Olympus",
            },
            422,
            "time zone",
        ),
        ([1, 2], 422, "object"),
    ],
)
async def test_bad_input_is_a_4xx_problem(
    http: aiohttp.ClientSession, daemon: ApiDaemon, body: Any, status: int, fragment: str
) -> None:
    got, problem, headers = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), body=body
    )
    assert got == status, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert fragment.lower() in json.dumps(problem).lower()


async def test_malformed_json_is_400_and_a_large_body_413(
    http: aiohttp.ClientSession, daemon: ApiDaemon
) -> None:
    headers = {"Content-Type": "application/json"}
    status, problem, _ = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), data=b'{"number": ', headers=headers
    )
    assert status == 400
    assert problem["title"] == "Malformed JSON"
    big = json.dumps({"campaign": "sales", "number": "+79161234567", "note": "x" * 5000})
    status, problem, _ = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), data=big.encode(), headers=headers
    )
    assert status == 413
    assert problem["status"] == 413
    deep = b"[" * 2000 + b"]" * 2000
    status, _, _ = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), data=deep, headers=headers
    )
    assert status in (400, 422)


async def test_a_second_open_request_for_the_number_is_409(
    http: aiohttp.ClientSession, daemon: ApiDaemon
) -> None:
    first = await create(http, daemon)
    status, problem, _ = await call(
        http,
        "POST",
        "/v1/callbacks",
        token=daemon.auth(),
        body={"campaign": "sales", "number": first["number"]},
    )
    assert status == 409
    assert problem["existing_id"] == first["id"]


# --------------------------------------------------------------------------- idempotency


async def test_same_idempotency_key_twice_gives_one_row_and_the_same_response(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    number = mobile()
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"campaign": "sales", "number": number, "note": "first"}
    first = await call(http, "POST", "/v1/callbacks", token=daemon.auth(), body=body, headers=key)
    reordered = {"note": "first", "number": number, "campaign": "sales"}
    second = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), body=reordered, headers=key
    )
    assert first[0] == second[0] == 201
    assert first[1] == second[1]
    assert second[2]["Idempotent-Replayed"] == "true"
    assert (
        await conn.fetchval("SELECT count(*) FROM callback_requests WHERE number = $1", number) == 1
    )

    other = {**body, "note": "changed"}
    status, problem, _ = await call(
        http, "POST", "/v1/callbacks", token=daemon.auth(), body=other, headers=key
    )
    assert status == 422
    assert "different payload" in problem["detail"]
    assert (
        await conn.fetchval("SELECT count(*) FROM callback_requests WHERE number = $1", number) == 1
    )


async def test_twenty_concurrent_requests_with_one_key_create_one_row(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    number = mobile()
    key = {"Idempotency-Key": f"burst-{uuid.uuid4()}"}
    body = {"campaign": "support", "number": number}

    async def one() -> tuple[int, Any, Any]:
        return await call(
            http, "POST", "/v1/callbacks", token=daemon.auth(), body=body, headers=key
        )

    replies = await asyncio.gather(*(one() for _ in range(20)))
    assert {status for status, _, _ in replies} == {201}
    assert len({json.dumps(payload, sort_keys=True) for _, payload, _ in replies}) == 1
    assert sum(1 for _, _, h in replies if h.get("Idempotent-Replayed") == "true") == 19
    assert (
        await conn.fetchval("SELECT count(*) FROM callback_requests WHERE number = $1", number) == 1
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM api_idempotency_keys WHERE key = $1", key["Idempotency-Key"]
        )
        == 1
    )


# --------------------------------------------------------------------------- list


async def test_list_filters_and_keyset_pagination(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    before = datetime.now(UTC)
    made = [await create(http, daemon, campaign="support") for _ in range(5)]
    await conn.execute(
        "UPDATE callback_requests SET status = 'completed', closed_at = now() WHERE id = $1",
        made[0]["id"],
    )
    reader = daemon.auth("reader")
    params = [("campaign", "support"), ("created_from", before.isoformat()), ("limit", "2")]
    pages: list[list[int]] = []
    cursor = None
    while True:
        query = params + ([("cursor", cursor)] if cursor else [])
        status, page, _ = await call(http, "GET", "/v1/callbacks", token=reader, params=query)
        assert status == 200, page
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [i for page in pages for i in page]
    assert ids == sorted((m["id"] for m in made), reverse=True)
    assert all(len(page) <= 2 for page in pages)

    status, page, _ = await call(
        http,
        "GET",
        "/v1/callbacks",
        token=reader,
        params=[
            ("campaign", "support"),
            ("created_from", before.isoformat()),
            ("status", "completed"),
            ("status", "cancelled"),
        ],
    )
    assert [item["id"] for item in page["items"]] == [made[0]["id"]]
    national = "8" + made[3]["number"][2:]
    status, page, _ = await call(
        http, "GET", "/v1/callbacks", token=reader, params={"number": national}
    )
    assert [item["id"] for item in page["items"]] == [made[3]["id"]]
    # a number the site never calls (prefix 1 is blocked) can still be looked up
    status, page, _ = await call(
        http, "GET", "/v1/callbacks", token=reader, params={"number": "+12025550123"}
    )
    assert (status, page["items"]) == (200, [])
    status, page, _ = await call(
        http,
        "GET",
        "/v1/callbacks",
        token=reader,
        params={
            "campaign": "support",
            "created_to": before.isoformat(),
            "created_from": before.isoformat(),
        },
    )
    assert page["items"] == []
    for bad in (
        {"status": "lost"},
        {"limit": "0"},
        {"cursor": "!!"},
        {"created_from": "yesterday"},
    ):
        status, problem, _ = await call(http, "GET", "/v1/callbacks", token=reader, params=bad)
        assert status == 422, (bad, problem)


# --------------------------------------------------------------------------- changes


async def test_cancel_reschedule_call_now_assign_apply_to_pending_only(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    auth = daemon.auth()
    one = await create(http, daemon)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    status, moved, _ = await call(
        http,
        "POST",
        f"/v1/callbacks/{one['id']}/reschedule",
        token=auth,
        body={"preferred_at": later.isoformat()},
    )
    assert status == 200, moved
    assert datetime.fromisoformat(moved["due_at"]) == later
    status, assigned, _ = await call(
        http,
        "POST",
        f"/v1/callbacks/{one['id']}/assign",
        token=auth,
        body={"operator": "PJSIP/101"},
    )
    assert status == 200
    assert assigned["assigned_operator"] == "PJSIP/101"
    status, now_, _ = await call(http, "POST", f"/v1/callbacks/{one['id']}/call-now", token=auth)
    assert status == 200
    assert now_["call_now_requested_at"] is not None
    assert datetime.fromisoformat(now_["due_at"]) <= datetime.now(UTC)
    status, problem, _ = await call(
        http,
        "POST",
        f"/v1/callbacks/{one['id']}/assign",
        token=auth,
        body={"operator": "PJSIP/1&x"},
    )
    assert status == 422

    status, cancelled, _ = await call(
        http,
        "POST",
        f"/v1/callbacks/{one['id']}/cancel",
        token=auth,
        body={"reason": "CRM closed it"},
    )
    assert status == 200
    assert (cancelled["status"], cancelled["status_reason"]) == ("cancelled", "CRM closed it")
    assert cancelled["closed_at"] is not None
    for action, body in (
        ("cancel", None),
        ("call-now", None),
        ("reschedule", {"preferred_at": later.isoformat()}),
    ):
        status, problem, _ = await call(
            http, "POST", f"/v1/callbacks/{one['id']}/{action}", token=auth, body=body
        )
        assert status == 409, (action, problem)
        assert problem["current_status"] == "cancelled"

    dialing = await create(http, daemon)
    await conn.execute(
        "UPDATE callback_requests SET status = 'dialing' WHERE id = $1", dialing["id"]
    )
    status, problem, _ = await call(
        http, "POST", f"/v1/callbacks/{dialing['id']}/cancel", token=auth
    )
    assert status == 409
    assert problem["current_status"] == "dialing"
    assert (
        await conn.fetchval("SELECT status FROM callback_requests WHERE id = $1", dialing["id"])
        == "dialing"
    )
    status, _, _ = await call(http, "POST", "/v1/callbacks/123456789/cancel", token=auth)
    assert status == 404


# --------------------------------------------------------------------------- customers


async def test_customers_upsert_get_list_delete_and_priority_applies(
    http: aiohttp.ClientSession, daemon: ApiDaemon, conn: Any
) -> None:
    auth = daemon.auth()
    number = mobile()
    path = f"/v1/customers/{number[1:]}"
    status, customer, _ = await call(
        http, "PUT", path, token=auth, body={"category": "vip", "priority": 50, "skip_queue": True}
    )
    assert status == 200, customer
    assert (
        customer["number"],
        customer["category"],
        customer["priority"],
        customer["skip_queue"],
    ) == (number, "vip", 50, True)
    status, customer, _ = await call(
        http, "PUT", path, token=auth, body={"category": "gold", "priority": 20}
    )
    assert (customer["category"], customer["priority"], customer["skip_queue"]) == (
        "gold",
        20,
        False,
    )
    status, shown, _ = await call(
        http, "GET", f"/v1/customers/{number}", token=daemon.auth("reader")
    )
    assert status == 200
    assert shown == customer
    status, page, _ = await call(
        http, "GET", "/v1/customers", token=daemon.auth("reader"), params={"category": "gold"}
    )
    assert number in [c["number"] for c in page["items"]]

    request = await create(http, daemon, number=number)
    assert request["priority"] == 5 + 20  # campaign + customer

    status, _, _ = await call(http, "DELETE", path, token=auth)
    assert status == 204
    assert await conn.fetchval("SELECT count(*) FROM customers WHERE number = $1", number) == 0
    status, _, _ = await call(http, "GET", path, token=auth)
    assert status == 404
    status, _, _ = await call(http, "DELETE", path, token=auth)
    assert status == 404
    status, _, _ = await call(http, "PUT", "/v1/customers/12", token=auth, body={})
    assert status == 422


# --------------------------------------------------------------------------- health, metrics, logs


async def test_health_metrics_and_request_id(
    http: aiohttp.ClientSession, daemon: ApiDaemon
) -> None:
    reader = daemon.auth("reader")
    status, health, headers = await call(
        http, "GET", "/v1/health", token=reader, headers={"X-Request-Id": "trace-health-1"}
    )
    assert status == 503  # degraded: no PBX
    assert headers["X-Request-Id"] == "trace-health-1"
    assert health["components"]["database"] == {"healthy": True}
    assert health["components"]["ami"]["lab"]["state"] != "up"  # no PBX on that port
    assert health["status"] == "degraded"
    assert "http-api" in health["components"]["tasks"]
    assert "outbox-retention" in health["components"]["tasks"]  # retention_days: 7 by default

    # same keep-alive connection, no token: the previous request's client is not carried over
    await call(http, "GET", "/openapi.json", headers={"X-Request-Id": "trace-doc-1"})
    await create(http, daemon, campaign="support")
    status, text, headers = await call(http, "GET", "/metrics", token=reader)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert 'callbackd_requests{campaign="support",status="pending"}' in text
    assert 'callbackd_ami_up{pbx="lab"} 0.0' in text
    assert "callbackd_capture_events_total" in text
    assert "callbackd_dialer_in_flight 0.0" in text
    assert 'callbackd_outbox_pruned_total{kind="event"} 0.0' in text
    assert 'callbackd_http_requests_total{method="GET",route="health",status="503"}' in text

    lines = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    traced = [line for line in lines if line.get("http_request_id") == "trace-health-1"]
    [logged] = [line for line in traced if line["event"] == "http request"]
    assert (logged["route"], logged["status"], logged["client"]) == ("health", 503, "reader")
    [doc] = [
        line
        for line in lines
        if line.get("http_request_id") == "trace-doc-1" and line["event"] == "http request"
    ]
    assert (doc["route"], doc["client"]) == ("openapi", None)
    created = [line for line in lines if line["event"] == "callback request created"]
    assert created
    assert all(line["number"].startswith("+*******") for line in created)  # masked
    assert not any(daemon.tokens["writer"] in line for line in daemon.log_text().splitlines())


# --------------------------------------------------------------------------- generated input


@pytest.fixture(scope="module")
def api_schema(daemon: ApiDaemon) -> Any:
    return schemathesis.openapi.from_url(daemon.base_url + "/openapi.json")


GENERATED = [
    pytest.param(op.method, op.path, mode, id=f"{op.method} {op.path} {mode}")
    for op in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # an operation without parameters or body has no invalid input to generate
    if mode is GenerationMode.POSITIVE or op.params or op.body
]


@pytest.mark.parametrize(("method", "path", "mode"), GENERATED)
def test_generated_requests_never_get_a_5xx(
    api_schema: Any, daemon: ApiDaemon, method: str, path: str, mode: GenerationMode
) -> None:
    """Schemathesis input from the served document, valid and invalid: never a 5xx, and
    every answer is a documented status with the documented content type and schema."""
    operation = api_schema[path][method]
    checks = [status_code_conformance, content_type_conformance]
    if path != "/v1/health":  # its documented 503 means "degraded" (this daemon has no PBX)
        checks.append(not_a_server_error)
    if mode is GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=daemon.auth(), checks=checks)

    run()


async def test_idempotency_keys_past_retention_are_purged(daemon: ApiDaemon, conn: Any) -> None:
    await conn.execute(
        "INSERT INTO api_idempotency_keys (client, key, fingerprint, created_at) VALUES "
        "('writer', 'old-1', 'f', now() - interval '2 days'), "
        "('writer', 'old-2', 'f', now() - interval '25 hours'), "
        "('writer', 'fresh', 'f', now() - interval '1 hour')"
    )
    pool = await create_pool(daemon.dsn, min_size=1, max_size=1)
    try:
        service = RequestService(pool, NumberPolicy.build("RU"), {})
        assert await service.purge_idempotency_keys(24 * 3600, batch=1) == 2
    finally:
        await pool.close()
    keys = await conn.fetch("SELECT key FROM api_idempotency_keys WHERE client = 'writer'")
    assert "fresh" in {k["key"] for k in keys}
    assert not {"old-1", "old-2"} & {k["key"] for k in keys}
