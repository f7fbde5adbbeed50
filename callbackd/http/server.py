"""The HTTP API inside the daemon (aiohttp).

Why aiohttp: callbackd is one asyncio process that already holds the asyncpg pool and the
AMI links, and the API must share that loop and those objects rather than run beside them.
aiohttp is a mature server that runs inside an existing loop as one more supervised task
(no ASGI server process, no thread), enforces a body size limit itself, and brings a client
and test utilities with it.

Every route but ``/openapi.json`` needs a bearer token; tokens are configured as SHA-256
hashes and compared in constant time; the ``read`` scope reads, the ``write`` scope changes.
Every error is RFC 9457 problem details; bad input is always a 4xx, and an unexpected
failure is logged with the request id and answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from callbackd.db.models import RequestStatus
from callbackd.domain.api import (
    CursorError,
    TimeError,
    TokenRecord,
    bearer_token,
    decode_cursor,
    encode_cursor,
    match_token,
    payload_fingerprint,
    request_id_from,
    resolve_preferred_time,
)
from callbackd.http.metrics import ApiMetrics, StatsSource
from callbackd.http.openapi import PROBLEM_JSON, Operation, Param, build_document
from callbackd.http.schemas import (
    AssignBody,
    CallbackCreate,
    CallbackDetail,
    CallbackOut,
    CallbackPage,
    CallNowBody,
    CancelBody,
    CustomerOut,
    CustomerPage,
    CustomerPut,
    Health,
    Problem,
    RescheduleBody,
)
from callbackd.services.capture import DATABASE_DOWN
from callbackd.services.customers import CustomerFields, CustomerService
from callbackd.services.requests import (
    NewRequest,
    RequestError,
    RequestFilter,
    RequestService,
)
from callbackd.settings import HttpSettings

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_ID = 2**63 - 1
_NUMBER_PATH = re.compile(r"^\+?[0-9]{1,15}$")
_CAMPAIGN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

_ID = Param("id", "path", {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID})
_CUSTOMER = Param(
    "number",
    "path",
    {"type": "string", "pattern": r"^\+?[0-9]{6,15}$"},
    "Phone number, E.164 with or without '+' (national format of the site's region too).",
)
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50})
_CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "maxLength": 512, "pattern": "^[A-Za-z0-9_-]*$"},
    "`next_cursor` of the previous page.",
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/openapi.json", "openapi", "This OpenAPI document", None,
              response_type="application/json"),
    Operation("GET", "/v1/health", "health", "Health per component", "read", response=Health),
    Operation("GET", "/metrics", "metrics", "Prometheus metrics", "read",
              response_type="text/plain"),
    Operation(
        "POST", "/v1/callbacks", "create_callback", "Create a callback request", "write",
        status=201, body=CallbackCreate, response=CallbackDetail, errors=(409,),
        params=(
            Param(
                "Idempotency-Key", "header",
                {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[!-~]+$"},
                "The same key returns the first result; with another payload: 422.",
            ),
        ),
    ),
    Operation(
        "GET", "/v1/callbacks", "list_callbacks", "List callback requests, newest first", "read",
        response=CallbackPage,
        params=(
            Param("status", "query",
                  {"type": "array", "items": {"type": "string",
                                              "enum": [str(s) for s in RequestStatus]}},
                  "Only these statuses (repeat the parameter).", explode=True),
            Param("campaign", "query", {"type": "string", "pattern": _CAMPAIGN.pattern}),
            Param("number", "query", {"type": "string", "maxLength": 40},
                  "Only this number (any format the number policy reads)."),
            Param("created_from", "query", {"type": "string", "format": "date-time"},
                  "Created at or after (with UTC offset)."),
            Param("created_to", "query", {"type": "string", "format": "date-time"},
                  "Created before (with UTC offset)."),
            _LIMIT,
            _CURSOR,
        ),
    ),
    Operation("GET", "/v1/callbacks/{id}", "get_callback", "One request with its attempts",
              "read", response=CallbackDetail, params=(_ID,)),
    Operation("POST", "/v1/callbacks/{id}/cancel", "cancel_callback",
              "Cancel a pending request", "write", body=CancelBody, body_required=False,
              response=CallbackDetail, params=(_ID,), errors=(409,)),
    Operation("POST", "/v1/callbacks/{id}/reschedule", "reschedule_callback",
              "Move a pending request to another time", "write", body=RescheduleBody,
              response=CallbackDetail, params=(_ID,), errors=(409,)),
    Operation("POST", "/v1/callbacks/{id}/call-now", "call_now",
              "Call a pending request now (operator first), to one operator or any free one",
              "write", body=CallNowBody, body_required=False, response=CallbackDetail,
              params=(_ID,), errors=(409,)),
    Operation("POST", "/v1/callbacks/{id}/assign", "assign_callback",
              "Assign a pending request to an operator", "write", body=AssignBody,
              response=CallbackDetail, params=(_ID,), errors=(409,)),
    Operation(
        "GET", "/v1/customers", "list_customers", "List customers by number", "read",
        response=CustomerPage,
        params=(Param("category", "query", {"type": "string", "maxLength": 64}), _LIMIT,
                _CURSOR),
    ),
    Operation("GET", "/v1/customers/{number}", "get_customer", "One customer", "read",
              response=CustomerOut, params=(_CUSTOMER,)),
    Operation("PUT", "/v1/customers/{number}", "put_customer",
              "Create or replace a customer's category, priority and queue bypass", "write",
              body=CustomerPut, body_required=False, response=CustomerOut,
              params=(_CUSTOMER,)),
    Operation("DELETE", "/v1/customers/{number}", "delete_customer", "Delete a customer",
              "write", status=204, params=(_CUSTOMER,)),
)  # fmt: skip


class ApiProblem(Exception):
    """An error answered as problem details."""

    def __init__(self, status: int, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class Caller:
    """The authenticated token of one request."""

    name: str
    scopes: frozenset[str]


Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]


class ApiServer:
    """Builds the aiohttp application and serves it until cancelled (a supervised task)."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        requests: RequestService,
        customers: CustomerService,
        health: Callable[[], dict[str, Any]],
        stats: Callable[[], StatsSource | None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.requests = requests
        self.customers = customers
        self._health_of = health
        self._clock = clock
        self._tokens = tuple(
            TokenRecord(t.name, t.sha256, frozenset(t.scopes)) for t in settings.tokens
        )
        self.metrics = ApiMetrics(stats)
        self.document = build_document(OPERATIONS)
        self._document_text = json.dumps(self.document, sort_keys=True)
        self._log = structlog.get_logger("callbackd.http")

    # -- lifecycle -----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes, middlewares=[self._middleware]
        )
        for op in OPERATIONS:
            app.router.add_route(op.method, op.path, self._endpoint(op), name=op.handler)
        return app

    async def run(self) -> None:
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.settings.listen_host, self.settings.listen_port, reuse_address=True
            )
            await site.start()
            self._log.info(
                "http api listening",
                host=self.settings.listen_host,
                port=self.settings.listen_port,
                addresses=[str(address) for address in runner.addresses],
                tokens=len(self._tokens),
            )
            await asyncio.Event().wait()  # until the supervisor cancels us
        finally:
            await asyncio.wait_for(runner.cleanup(), timeout=5)

    async def run_purge(self, interval: float = 3600.0) -> None:
        """Forget Idempotency-Keys past their retention, hourly (a supervised task)."""
        retention = self.settings.idempotency_retention_hours * 3600
        while True:
            purged = await self.requests.purge_idempotency_keys(retention)
            if purged:
                self._log.info("idempotency keys purged", purged=purged)
            await asyncio.sleep(interval)

    # -- plumbing ------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        rid = request_id_from(request.headers.get("X-Request-Id"), uuid.uuid4().hex)
        route = _route_name(request)
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(http_request_id=rid, client=None):
            try:
                response = await handler(request)
            except ApiProblem as err:
                response = _problem(err.status, err.title, err.detail, **err.extra)
            except RequestError as err:
                response = _problem(err.status, err.title, err.detail, **err.extra)
            except web.HTTPException as err:
                detail = None
                if err.status == 413:
                    detail = f"the body is larger than {self.settings.max_body_bytes} bytes"
                response = _problem(err.status, err.reason, detail)
                if err.status == 405:
                    response.headers["Allow"] = err.headers.get("Allow", "")
            except DATABASE_DOWN as err:
                self._log.error(
                    "database unavailable", method=request.method, route=route,
                    error=type(err).__name__,
                )  # fmt: skip
                response = _problem(503, "Service unavailable", "the database is unreachable")
                response.headers["Retry-After"] = "5"
            except Exception:  # noqa: BLE001 - a bug: logged with the request id, 500 reveals nothing
                self._log.exception("http request failed", method=request.method, route=route)
                response = _problem(500, "Internal error", "see the server log", request_id=rid)
            elapsed = time.perf_counter() - started
            response.headers["X-Request-Id"] = rid
            self.metrics.http_requests.labels(request.method, route, str(response.status)).inc()
            self.metrics.http_seconds.labels(route).observe(elapsed)
            self._log.info(
                "http request",
                method=request.method,
                route=route,
                status=response.status,
                duration_ms=round(elapsed * 1000, 2),
            )
        return response

    def _endpoint(self, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        handler: Handler = getattr(self, f"_{op.handler}")

        async def endpoint(request: web.Request) -> web.StreamResponse:
            caller = self._authorise(request, op.scope)
            # The middleware bound "client" for this request and resets it afterwards.
            structlog.contextvars.bind_contextvars(client=caller.name or None)
            return await handler(request, caller)

        return endpoint

    def _authorise(self, request: web.Request, scope: str | None) -> Caller:
        if scope is None:
            return Caller("", frozenset())
        token = bearer_token(request.headers.get("Authorization"))
        record = match_token(token, self._tokens) if token is not None else None
        if record is None:
            raise ApiProblem(
                401,
                "Unauthorized",
                "a valid bearer token is required",
                www_authenticate="Bearer",
            )
        if scope not in record.scopes:
            raise ApiProblem(403, "Forbidden", f"this token lacks the {scope!r} scope")
        return Caller(record.name, record.scopes)

    async def _body(self, request: web.Request, model: type[Any], *, required: bool) -> Any:
        raw = await request.read()  # 413 above client_max_size
        if not raw.strip():
            if required:
                raise ApiProblem(422, "Invalid request", "a JSON body is required")
            return model(), {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiProblem(400, "Malformed JSON", "the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ApiProblem(422, "Invalid request", "the body must be a JSON object")
        return _validate(model, data), data

    def _preferred(self, when: datetime, zone: str | None) -> datetime:
        try:
            return resolve_preferred_time(when, zone, now=self._clock())
        except TimeError as err:
            raise ApiProblem(422, "Invalid time", str(err)) from err

    # -- handlers ------------------------------------------------------------------------------
    async def _openapi(self, _request: web.Request, _caller: Caller) -> web.StreamResponse:
        return web.Response(text=self._document_text, content_type="application/json")

    async def _health(self, _request: web.Request, _caller: Caller) -> web.StreamResponse:
        components = dict(self._health_of())
        try:
            async with asyncio.timeout(2.0):
                db_ok = await self.requests.pool.fetchval("SELECT 1") == 1
            database: dict[str, Any] = {"healthy": db_ok}
        except (OSError, TimeoutError) as err:
            database = {"healthy": False, "error": type(err).__name__}
        except Exception as err:  # noqa: BLE001 - any database failure is "unhealthy"
            database = {"healthy": False, "error": type(err).__name__}
        components = {"database": database, **components}
        ami_up = all(link.get("state") == "up" for link in components.get("ami", {}).values())
        capture_ok = components.get("capture", {}).get("healthy", True)
        ok = database["healthy"] and ami_up and capture_ok
        # 503 when degraded: a probe (load balancer, monitoring, curl -f) reads the code alone.
        return _json(
            Health(status="ok" if ok else "degraded", components=components),
            status=200 if ok else 503,
        )

    async def _metrics(self, _request: web.Request, _caller: Caller) -> web.StreamResponse:
        counts = await self.requests.counts()
        self.metrics.counts.by_status = [(c.campaign, c.status, c.requests) for c in counts]
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _create_callback(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiProblem(400, "Bad Idempotency-Key", "use 1-255 printable ASCII characters")
        body, raw = await self._body(request, CallbackCreate, required=True)
        campaign = body.campaign or self.requests.campaign_for_queue(body.queue, body.pbx)
        preferred = self._preferred(body.preferred_at, body.timezone) if body.preferred_at else None
        if body.timezone is not None and body.preferred_at is None:
            raise ApiProblem(422, "Invalid time", "timezone needs preferred_at")
        new = NewRequest(
            campaign=campaign,
            number=body.number,
            preferred_at=preferred,
            priority=body.priority,
            note=body.note,
            external_id=body.external_id,
            operator=body.operator,
        )
        if key is None:
            view = await self.requests.create(new)
            detail = CallbackDetail.of(view)
            return _json(
                detail, status=201, headers={"Location": f"/v1/callbacks/{view.request.id}"}
            )
        stored = await self.requests.create_idempotent(
            new,
            client=caller.name,
            key=key,
            fingerprint=payload_fingerprint(raw),
            render=lambda view: CallbackDetail.of(view).model_dump(mode="json"),
            retention_seconds=self.settings.idempotency_retention_hours * 3600,
        )
        headers = {"Location": f"/v1/callbacks/{stored.body.get('id')}"}
        if stored.replayed:
            headers["Idempotent-Replayed"] = "true"
        return _json_data(stored.body, status=stored.status, headers=headers)

    async def _list_callbacks(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        query = request.query
        statuses: list[RequestStatus] = []
        for value in query.getall("status", []):
            try:
                statuses.append(RequestStatus(value))
            except ValueError as exc:
                raise ApiProblem(422, "Invalid parameter", f"unknown status {value!r}") from exc
        limit = _int_param(query.get("limit"), "limit", 1, 200, 50)
        after = _cursor(query.get("cursor"), "id", int)
        views = await self.requests.list_requests(
            RequestFilter(
                statuses=tuple(statuses),
                campaign=_campaign_param(query.get("campaign")),
                number=query.get("number"),
                created_from=_time_param(query.get("created_from"), "created_from"),
                created_to=_time_param(query.get("created_to"), "created_to"),
                after_id=after,
                limit=limit,
            )
        )
        cursor = encode_cursor({"id": views[-1].request.id}) if len(views) == limit else None
        return _json(CallbackPage(items=[CallbackOut.of(v) for v in views], next_cursor=cursor))

    async def _get_callback(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        return _json(CallbackDetail.of(await self.requests.get(_id(request))))

    async def _cancel_callback(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        request_id = _id(request)
        body, _ = await self._body(request, CancelBody, required=False)
        view = await self.requests.cancel(request_id, body.reason)
        return _json(CallbackDetail.of(view))

    async def _reschedule_callback(
        self, request: web.Request, _caller: Caller
    ) -> web.StreamResponse:
        request_id = _id(request)
        body, _ = await self._body(request, RescheduleBody, required=True)
        when = self._preferred(body.preferred_at, body.timezone)
        return _json(CallbackDetail.of(await self.requests.reschedule(request_id, when)))

    async def _call_now(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        request_id = _id(request)
        body, _ = await self._body(request, CallNowBody, required=False)
        return _json(CallbackDetail.of(await self.requests.call_now(request_id, body.operator)))

    async def _assign_callback(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        request_id = _id(request)
        body, _ = await self._body(request, AssignBody, required=True)
        return _json(CallbackDetail.of(await self.requests.assign(request_id, body.operator)))

    async def _list_customers(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        query = request.query
        limit = _int_param(query.get("limit"), "limit", 1, 200, 50)
        after = _cursor(query.get("cursor"), "number", str)
        category = query.get("category") or None
        if category is not None and (len(category) > 64 or not _is_plain_text(category)):
            raise ApiProblem(422, "Invalid parameter", "category: at most 64 characters of text")
        customers = await self.customers.list_customers(after=after, category=category, limit=limit)
        cursor = (
            encode_cursor({"number": customers[-1].number}) if len(customers) == limit else None
        )
        return _json(CustomerPage(items=[CustomerOut.of(c) for c in customers], next_cursor=cursor))

    async def _get_customer(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        return _json(CustomerOut.of(await self.customers.get(_number(request))))

    async def _put_customer(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        number = _number(request)
        body, _ = await self._body(request, CustomerPut, required=False)
        customer, _created = await self.customers.upsert(
            number,
            CustomerFields(
                category=body.category,
                priority=body.priority,
                skip_queue=body.skip_queue,
                note=body.note,
            ),
        )
        return _json(CustomerOut.of(customer), status=200)

    async def _delete_customer(self, request: web.Request, _caller: Caller) -> web.StreamResponse:
        await self.customers.delete(_number(request))
        return web.Response(status=204)


# --------------------------------------------------------------------------- helpers


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    name = getattr(route, "name", None)
    return str(name) if name else "unmatched"


def _json(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return _json_data(model.model_dump(mode="json"), status=status, headers=headers)


def _json_data(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(data, sort_keys=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _problem(status: int, title: str, detail: str | None, **extra: Any) -> web.Response:
    www = extra.pop("www_authenticate", None)
    body = Problem(title=title, status=status, detail=detail, **extra)
    response = web.Response(
        text=json.dumps(body.model_dump(mode="json", exclude_none=True), sort_keys=True),
        status=status,
        content_type=PROBLEM_JSON,
    )
    if www:
        response.headers["WWW-Authenticate"] = www
    return response


def _validate(model: type[Any], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "<body>", "message": e["msg"]}
            for e in err.errors(include_url=False)
        ]
        raise ApiProblem(
            422, "Invalid request", errors[0]["message"] if errors else None, errors=errors
        ) from err


def _is_plain_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _campaign_param(text: str | None) -> str | None:
    if not text:
        return None
    if not _CAMPAIGN.fullmatch(text):
        raise ApiProblem(422, "Invalid parameter", "campaign: not a campaign name")
    return text


def _id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise ApiProblem(404, "Not found", "no such callback request")
    return int(text)


def _number(request: web.Request) -> str:
    text = request.match_info["number"]
    if not _NUMBER_PATH.fullmatch(text):
        raise ApiProblem(422, "Invalid number", "the number must be digits, optionally with '+'")
    return text


def _int_param(text: str | None, name: str, low: int, high: int, default: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ApiProblem(422, "Invalid parameter", f"{name}: an integer from {low} to {high}")
    return int(text)


def _time_param(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiProblem(422, "Invalid parameter", f"{name}: an ISO 8601 date-time") from exc
    if when.tzinfo is None:
        raise ApiProblem(422, "Invalid parameter", f"{name}: needs a UTC offset")
    try:
        when.astimezone(UTC)
    except OverflowError as exc:
        raise ApiProblem(422, "Invalid parameter", f"{name}: out of range") from exc
    return when


def _cursor(text: str | None, key: str, kind: type) -> Any:
    if not text:
        return None
    try:
        return decode_cursor(text, key=key, kind=kind)
    except CursorError as exc:
        raise ApiProblem(422, "Invalid parameter", "cursor: not a cursor from this API") from exc
