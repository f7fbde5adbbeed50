"""Senders: one message to one target, with every wait bounded. They never raise for a
failed delivery; they return a :class:`SendResult` the worker turns into a retry or a
give-up."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from callbackd.ami.errors import AmiError
from callbackd.ami.link import AmiLink
from callbackd.domain.delivery import render
from callbackd.domain.signature import EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from callbackd.domain.targets import TargetPolicy
from callbackd.outbound.guard import TargetRefused, refusal_for_url
from callbackd.settings import SmsAmiSender, SmsHttpGateway, WebhookEndpoint


@dataclass(frozen=True)
class OutgoingMessage:
    """One claimed delivery: what the senders need to know."""

    event_id: str
    topic: str
    payload: Mapping[str, Any]
    created_at: str
    tries: int


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: int | None = None
    error: str | None = None


class Sender(Protocol):
    async def send(self, message: OutgoingMessage) -> SendResult: ...


def webhook_body(message: OutgoingMessage) -> bytes:
    """The JSON document POSTed for one event (identical on every retry)."""
    document = {
        "id": message.event_id,
        "type": message.topic,
        "created_at": message.created_at,
        "data": dict(message.payload),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _post(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    policy: TargetPolicy,
    timeout: float,
    **kwargs: Any,
) -> SendResult:
    refusal = refusal_for_url(url, policy)
    if refusal is not None:
        return SendResult(ok=False, error=f"target refused: {refusal}")
    try:
        async with session.request(
            method,
            url,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,  # a redirect could lead past the guard
            **kwargs,
        ) as response:
            await response.read()
            if 200 <= response.status < 300:
                return SendResult(ok=True, status=response.status)
            return SendResult(ok=False, status=response.status, error=f"HTTP {response.status}")
    except TimeoutError:
        return SendResult(ok=False, error=f"no answer within {timeout} s")
    except (aiohttp.ClientError, OSError) as err:
        refused = _refusal_in(err)
        if refused is not None:
            return SendResult(ok=False, error=f"target refused: {refused}")
        # The message names the host and the cause, never headers or bodies.
        return SendResult(ok=False, error=f"{type(err).__name__}: {err}"[:300])


def _refusal_in(err: BaseException) -> TargetRefused | None:
    """The guard's refusal behind aiohttp's connection error, if that is what it was."""
    seen: BaseException | None = err
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, TargetRefused):
            return seen
        inner = getattr(seen, "os_error", None)
        seen = inner if isinstance(inner, BaseException) else seen.__cause__
    return None


class WebhookSender:
    """POSTs events to one endpoint, signed with its secret."""

    def __init__(
        self, endpoint: WebhookEndpoint, session: aiohttp.ClientSession, policy: TargetPolicy
    ) -> None:
        self.endpoint = endpoint
        self._session = session
        self._policy = policy

    async def send(self, message: OutgoingMessage) -> SendResult:
        body = webhook_body(message)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.endpoint.secret.get_secret_value(), body),
            EVENT_ID_HEADER: message.event_id,
            EVENT_HEADER: message.topic,
            "Callbackd-Delivery-Attempt": str(message.tries),
        }
        return await _post(
            self._session,
            "POST",
            self.endpoint.url,
            policy=self._policy,
            timeout=self.endpoint.timeout_seconds,
            data=body,
            headers=headers,
        )


def _sms_values(message: OutgoingMessage) -> dict[str, str]:
    number = str(message.payload["number"])
    return {
        "number": number,
        "number_digits": number.lstrip("+"),
        "text": str(message.payload["text"]),
        "language": str(message.payload.get("language", "")),
        "message_id": message.event_id,
    }


class HttpSmsSender:
    """An HTTP SMS gateway; body fields filled from the configured templates."""

    def __init__(self, gateway: SmsHttpGateway, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self._session = session

    async def send(self, message: OutgoingMessage) -> SendResult:
        gateway = self.gateway
        values = _sms_values(message)
        fields = {key: render(template, values) for key, template in gateway.body.items()}
        headers = dict(gateway.headers)
        headers.update({k: v.get_secret_value() for k, v in gateway.secret_headers.items()})
        if gateway.bearer_token is not None:
            headers["Authorization"] = f"Bearer {gateway.bearer_token.get_secret_value()}"
        if gateway.basic_username is not None and gateway.basic_password is not None:
            pair = f"{gateway.basic_username}:{gateway.basic_password.get_secret_value()}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        kwargs: dict[str, Any] = {"headers": headers}
        if gateway.method == "GET":
            kwargs["params"] = fields
        elif gateway.body_format == "json":
            kwargs["json"] = fields
        else:
            kwargs["data"] = fields
        return await _post(
            self._session,
            gateway.method,
            gateway.url,
            policy=gateway.policy,
            timeout=gateway.timeout_seconds,
            **kwargs,
        )


class AmiSmsSender:
    """``MessageSend`` through the PBX (the AMI account needs write class ``message``).

    The text goes as ``Base64Body``, so newlines and any characters survive AMI framing.
    Asterisk answers once it has handed the message to the message technology; a timeout
    is retried, which may (rarely) send one text twice.
    """

    def __init__(self, config: SmsAmiSender, links: Mapping[str, AmiLink]) -> None:
        self.config = config
        self._links = links

    async def send(self, message: OutgoingMessage) -> SendResult:
        link = self._links.get(self.config.pbx)
        if link is None:
            return SendResult(ok=False, error=f"no AMI link named {self.config.pbx!r}")
        values = _sms_values(message)
        headers = {
            "Action": "MessageSend",
            "Destination": render(self.config.destination, values),
            "Base64Body": base64.b64encode(values["text"].encode("utf-8")).decode("ascii"),
        }
        if self.config.from_uri:
            headers["From"] = self.config.from_uri
        try:
            await link.action(headers, timeout=self.config.timeout_seconds)
        except AmiError as err:
            return SendResult(ok=False, error=f"{type(err).__name__}: {err}"[:300])
        return SendResult(ok=True)
