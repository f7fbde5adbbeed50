"""The management CLI as an admin runs it: real processes against a real Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callbackd.domain.api import hash_token
from tests.api_daemon import CAMPAIGNS, REPO, daemon_env

pytestmark = pytest.mark.postgres


def cli(
    config: Path | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "callbackd", *args]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env=daemon_env(),
        cwd=REPO,
        input=stdin,
        check=False,
    )


def ok_json(config: Path, *args: str) -> Any:
    done = cli(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def config(database: str, tmp_path: Path) -> Path:
    path = tmp_path / "callbackd.toml"
    path.write_text(
        f'[database]\ndsn = "{database}"\n[phone]\ndefault_region = "RU"\n'
        f'[logging]\nformat = "json"\n{CAMPAIGNS}',
        encoding="utf-8",
    )
    return path


async def test_add_list_show_cancel_call_now_and_stats(config: Path, db: Any) -> None:
    created = ok_json(
        config, "add", "8 916 555-12-34", "--queue", "lab-sales", "--note", "from CLI"
    )
    assert (created["number"], created["campaign"], created["source"]) == (
        "+79165551234",
        "sales",
        "cli",
    )
    assert created["priority"] == 5
    day = (datetime.now(UTC) + timedelta(days=60)).date()
    local = datetime(day.year, day.month, day.day, 10, 0)
    other = ok_json(config, "add", "+79165550000", "--campaign", "support",
                    "--at", local.isoformat(), "--timezone", "Europe/Moscow")  # fmt: skip
    assert datetime.fromisoformat(other["due_at"]) == (local - timedelta(hours=3)).replace(
        tzinfo=UTC
    )

    listed = ok_json(config, "list", "--campaign", "sales")
    assert [item["id"] for item in listed] == [created["id"]]
    table = cli(config, "list")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:4] == ["ID", "CAMPAIGN", "NUMBER", "STATUS"]
    assert "+79165551234" in table.stdout
    assert "+79165550000" in table.stdout

    now = ok_json(config, "call-now", str(created["id"]), "--operator", "PJSIP/101")
    assert now["assigned_operator"] == "PJSIP/101"
    assert now["call_now_requested_at"] is not None
    shown = ok_json(config, "show", str(created["id"]))
    assert shown["attempts"] == []
    human = cli(config, "show", str(created["id"]))
    assert "assigned_operator" in human.stdout
    assert "PJSIP/101" in human.stdout

    cancelled = ok_json(config, "cancel", str(created["id"]), "--reason", "duplicate")
    assert (cancelled["status"], cancelled["status_reason"]) == ("cancelled", "duplicate")
    again = cli(config, "cancel", str(created["id"]))
    assert again.returncode == 1
    assert "only pending requests can be changed" in again.stderr
    status = await db.fetchval("SELECT status FROM callback_requests WHERE id = $1", created["id"])
    assert status == "cancelled"

    stats = {row["campaign"]: row for row in ok_json(config, "stats")}
    assert stats["sales"]["cancelled"] == 1
    assert stats["sales"]["pending"] == 0
    assert stats["support"]["pending"] == 1
    assert stats["support"]["oldest_pending_seconds"] is not None


def test_bad_input_exits_2_and_missing_request_exits_1(config: Path) -> None:
    refused = cli(config, "add", "112", "--campaign", "sales")
    assert refused.returncode == 2
    assert "refused" in refused.stderr
    unknown = cli(config, "add", "+79165551234", "--campaign", "nope")
    assert unknown.returncode == 2
    assert "unknown campaign" in unknown.stderr
    missing = cli(config, "show", "424242")
    assert missing.returncode == 1
    assert "no callback request 424242" in missing.stderr


def test_customers_set_show_list_delete(config: Path) -> None:
    set_ = ok_json(config, "customers", "set", "89165551234", "--category", "vip",
                   "--priority", "40", "--skip-queue")  # fmt: skip
    assert set_ == {**set_, "number": "+79165551234", "category": "vip", "priority": 40,
                    "skip_queue": True}  # fmt: skip
    shown = ok_json(config, "customers", "show", "+79165551234")
    assert shown["category"] == "vip"
    ok_json(config, "customers", "set", "+79165550001")
    listed = ok_json(config, "customers", "list", "--category", "vip")
    assert [c["number"] for c in listed] == ["+79165551234"]
    table = cli(config, "customers", "list")
    assert "+79165550001" in table.stdout
    assert "regular" in table.stdout
    request = ok_json(config, "add", "+79165551234", "--campaign", "support")
    assert request["priority"] == 40  # the customer's priority on top of the campaign's 0
    deleted = cli(config, "customers", "delete", "+79165551234")
    assert deleted.returncode == 0
    assert cli(config, "customers", "show", "+79165551234").returncode == 1


def test_hash_token_prints_the_configured_hash() -> None:
    done = cli(None, "hash-token", stdin="s3cret-token\n")
    assert done.returncode == 0
    assert done.stdout.strip() == hash_token("s3cret-token")
    fresh = cli(None, "hash-token", "--generate")
    token_line, hash_line = fresh.stdout.splitlines()
    assert hash_token(token_line.split()[-1]) == hash_line.split()[-1]
    assert cli(None, "hash-token", stdin="").returncode == 2
