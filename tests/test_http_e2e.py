"""The API inside a daemon on the real lab PBX: health sees the link, and a callback made
over HTTP, held for later and then "called now", is placed operator first and completes."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from callbackd.domain.api import hash_token
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon
from callbackd.lab.postgres import free_port
from tests.test_dialer_e2e import OPS, campaign, fresh_number, wait_status

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]


async def test_call_now_over_http_bridges_operator_and_client(
    pbx: LabAsterisk, database: str, db: Any
) -> None:
    pbx.set_operator("default", "accept")
    number = fresh_number()
    pbx.set_client(number, "answer", 4)
    token = secrets.token_urlsafe(24)
    port = free_port()
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": campaign()},
        http={
            "enabled": True,
            "listen_port": port,
            "tokens": [{"name": "crm", "sha256": hash_token(token), "scopes": ["read", "write"]}],
        },
    )
    auth = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        running_daemon(settings) as app,
        aiohttp.ClientSession(f"http://127.0.0.1:{port}", timeout=timeout) as http,
    ):
        assert "http-api" in app.supervisor.running
        async with http.get("/v1/health", headers=auth) as reply:
            health = await reply.json()
            assert reply.status == 200
        assert health["status"] == "ok", health
        assert health["components"]["ami"]["lab"]["state"] == "up"

        later = datetime.now(UTC) + timedelta(hours=2)
        body = {"campaign": "sales", "number": f"+{number}", "preferred_at": later.isoformat()}
        async with http.post("/v1/callbacks", json=body, headers=auth) as reply:
            assert reply.status == 201
            created = await reply.json()
        await asyncio.sleep(1.5)  # the dialer polls every second: it leaves this one alone
        held = await db.fetchval(
            "SELECT count(*) FROM attempts WHERE request_id = $1", created["id"]
        )
        assert held == 0
        async with http.post(f"/v1/callbacks/{created['id']}/call-now", headers=auth) as reply:
            assert reply.status == 200
        row = await wait_status(db, created["id"], "completed", timeout=30)
        async with http.get(f"/v1/callbacks/{created['id']}", headers=auth) as reply:
            shown = await reply.json()
        async with http.get("/metrics", headers=auth) as reply:
            metrics = await reply.text()
    assert row["client_attempts"] == 1
    [attempt] = shown["attempts"]
    assert attempt["outcome"] == "completed"
    assert attempt["operator"] in OPS
    assert attempt["dial_status"] == "ANSWER"
    assert 'callbackd_ami_up{pbx="lab"} 1.0' in metrics
    assert 'callbackd_dialer_attempts_finished_total{outcome="completed"} 1.0' in metrics
