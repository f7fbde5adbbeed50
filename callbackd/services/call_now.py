"""Call now and assignment: what the HTTP API and the CLI call for one request.

Both only change the request row; the dialer does the calling. "Call now" sets
``call_now_requested_at`` (the NOTIFY trigger wakes the dialer at once), which the dialer's
claim (``claim_for_operator``) serves before the campaign's ordinary order, whatever the due
time, in operator-first and CRM-task campaigns (client-first campaigns dial it at once too).
The calling window still applies: a request asked for at night is called when it opens.
"""

from __future__ import annotations

from typing import Any

import structlog

from callbackd.db.models import CallbackRequest
from callbackd.db.sql import load_queries
from callbackd.domain.operators import is_queue_member_interface


class RequestError(Exception):
    """A request cannot take this change; ``str()`` says why, for the API or the CLI."""

    def __init__(self, request_id: int, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class RequestNotFound(RequestError):
    def __init__(self, request_id: int) -> None:
        super().__init__(request_id, f"no callback request {request_id}")


class RequestNotPending(RequestError):
    def __init__(self, request_id: int, status: str) -> None:
        super().__init__(request_id, f"callback request {request_id} is {status}, not pending")
        self.status = status


class InvalidOperator(ValueError):
    """Not a queue-member interface callbackd would ring (e.g. ``PJSIP/101``)."""


def check_operator(operator: str) -> str:
    """The interface, unchanged, if it is one callbackd may ring; else InvalidOperator."""
    if not is_queue_member_interface(operator):
        raise InvalidOperator(
            f"{operator!r} is not a queue-member interface like PJSIP/101 or Local/101@from-queue/n"
        )
    return operator


async def request_call_now(
    pool: Any, request_id: int, operator: str | None = None
) -> CallbackRequest:
    """Ask the dialer to call this pending request now: operator first, to ``operator``
    (its queue-member interface) or, if None, to its assigned operator or any free one.

    Raises RequestNotFound, RequestNotPending (already dialling, or closed) or
    InvalidOperator. Asking twice is harmless (the later ask's time counts).
    """
    return await _change(
        pool, "request_call_now", request_id, operator, "callback request call now"
    )


async def assign(pool: Any, request_id: int, operator: str | None) -> CallbackRequest:
    """Assign a pending request to one operator (None: unassign). From then on only that
    operator is rung for it, and CRM-task reminders count it for them.

    Raises RequestNotFound, RequestNotPending or InvalidOperator.
    """
    return await _change(pool, "assign_request", request_id, operator, "callback request assigned")


async def _change(
    pool: Any, query: str, request_id: int, operator: str | None, event: str
) -> CallbackRequest:
    """One UPDATE of a pending request with an (optional) operator; its typed refusal."""
    if operator is not None:
        check_operator(operator)
    queries = load_queries("modes")
    row = await pool.fetchrow(queries[query], request_id, operator)
    if row is None:
        raise await _why_not(pool, queries, request_id)
    request = CallbackRequest.from_record(row)
    structlog.get_logger("callbackd.call_now").info(
        event,
        request_id=request.id,
        status=str(request.status),
        number=request.number,
        operator=request.assigned_operator,
    )
    return request


async def _why_not(pool: Any, queries: Any, request_id: int) -> RequestError:
    status = await pool.fetchval(queries["request_status"], request_id)
    if status is None:
        return RequestNotFound(request_id)
    return RequestNotPending(request_id, str(status))
