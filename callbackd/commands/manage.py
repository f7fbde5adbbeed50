"""``callbackd list | show | add | cancel | call-now | stats`` and ``callbackd customers ...``.

The same services as the HTTP API (callbackd/services/requests.py, customers.py), against
the database of the configuration file, so the CLI and the API cannot disagree. Output is a
table for people, or JSON (the API's body shapes) with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg

from callbackd.app import number_policy
from callbackd.db.migrations import default_migrations_dir, discover, pending_versions
from callbackd.db.models import RequestSource, RequestStatus
from callbackd.db.pool import create_pool
from callbackd.domain.api import TimeError, resolve_preferred_time
from callbackd.http.schemas import CallbackDetail, CallbackOut, CustomerOut
from callbackd.logs import configure_logging, get_logger
from callbackd.services.campaigns import sync_campaigns
from callbackd.services.capture import DATABASE_DOWN
from callbackd.services.customers import CustomerFields, CustomerService
from callbackd.services.requests import (
    Invalid,
    NewRequest,
    RequestError,
    RequestFilter,
    RequestService,
)
from callbackd.settings import Settings, redact_dsn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


async def run_manage(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    configure_logging(settings.logging, stream=sys.stderr, secrets=settings.secret_values())
    db = settings.database
    log = get_logger("callbackd.cli", database=redact_dsn(db.dsn.get_secret_value()))
    try:
        pool = await create_pool(
            db.dsn.get_secret_value(),
            min_size=1,
            max_size=2,
            timeout=db.connect_timeout_seconds,
            command_timeout=db.command_timeout_seconds,
        )
    except (*DATABASE_DOWN, asyncpg.PostgresError) as err:
        log.error("database unreachable", reason=type(err).__name__)
        return EXIT_FAILED
    try:
        async with pool.acquire() as conn:
            missing = await pending_versions(conn, discover(default_migrations_dir()))
        if missing:
            log.error("database schema is not up to date; run `callbackd migrate`")
            return EXIT_FAILED
        policy = number_policy(settings)
        timeout = db.command_timeout_seconds
        requests = RequestService(pool, policy, settings.campaigns, timeout=timeout)
        customers = CustomerService(pool, policy, timeout=timeout)
        return await _dispatch(args, settings, pool, requests, customers, out)
    except Invalid as err:
        print(f"callbackd: {err.detail}", file=sys.stderr)
        return EXIT_USAGE
    except RequestError as err:
        print(f"callbackd: {err.detail}", file=sys.stderr)
        return EXIT_FAILED
    except (*DATABASE_DOWN, asyncpg.PostgresError) as err:
        log.error("database error", reason=type(err).__name__)
        return EXIT_FAILED
    finally:
        await asyncio.wait_for(pool.close(), timeout=5)


async def _dispatch(
    args: argparse.Namespace,
    settings: Settings,
    pool: Any,
    requests: RequestService,
    customers: CustomerService,
    out: TextIO,
) -> int:
    as_json: bool = args.json
    command: str = args.command
    if command == "list":
        views = await requests.list_requests(
            RequestFilter(
                statuses=tuple(RequestStatus(s) for s in args.status or ()),
                campaign=args.campaign,
                number=args.number,
                after_id=args.before_id,
                limit=args.limit,
            )
        )
        rows = [CallbackOut.of(v).model_dump(mode="json") for v in views]
        _emit(out, rows, as_json, _REQUEST_COLUMNS)
    elif command == "show":
        detail = CallbackDetail.of(await requests.get(args.id)).model_dump(mode="json")
        _emit_one(out, detail, as_json)
    elif command == "add":
        async with pool.acquire() as conn, conn.transaction():
            await sync_campaigns(conn, settings.campaigns)
        campaign = args.campaign or requests.campaign_for_queue(args.queue)
        view = await requests.create(
            NewRequest(
                campaign=campaign,
                number=args.number,
                source=RequestSource.CLI,
                preferred_at=_preferred(args.at, args.timezone),
                priority=args.priority,
                note=args.note,
                external_id=args.external_id,
            )
        )
        _emit_one(out, CallbackDetail.of(view).model_dump(mode="json"), as_json)
    elif command == "cancel":
        view = await requests.cancel(args.id, args.reason or "cancelled from the CLI")
        _emit_one(out, CallbackDetail.of(view).model_dump(mode="json"), as_json)
    elif command == "call-now":
        view = await requests.call_now(args.id, args.operator)
        _emit_one(out, CallbackDetail.of(view).model_dump(mode="json"), as_json)
    elif command == "stats":
        counts = await requests.counts()
        oldest = await requests.oldest_pending()
        now = datetime.now(UTC)
        stats = [
            {
                "campaign": name,
                **{str(s): 0 for s in RequestStatus},
                **{c.status: c.requests for c in counts if c.campaign == name},
                "oldest_pending_seconds": round((now - oldest[name]).total_seconds())
                if name in oldest
                else None,
            }
            for name in sorted({c.campaign for c in counts} | set(settings.campaigns))
        ]
        _emit(
            out,
            stats,
            as_json,
            ["campaign", *(str(s) for s in RequestStatus), "oldest_pending_seconds"],
        )
    elif command == "customers":
        return await _customers(args, customers, out)
    return EXIT_OK


async def _customers(args: argparse.Namespace, customers: CustomerService, out: TextIO) -> int:
    action: str = args.customers_command
    if action == "set":
        customer, _created = await customers.upsert(
            args.number,
            CustomerFields(
                category=args.category,
                priority=args.priority,
                skip_queue=args.skip_queue,
                note=args.note,
            ),
        )
        _emit_one(out, CustomerOut.of(customer).model_dump(mode="json"), args.json)
    elif action == "show":
        customer = await customers.get(args.number)
        _emit_one(out, CustomerOut.of(customer).model_dump(mode="json"), args.json)
    elif action == "list":
        found = await customers.list_customers(
            after=customers.lookup_number(args.after) if args.after else None,
            category=args.category,
            limit=args.limit,
        )
        rows = [CustomerOut.of(c).model_dump(mode="json") for c in found]
        _emit(out, rows, args.json, ["number", "category", "priority", "skip_queue", "note"])
    elif action == "delete":
        await customers.delete(args.number)
        if args.json:
            print(json.dumps({"deleted": customers.lookup_number(args.number)}), file=out)
        else:
            print(f"deleted {customers.lookup_number(args.number)}", file=out)
    return EXIT_OK


def _preferred(at: str | None, zone: str | None) -> datetime | None:
    if at is None:
        if zone is not None:
            raise Invalid("--timezone needs --at")
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError as exc:
        raise Invalid(f"--at {at!r} is not an ISO 8601 time") from exc
    try:
        return resolve_preferred_time(when, zone, now=datetime.now(UTC))
    except TimeError as exc:
        raise Invalid(f"--at: {exc}") from exc


_REQUEST_COLUMNS = [
    "id", "campaign", "number", "status", "priority", "due_at", "client_attempts",
    "assigned_operator", "external_id",
]  # fmt: skip


def _emit(out: TextIO, rows: Sequence[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        print(json.dumps(list(rows), indent=2, ensure_ascii=False), file=out)
        return
    if not rows:
        print("(none)", file=out)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _emit_one(out: TextIO, item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(item, indent=2, ensure_ascii=False), file=out)
        return
    attempts = item.pop("attempts", None)
    width = max(len(k) for k in item)
    for key, value in item.items():
        print(f"{key.ljust(width)}  {_cell(value)}", file=out)
    if attempts is not None:
        print("", file=out)
        _emit(
            out,
            attempts,
            False,
            ["id", "state", "outcome", "operator", "dial_status", "talk_seconds", "created_at"],
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value).replace("\n", " ")
