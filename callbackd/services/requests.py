"""Callback requests for the CRM side: create, list, show, cancel, reschedule, call now, assign.

The HTTP API and the management CLI both call this service, so they cannot disagree about
what a request may become. Every change of an existing request applies to pending requests
only and is made under the row lock the dialer's claim skips, so a request is either changed
here or claimed by the dialer, never both; a request being dialled answers
:class:`NotPending` (the API's 409).

``request_call_now`` and ``assign`` are the two updates the "call now"/CRM-task work owns in
``callbackd/services/call_now.py``; until that lands they live here with the same signatures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from callbackd.db.models import Attempt, CallbackRequest, RequestSource, RequestStatus
from callbackd.db.sql import load_queries
from callbackd.domain.numbers import Accepted, NumberPolicy, classify_caller
from callbackd.settings import Campaign

OPERATOR_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/@._:-]{0,79}$")
MAX_PAGE = 200


class RequestError(Exception):
    """A request the service refuses; ``status`` is the HTTP status the API answers with."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(RequestError):
    status = 404
    title = "Not found"


class NotPending(RequestError):
    status = 409
    title = "Request is not pending"


class OpenRequestExists(RequestError):
    status = 409
    title = "An open request exists for this number"


class Invalid(RequestError):
    status = 422
    title = "Invalid request"


class IdempotencyMismatch(RequestError):
    status = 422
    title = "Idempotency-Key reused with another payload"


@dataclass(frozen=True)
class NewRequest:
    campaign: str
    number: str  # as given; normalised by the service
    source: RequestSource = RequestSource.API
    preferred_at: datetime | None = None  # aware
    priority: int | None = None
    note: str | None = None
    external_id: str | None = None
    operator: str | None = None


@dataclass(frozen=True)
class RequestView:
    request: CallbackRequest
    campaign: str
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class RequestFilter:
    statuses: tuple[RequestStatus, ...] = ()
    campaign: str | None = None
    number: str | None = None  # as given; normalised by the service
    created_from: datetime | None = None
    created_to: datetime | None = None
    after_id: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class StatusCount:
    campaign: str
    status: str
    requests: int


@dataclass
class RequestService:
    pool: Any
    policy: NumberPolicy
    campaigns: Mapping[str, Campaign]
    timeout: float = 10.0
    _queries: Any = field(default_factory=lambda: load_queries("requests"))

    # -- numbers and campaigns ---------------------------------------------------------------
    def normalise(self, raw: str) -> str:
        """E.164 of a number the site's policy accepts, else :class:`Invalid`."""
        verdict = classify_caller(raw, self.policy)
        if not isinstance(verdict, Accepted):
            raise Invalid(f"the number is refused: {verdict.reason}", reason=str(verdict.reason))
        return verdict.e164

    def lookup_number(self, raw: str) -> str:
        """E.164 of a number to search for: any valid number, even one the site never calls
        (blocked prefixes, regions, own numbers), else :class:`Invalid`."""
        verdict = classify_caller(raw, NumberPolicy(default_region=self.policy.default_region))
        if not isinstance(verdict, Accepted):
            raise Invalid(f"not a usable number: {verdict.reason}", reason=str(verdict.reason))
        return verdict.e164

    def campaign_for_queue(self, queue: str, pbx: str | None = None) -> str:
        for name, campaign in self.campaigns.items():
            if campaign.queue == queue and (pbx is None or campaign.pbx == pbx):
                return name
        raise Invalid(f"no campaign handles queue {queue!r}")

    # -- create --------------------------------------------------------------------------------
    async def create(self, new: NewRequest) -> RequestView:
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            return await self._create(conn, new)

    async def create_idempotent(
        self,
        new: NewRequest,
        *,
        client: str,
        key: str,
        fingerprint: str,
        render: Callable[[RequestView], dict[str, Any]],
        retention_seconds: float,
    ) -> StoredResponse:
        """Create once per (client, key): a repeat answers the first response.

        The key row is inserted in the same transaction as the request, so a failed create
        leaves no key behind, and concurrent repeats wait on the first and then read its
        response (the primary key decides, not this process).
        """
        q = self._queries
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute(q["idempotency_expire"], client, key, retention_seconds)
            claimed = await conn.fetchval(q["idempotency_claim"], client, key, fingerprint)
            if claimed is None:
                row = await conn.fetchrow(q["idempotency_get"], client, key)
                if row is None or row["response_status"] is None:
                    raise RequestError("the first request with this key did not finish")
                if row["fingerprint"] != fingerprint:
                    raise IdempotencyMismatch(
                        "this Idempotency-Key was used with a different payload"
                    )
                return StoredResponse(row["response_status"], row["response_body"], True)
            view = await self._create(conn, new)
            body = json.loads(json.dumps(render(view)))  # as the database will give it back
            await conn.execute(q["idempotency_store"], client, key, view.request.id, 201, body)
        return StoredResponse(201, body, False)

    async def _create(self, conn: Any, new: NewRequest) -> RequestView:
        q = self._queries
        number = self.normalise(new.number)
        settings = self.campaigns.get(new.campaign)
        row = await conn.fetchrow(q["campaign_by_name"], new.campaign)
        if settings is None or row is None:
            raise Invalid(f"unknown campaign {new.campaign!r}")
        if new.operator is not None:
            check_operator(new.operator)
        created = await conn.fetchrow(
            q["insert_request"],
            row["id"],
            number,
            str(new.source),
            new.priority,
            settings.priority,
            new.preferred_at,
            new.external_id,
            new.note,
            new.operator,
            row["pbx"],
            row["queue"],
        )
        if created is None:
            existing = await conn.fetchval(q["open_request_for"], row["id"], number)
            raise OpenRequestExists(
                f"request {existing} is already open for this number in {new.campaign!r}",
                existing_id=existing,
            )
        request = CallbackRequest.from_record(created)
        structlog.get_logger("callbackd.requests").info(
            "callback request created",
            request_id=request.id,
            campaign=new.campaign,
            number=request.number,
            source=str(request.source),
            due_at=request.due_at.isoformat(),
            priority=request.priority,
            external_id=request.external_id,
        )
        return RequestView(request, new.campaign)

    # -- read ----------------------------------------------------------------------------------
    async def get(self, request_id: int, *, with_attempts: bool = True) -> RequestView:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            return await self._get(conn, request_id, with_attempts=with_attempts)

    async def _get(self, conn: Any, request_id: int, *, with_attempts: bool) -> RequestView:
        q = self._queries
        row = await conn.fetchrow(q["get_request"], request_id)
        if row is None:
            raise NotFound(f"no callback request {request_id}")
        attempts: tuple[Attempt, ...] = ()
        if with_attempts:
            rows = await conn.fetch(q["attempts_of"], request_id)
            attempts = tuple(Attempt.from_record(r) for r in rows)
        return _view(row, attempts)

    async def list_requests(self, filters: RequestFilter) -> list[RequestView]:
        number = self.lookup_number(filters.number) if filters.number is not None else None
        statuses = [str(s) for s in filters.statuses] or None
        async with self.pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(
                self._queries["list_requests"],
                statuses,
                filters.campaign,
                number,
                filters.created_from,
                filters.created_to,
                filters.after_id,
                max(1, min(filters.limit, MAX_PAGE)),
            )
        return [_view(row, ()) for row in rows]

    async def counts(self) -> list[StatusCount]:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(self._queries["count_by_status"])
        return [StatusCount(r["campaign"], r["status"], r["requests"]) for r in rows]

    async def oldest_pending(self) -> dict[str, datetime]:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(self._queries["oldest_pending"])
        return {r["campaign"]: r["oldest"] for r in rows}

    async def purge_idempotency_keys(self, retention_seconds: float, batch: int = 1000) -> int:
        """Delete keys older than the retention; returns how many went."""
        purged = 0
        while True:
            async with self.pool.acquire(timeout=self.timeout) as conn:
                status = await conn.execute(
                    self._queries["idempotency_purge"], retention_seconds, batch
                )
            count = int(status.split()[-1])
            purged += count
            if count < batch:
                return purged

    # -- changes (pending only) ----------------------------------------------------------------
    async def cancel(self, request_id: int, reason: str | None = None) -> RequestView:
        return await self._change(
            request_id, "cancel_request", [reason or "cancelled"], "callback request cancelled"
        )

    async def reschedule(self, request_id: int, when: datetime) -> RequestView:
        return await self._change(
            request_id, "reschedule_request", [when], "callback request rescheduled"
        )

    async def call_now(self, request_id: int, operator: str | None = None) -> RequestView:
        await request_call_now(self.pool, request_id, operator, timeout=self.timeout)
        return await self.get(request_id)

    async def assign(self, request_id: int, operator: str) -> RequestView:
        await assign(self.pool, request_id, operator, timeout=self.timeout)
        return await self.get(request_id)

    async def _change(
        self, request_id: int, query: str, args: Sequence[Any], event: str
    ) -> RequestView:
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await _lock_pending(conn, request_id)
            await conn.execute(self._queries[query], request_id, *args)
            view = await self._get(conn, request_id, with_attempts=True)
        _log_change(event, view)
        return view


def check_operator(operator: str) -> None:
    """A queue-member interface safe to hand to AMI later (e.g. PJSIP/101), else Invalid."""
    if not OPERATOR_INTERFACE.fullmatch(operator):
        raise Invalid("operator must be a queue-member interface such as PJSIP/101")


async def _lock_pending(conn: Any, request_id: int) -> None:
    row = await conn.fetchrow(load_queries("requests")["lock_request"], request_id)
    if row is None:
        raise NotFound(f"no callback request {request_id}")
    if row["status"] != RequestStatus.PENDING:
        raise NotPending(
            f"request {request_id} is {row['status']}; only pending requests can be changed",
            current_status=row["status"],
        )


async def request_call_now(
    pool: Any, request_id: int, operator: str | None = None, *, timeout: float = 10.0
) -> None:
    """Ask the dialer to call this pending request now (to *operator*, or any free one)."""
    if operator is not None:
        check_operator(operator)
    async with pool.acquire(timeout=timeout) as conn, conn.transaction():
        await _lock_pending(conn, request_id)
        await conn.execute(load_queries("requests")["call_now_request"], request_id, operator)
    structlog.get_logger("callbackd.requests").info(
        "callback request call now", request_id=request_id, operator=operator
    )


async def assign(pool: Any, request_id: int, operator: str, *, timeout: float = 10.0) -> None:
    """Assign a pending request to one operator (queue-member interface)."""
    check_operator(operator)
    async with pool.acquire(timeout=timeout) as conn, conn.transaction():
        await _lock_pending(conn, request_id)
        await conn.execute(load_queries("requests")["assign_request"], request_id, operator)
    structlog.get_logger("callbackd.requests").info(
        "callback request assigned", request_id=request_id, operator=operator
    )


def _view(row: Any, attempts: tuple[Attempt, ...]) -> RequestView:
    data = {k: v for k, v in row.items() if k != "campaign_name"}
    return RequestView(CallbackRequest.from_record(data), row["campaign_name"], attempts)


def _log_change(event: str, view: RequestView) -> None:
    request = view.request
    structlog.get_logger("callbackd.requests").info(
        event,
        request_id=request.id,
        campaign=view.campaign,
        number=request.number,
        status=str(request.status),
        due_at=request.due_at.isoformat(),
    )
