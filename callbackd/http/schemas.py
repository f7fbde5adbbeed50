"""Request and response bodies of the HTTP API as pydantic models.

The same models validate what clients send, shape what the API answers and generate the
OpenAPI document, so the document cannot drift from the code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from callbackd.db.models import (
    Attempt,
    AttemptOutcome,
    AttemptState,
    CallbackRequest,
    Customer,
    RequestSource,
    RequestStatus,
)
from callbackd.domain.operators import MAX_INTERFACE_LENGTH, QUEUE_MEMBER_INTERFACE
from callbackd.services.requests import RequestView


def _plain_text(value: str) -> str:
    # Postgres text cannot hold NUL, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


PlainText = AfterValidator(_plain_text)


Number = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        pattern=r"^\+?[0-9 ().\-]{1,40}$",
        description="Phone number, E.164 (+79161234567) or national format of the site's "
        "region; normalised to E.164 by the site's number policy.",
        examples=["+79161234567"],
    ),
]
CampaignName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Operator = Annotated[
    str,
    Field(
        max_length=MAX_INTERFACE_LENGTH,
        pattern=f"^{QUEUE_MEMBER_INTERFACE}$",
        description="Queue-member interface of an operator, e.g. PJSIP/101 or "
        "Local/101@from-queue/n.",
        examples=["PJSIP/101"],
    ),
]
Note = Annotated[str, Field(min_length=1, max_length=2000), PlainText]
ExternalId = Annotated[str, Field(min_length=1, max_length=200), PlainText]
QueueName = Annotated[str, Field(min_length=1, max_length=79), PlainText]
Category = Annotated[str, Field(min_length=1, max_length=64), PlainText]
TimeZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]{1,64}$",
        description="IANA time zone for a preferred time given without a UTC offset.",
        examples=["Europe/Moscow"],
    ),
]
Priority = Annotated[int, Field(ge=-1000, le=1000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallbackCreate(_In):
    """A callback to place: the number, and the campaign (or the queue) it belongs to."""

    number: Number
    campaign: CampaignName | None = Field(
        default=None, description="Campaign name; give this or `queue`."
    )
    queue: QueueName | None = Field(
        default=None, description="Asterisk queue of a configured campaign; instead of `campaign`."
    )
    pbx: CampaignName | None = Field(
        default=None, description="AMI endpoint name, to pick among queues of the same name."
    )
    preferred_at: datetime | None = Field(
        default=None,
        description="When the client wants to be called: with a UTC offset, or a local time "
        "plus `timezone`. Unset or in the past: as soon as possible.",
    )
    timezone: TimeZoneName | None = None
    priority: Priority | None = Field(
        default=None,
        description="Higher is called first. Unset: the campaign's plus the customer's.",
    )
    note: Note | None = None
    external_id: ExternalId | None = Field(
        default=None, description="The CRM's own id for this request."
    )
    operator: Operator | None = Field(
        default=None, description="Assign the request to this operator."
    )

    @model_validator(mode="after")
    def _campaign_or_queue(self) -> CallbackCreate:
        if (self.campaign is None) == (self.queue is None):
            raise ValueError("give exactly one of `campaign` and `queue`")
        return self


class CancelBody(_In):
    reason: Note | None = Field(default=None, description="Why (kept as the status reason).")


class RescheduleBody(_In):
    preferred_at: datetime = Field(
        description="New time: with a UTC offset, or a local time plus `timezone`."
    )
    timezone: TimeZoneName | None = None


class CallNowBody(_In):
    operator: Operator | None = Field(
        default=None, description="Ring this operator first; unset: any free operator."
    )


class AssignBody(_In):
    operator: Operator


class CustomerPut(_In):
    category: Category = "regular"
    priority: Priority = Field(default=0, description="Added to the priority of new requests.")
    skip_queue: bool = Field(default=False, description="Route straight to an operator (VIP).")
    note: Note | None = None


# --------------------------------------------------------------------------- responses


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AttemptOut(_Out):
    id: str
    state: AttemptState
    outcome: AttemptOutcome | None
    operator: str | None
    dial_status: str | None
    talk_seconds: int | None
    created_at: datetime
    operator_answered_at: datetime | None
    client_answered_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            id=str(attempt.id),
            state=attempt.state,
            outcome=attempt.outcome,
            operator=attempt.operator_interface,
            dial_status=attempt.dial_status,
            talk_seconds=attempt.talk_seconds,
            created_at=attempt.created_at,
            operator_answered_at=attempt.operator_answered_at,
            client_answered_at=attempt.client_answered_at,
            ended_at=attempt.ended_at,
        )


class CallbackOut(_Out):
    id: int
    campaign: str
    number: str
    status: RequestStatus
    status_reason: str | None
    source: RequestSource
    priority: int
    due_at: datetime
    preferred_at: datetime | None
    call_now_requested_at: datetime | None
    assigned_operator: str | None
    abandon_count: int
    client_attempts: int
    queue: str | None
    caller_name: str | None
    hold_seconds: int | None
    external_id: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def fields_of(cls, request: CallbackRequest, campaign: str) -> dict[str, Any]:
        return {
            "id": request.id,
            "campaign": campaign,
            "number": request.number,
            "status": request.status,
            "status_reason": request.status_reason,
            "source": request.source,
            "priority": request.priority,
            "due_at": request.due_at,
            "preferred_at": request.preferred_at,
            "call_now_requested_at": request.call_now_requested_at,
            "assigned_operator": request.assigned_operator,
            "abandon_count": request.abandon_count,
            "client_attempts": request.client_attempts,
            "queue": request.queue,
            "caller_name": request.caller_name,
            "hold_seconds": request.hold_seconds,
            "external_id": request.external_id,
            "note": request.note,
            "created_at": request.created_at,
            "updated_at": request.updated_at,
            "closed_at": request.closed_at,
        }

    @classmethod
    def of(cls, view: RequestView) -> CallbackOut:
        return cls(**cls.fields_of(view.request, view.campaign))


class CallbackDetail(CallbackOut):
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, view: RequestView) -> CallbackDetail:
        return cls(
            **cls.fields_of(view.request, view.campaign),
            attempts=[AttemptOut.of(a) for a in view.attempts],
        )


class CallbackPage(_Out):
    items: list[CallbackOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class CustomerOut(_Out):
    number: str
    category: str
    priority: int
    skip_queue: bool
    note: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, customer: Customer) -> CustomerOut:
        return cls(**customer.model_dump())


class CustomerPage(_Out):
    items: list[CustomerOut]
    next_cursor: str | None


class Health(_Out):
    status: Literal["ok", "degraded"]
    components: dict[str, Any] = Field(
        description="Per component: database, ami (per PBX), capture, dialer, tasks."
    )


class Problem(_Out):
    """RFC 9457 problem details."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
