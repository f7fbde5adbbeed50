"""The API adapter alone (aiohttp test server, fake services): failures of what is behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import test_utils

from callbackd.domain.api import hash_token
from callbackd.domain.numbers import NumberPolicy
from callbackd.http.server import ApiServer
from callbackd.services.customers import CustomerService
from callbackd.services.requests import RequestService
from callbackd.settings import HttpSettings

TOKEN = "adapter-test-token"


class _DownPool:
    """A pool whose database is gone: every acquire fails as asyncpg's does."""

    def acquire(self, **_kw: Any) -> Any:
        raise ConnectionRefusedError(111, "Connect call failed")

    async def fetchval(self, *_args: Any, **_kw: Any) -> Any:
        raise ConnectionRefusedError(111, "Connect call failed")


class _Broken(RequestService):
    async def counts(self) -> Any:
        raise RuntimeError("a bug")


@pytest.fixture
async def client() -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    settings = HttpSettings(
        enabled=True,
        tokens=({"name": "t", "sha256": hash_token(TOKEN), "scopes": ("read", "write")},),
    )
    pool = _DownPool()
    policy = NumberPolicy.build("RU")
    server = ApiServer(
        settings,
        requests=_Broken(pool, policy, {}),
        customers=CustomerService(pool, policy),
        health=lambda: {"ami": {}, "capture": {"healthy": True}},
        stats=lambda: None,
    )
    async with test_utils.TestClient(test_utils.TestServer(server.build_app())) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_an_unreachable_database_is_503_with_retry_after(
    client: test_utils.TestClient[Any, Any],
) -> None:
    reply = await client.get("/v1/callbacks", headers=AUTH)
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "5"
    assert (await reply.json())["title"] == "Service unavailable"
    health = await client.get("/v1/health", headers=AUTH)
    assert health.status == 503  # a probe reads the status code alone
    body = await health.json()
    assert body["status"] == "degraded"
    assert body["components"]["database"] == {"healthy": False, "error": "ConnectionRefusedError"}


async def test_a_bug_is_a_500_problem_that_reveals_nothing(
    client: test_utils.TestClient[Any, Any],
) -> None:
    reply = await client.get("/metrics", headers=AUTH)
    assert reply.status == 500
    problem = await reply.json()
    assert problem["detail"] == "see the server log"
    assert "a bug" not in await reply.text()
    assert problem["request_id"] == reply.headers["X-Request-Id"]
