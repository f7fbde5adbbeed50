"""Database rows as frozen models: code past the query layer never sees a mutable record."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class RequestStatus(StrEnum):
    PENDING = "pending"
    DIALING = "dialing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    RESOLVED_INBOUND = "resolved_inbound"

    @property
    def is_open(self) -> bool:
        return self in (RequestStatus.PENDING, RequestStatus.DIALING)


class RequestSource(StrEnum):
    ABANDON = "abandon"
    IVR = "ivr"
    API = "api"
    CALLER_PAYS = "caller_pays"
    CLI = "cli"


class AttemptState(StrEnum):
    CLAIMED = "claimed"
    ORIGINATING = "originating"
    OPERATOR_RINGING = "operator_ringing"
    OPERATOR_ANSWERED = "operator_answered"
    CLIENT_RINGING = "client_ringing"
    BRIDGED = "bridged"
    FINISHED = "finished"


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    UNAVAILABLE = "unavailable"
    SHORT_CALL = "short_call"
    CLIENT_DECLINED = "client_declined"
    OPERATOR_NO_ANSWER = "operator_no_answer"
    OPERATOR_BUSY = "operator_busy"
    OPERATOR_DECLINED = "operator_declined"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Row(BaseModel):
    """Base of every row model: frozen, and strict about unknown columns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls.model_validate(dict(record.items()))


class CampaignRow(Row):
    id: int
    name: str
    pbx: str
    queue: str
    mode: str
    created_at: datetime
    updated_at: datetime
    expiry_seconds: Decimal | None = None
    """The campaign's retry.expiry_seconds as last synced (migration 0018); None: never."""


class CallbackRequest(Row):
    id: int
    campaign_id: int
    number: str
    status: RequestStatus
    source: RequestSource
    priority: int
    due_at: datetime
    preferred_at: datetime | None
    first_joined_at: datetime | None
    abandon_count: int
    last_abandon_at: datetime | None
    client_attempts: int
    operator_declines: int
    pbx: str | None
    queue: str | None
    caller_name: str | None
    position: int | None
    original_position: int | None
    hold_seconds: int | None
    uniqueid: str | None
    linkedid: str | None
    external_id: str | None
    note: str | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    resolved_inbound_at: datetime | None
    assigned_operator: str | None
    call_now_requested_at: datetime | None


class Attempt(Row):
    id: uuid.UUID
    request_id: int
    number: str
    pbx: str
    operator_interface: str | None
    operator_channel_id: str
    client_channel_id: str
    state: AttemptState
    outcome: AttemptOutcome | None
    dial_status: str | None
    hangup_by: str | None
    talk_seconds: int | None
    claimed_by: str
    heartbeat_at: datetime
    created_at: datetime
    operator_answered_at: datetime | None
    client_answered_at: datetime | None
    ended_at: datetime | None
    detail: dict[str, Any]
    campaign_id: int | None
    stage: str | None
    mode: str


class Instance(Row):
    name: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


class Interaction(Row):
    id: int
    number: str
    pbx: str
    queue: str | None
    operator_interface: str
    source: str
    uniqueid: str | None
    occurred_at: datetime


class Customer(Row):
    number: str
    category: str
    priority: int
    skip_queue: bool
    note: str | None
    created_at: datetime
    updated_at: datetime


class OutboxMessage(Row):
    """An event (channel 'event', written by the triggers of migration 0009) or an SMS."""

    id: int
    channel: str
    topic: str
    dedupe_key: str | None
    request_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    event_id: uuid.UUID
    campaign_id: int | None
    number: str | None
    quiet_until: datetime | None
    fanned_out_at: datetime | None


class OutboxDelivery(Row):
    """One message to one target (a webhook endpoint's name, or 'sms'), with its retries."""

    outbox_id: int
    target: str
    created_at: datetime
    available_at: datetime
    tries: int
    last_error: str | None
    last_status: int | None
    delivered_at: datetime | None
    given_up_at: datetime | None


class IdempotencyKey(Row):
    client: str
    key: str
    fingerprint: str
    request_id: int | None
    response_status: int | None
    response_body: dict[str, Any] | None
    created_at: datetime


class CallerPaysCall(Row):
    pbx: str
    uniqueid: str
    campaign: str
    campaign_id: int | None
    number: str | None
    outcome: str
    request_id: int | None
    received_at: datetime


class OperatorReminder(Row):
    pbx: str
    operator_interface: str
    last_reminded_at: datetime
    last_reminder_id: uuid.UUID


class ReminderCall(Row):
    id: uuid.UUID
    channel_id: str
    pbx: str
    operator_interface: str
    campaign_id: int
    pending_count: int
    claimed_by: str
    created_at: datetime
    heard_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
