"""One validated, immutable settings object for the whole daemon.

Values come from (highest priority first) keyword overrides, ``CALLBACKD_*`` environment
variables (nested with ``__``), the TOML config file and the defaults below.  Every problem
is reported as a :class:`ConfigError` naming the offending key (or environment variable), so
an admin can fix the file without reading a pydantic traceback.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import re
import socket
import string
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from callbackd import dialplan_contract
from callbackd.domain.caller_id import CallerId, parse_caller_id
from callbackd.domain.delivery import (
    GATEWAY_FIELDS,
    SMS_TEMPLATE_FIELDS,
    TOPICS,
    SmsWhen,
    check_template,
)
from callbackd.domain.targets import IpNetwork, TargetPolicy, parse_address

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "AgiSettings",
    "AmiEndpoint",
    "CallingWindow",
    "Campaign",
    "CaptureSettings",
    "ClientFirstSettings",
    "ConfigError",
    "CrmTaskSettings",
    "DaemonSettings",
    "DatabaseSettings",
    "HttpSettings",
    "HttpToken",
    "LoggingSettings",
    "PhoneSettings",
    "RetryPolicy",
    "Settings",
    "load_settings",
    "redact_dsn",
    "render_effective_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/callbackd/callbackd.toml")
ENV_PREFIX = "CALLBACKD_"
ENV_NESTED_DELIMITER = "__"
REDACTED = "***"

_SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Lowercase only: environment variable names are matched case-insensitively and arrive
# lower-cased, so CALLBACKD_CAMPAIGNS__SALES__... could never reach a campaign named "Sales".
_CAMPAIGN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CATEGORY_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""The categories the inbound route passes on (callbackd.domain.inbound.safe_category)."""
_QUEUE_NAME = re.compile(r"^[^\s\[\]]{1,79}$")
_E164_PREFIX = re.compile(r"^\+?[0-9]{1,15}$")

Seconds = Annotated[float, Field(gt=0)]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CampaignMode = Literal["operator_first", "client_first", "crm_task"]
AnnounceNumber = Literal["off", "before_prompt", "on_request"]
DialNumberFormat = Literal["e164", "national"]
# What CHANNEL(language) accepts in the shipped dialplan (dialplan_contract.VAR_LANGUAGE).
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]


class _KeyedValueError(ValueError):
    """A validation failure that belongs to a sub-key of the field being validated.

    Cross-field checks run on a parent (e.g. all campaigns at once); carrying the sub-key lets
    :class:`ConfigError` point at ``campaigns.sales.pbx`` rather than at ``campaigns``.
    """

    def __init__(self, subkey: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.subkey = tuple(subkey)
        self.message = message


class _Model(BaseModel):
    """Base for every section: immutable, and unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- database


class DatabaseSettings(_Model):
    """Postgres connection pool for the callback queue."""

    dsn: SecretStr = Field(
        default=SecretStr("postgresql:///callbackd"),
        description=(
            "libpq-style URL, e.g. postgresql://callbackd:password@db:5432/callbackd. "
            "The default uses the local Unix socket and peer authentication."
        ),
    )
    min_connections: int = Field(
        default=2, ge=0, le=100, description="Connections the pool keeps open even when idle."
    )
    max_connections: int = Field(
        default=10, ge=1, le=100, description="Upper bound on simultaneously open connections."
    )
    connect_timeout_seconds: Seconds = Field(
        default=5.0, description="Seconds to wait for a new connection before failing."
    )
    command_timeout_seconds: Seconds = Field(
        default=10.0, description="Seconds a single SQL statement may run before it is cancelled."
    )

    @field_validator("dsn")
    @classmethod
    def _dsn_is_postgres_url(cls, value: SecretStr) -> SecretStr:
        # Never echo the value: it may carry a password.
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must be a URL starting with postgresql:// "
                "(e.g. postgresql://user:password@host:5432/dbname)"
            )
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.min_connections > self.max_connections:
            raise _KeyedValueError(
                ["min_connections"],
                f"must not exceed max_connections ({self.max_connections})",
            )
        return self


# --------------------------------------------------------------------------- AMI


class AmiEndpoint(_Model):
    """One Asterisk Manager Interface connection (one PBX)."""

    name: str = Field(
        default="pbx",
        description=(
            "Short unique name of this PBX (lowercase letters, digits, '-' or '_'); "
            "campaigns refer to it in their `pbx` key."
        ),
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="AMI host name or address.")
    port: int = Field(default=5038, ge=1, le=65535, description="AMI TCP port (manager.conf).")
    username: str = Field(
        default="callbackd", min_length=1, description="AMI user ([section] in manager.conf)."
    )
    secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "AMI password (`secret=` in manager.conf). Prefer the environment variable "
            "CALLBACKD_AMI__<NAME>__SECRET over writing it into the file."
        ),
    )
    tls: bool = Field(default=False, description="Connect with TLS (Asterisk `tlsenable`).")
    connect_timeout_seconds: Seconds = Field(
        default=5.0, description="Seconds to wait for the TCP/TLS connection and login."
    )
    ping_interval_seconds: Seconds = Field(
        default=10.0, description="Seconds between keep-alive Ping actions."
    )
    ping_timeout_seconds: Seconds = Field(
        default=5.0, description="Seconds without a Pong before the connection is declared dead."
    )
    action_timeout_seconds: Seconds = Field(
        default=10.0, description="Seconds to wait for the response to an action (e.g. Originate)."
    )
    reconnect_backoff_initial_seconds: Seconds = Field(
        default=0.5, description="First delay before reconnecting after a lost connection."
    )
    reconnect_backoff_max_seconds: Seconds = Field(
        default=30.0, description="Ceiling for the doubling reconnect delay."
    )
    verify_account: bool = Field(
        default=True,
        description="On every connect, check the account's permissions and event filters "
        "(ListCommands, QueueStatus, and a probe call into the shipped callbackd-probe "
        "context) and log precisely what is missing.",
    )
    queue_log_path: Path | None = Field(
        default=None,
        description=(
            "The PBX's queue_log (e.g. /var/log/asterisk/queue_log), read at start-up and after "
            "every reconnect to replay abandons and caller-pays calls missed while callbackd "
            "was not listening. Unset: no replay."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid name: use 1-32 lowercase letters, digits, '-' or '_', "
                "starting with a letter"
            )
        return value

    @model_validator(mode="after")
    def _timing_is_consistent(self) -> AmiEndpoint:
        if self.ping_timeout_seconds > self.ping_interval_seconds:
            raise _KeyedValueError(
                ["ping_timeout_seconds"],
                f"must not exceed ping_interval_seconds ({self.ping_interval_seconds})",
            )
        if self.reconnect_backoff_initial_seconds > self.reconnect_backoff_max_seconds:
            raise _KeyedValueError(
                ["reconnect_backoff_initial_seconds"],
                f"must not exceed reconnect_backoff_max_seconds "
                f"({self.reconnect_backoff_max_seconds})",
            )
        return self


# --------------------------------------------------------------------------- AGI


_AGI_SOUNDS = r"^[A-Za-z0-9_./-]+(&[A-Za-z0-9_./-]+)*$"


class AgiSettings(_Model):
    """FastAGI server the dialplan calls into (``AGI(agi://host:port/...)``)."""

    listen_host: str = Field(
        default="127.0.0.1", min_length=1, description="Address the FastAGI server binds to."
    )
    listen_port: int = Field(
        default=4573, ge=1, le=65535, description="FastAGI TCP port (4573 is the AGI default)."
    )
    header_timeout_seconds: Seconds = Field(
        default=5.0,
        description="Seconds Asterisk gets to send the agi_* environment block before we hang up.",
    )
    max_header_bytes: int = Field(
        default=16384,
        ge=1024,
        le=1048576,
        description="Largest accepted agi_* environment block in bytes (guards memory).",
    )
    # -- server limits and routes (FastAGI and classic AGI share the route settings)
    enabled: bool = Field(
        default=True, description="Run the FastAGI server inside the daemon (callbackd run)."
    )
    max_sessions: int = Field(
        default=200, ge=1, le=10000, description="FastAGI calls served at once; more are refused."
    )
    command_timeout_seconds: Seconds = Field(
        default=5.0, description="Seconds Asterisk gets to answer one AGI command."
    )
    session_timeout_seconds: Seconds = Field(
        default=300.0, description="Longest one AGI call (a whole IVR dialogue) may take."
    )
    pbx: str = Field(
        default="",
        description="AMI endpoint whose operator board and interactions the routes use. "
        "Empty: the first [[ami]] endpoint.",
    )
    sticky_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="inbound: a caller's last operator within this many days rings first "
        "(0: never).",
    )
    sticky_ring_seconds: int = Field(
        default=15, ge=1, le=99, description="inbound: seconds the sticky operator rings."
    )
    ivr_attempts: int = Field(
        default=3, ge=1, le=9, description="request: prompts per question before the default."
    )
    ivr_digit_timeout_seconds: int = Field(
        default=6, ge=1, le=60, description="request: seconds to wait for the caller's keys."
    )
    ivr_ask_time: bool = Field(
        default=True, description="request: ask for a preferred callback time."
    )
    ivr_read_back: bool = Field(
        default=True,
        description="request: say the caller's number before asking to confirm it, and the "
        "chosen time after it was keyed in.",
    )
    ivr_max_minutes: int = Field(
        default=1440, ge=1, le=9999, description='request: largest "in N minutes" accepted.'
    )
    # The request IVR's sounds: callbackd's shipped prompts by default (played in the
    # campaign's language); a site may point any of them at its own recordings.
    prompt_number: str = Field(
        default=dialplan_contract.prompt("ivr-your-number"),
        pattern=_AGI_SOUNDS,
        description="request: played before the caller's number is said.",
    )
    prompt_confirm_number: str = Field(
        default=dialplan_contract.prompt("ivr-confirm-number"),
        pattern=_AGI_SOUNDS,
        description="request: asks for 1 (confirm) or another number followed by #.",
    )
    prompt_time: str = Field(
        default=dialplan_contract.prompt("ivr-ask-time"),
        pattern=_AGI_SOUNDS,
        description="request: asks for the time: 0 soonest, 1+HHMM today, 2+HHMM tomorrow, "
        "3+N in N minutes, then #.",
    )
    prompt_invalid: str = Field(
        default=dialplan_contract.prompt("ivr-invalid"),
        pattern=_AGI_SOUNDS,
        description="request: invalid keys (the question is asked again).",
    )
    prompt_booked_for: str = Field(
        default=dialplan_contract.prompt("ivr-booked-for"),
        pattern=_AGI_SOUNDS,
        description="request: before the booked day and time are said.",
    )
    prompt_today: str = Field(
        default=dialplan_contract.prompt("ivr-today"),
        pattern=_AGI_SOUNDS,
        description="request: the booked day is today (before the time).",
    )
    prompt_tomorrow: str = Field(
        default=dialplan_contract.prompt("ivr-tomorrow"),
        pattern=_AGI_SOUNDS,
        description="request: the booked day is tomorrow (before the time).",
    )
    prompt_booked_soonest: str = Field(
        default=dialplan_contract.prompt("ivr-booked-soonest"),
        pattern=_AGI_SOUNDS,
        description="request: booked with no preferred time (as soon as possible).",
    )
    prompt_done: str = Field(
        default=dialplan_contract.prompt("ivr-thank-you"),
        pattern=_AGI_SOUNDS,
        description="request: played last, once the request is stored.",
    )


# --------------------------------------------------------------------------- capture


class CaptureSettings(_Model):
    """How abandoned callers are captured from AMI and queue_log."""

    resolve_inbound_in_all_campaigns: bool = Field(
        default=False,
        description="When a caller reaches an operator in any queue, close their pending "
        "requests in every campaign (false: only in that queue's campaign).",
    )
    buffer_limit: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Abandons kept in memory while Postgres is unreachable; beyond this each "
        "further abandon is logged as lost and counted.",
    )
    queue_log_horizon_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 14,
        description="How far back queue_log is replayed at most on start and reconnect.",
    )


# --------------------------------------------------------------------------- daemon


class DaemonSettings(_Model):
    """The process itself."""

    shutdown_grace_seconds: Seconds = Field(
        default=30.0,
        description="On SIGTERM: how long running work may take to finish before it is cut.",
    )
    instance_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Name of this instance in claims and logs (default: hostname and pid). "
        "A fixed name lets a restarted instance take over its own calls at once.",
    )
    max_callbacks_per_minute: int = Field(
        default=60,
        ge=1,
        le=10_000,
        description="Callbacks started per campaign per minute at most, so a backlog after "
        "an outage goes out gradually.",
    )
    dialer_poll_seconds: Seconds = Field(
        default=1.0,
        description="The dialer looks for due callbacks at least this often; events (an "
        "operator freed, a request stored or due) wake it sooner.",
    )
    operator_settle_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="After callbackd's own call to an operator ends, the operator is offered "
        "again once Asterisk reports their phone's state anew, or after this long if no "
        "report comes (a phone whose state never changed). Asterisk's reports lag under "
        "load; acting on the state from before the call could ring a phone now in use.",
    )
    heartbeat_seconds: Seconds = Field(
        default=5.0,
        description="How often this instance records that it is alive (and looks for the "
        "in-flight calls of instances that stopped).",
    )
    orphan_after_seconds: Seconds = Field(
        default=20.0,
        description="An instance silent this long is taken for dead: a live one adopts its "
        "in-flight calls and reconciles them with Asterisk. Keep it several heartbeats long.",
    )

    @model_validator(mode="after")
    def _orphan_after_heartbeats(self) -> DaemonSettings:
        if self.orphan_after_seconds < 2 * self.heartbeat_seconds:
            raise _KeyedValueError(
                ["orphan_after_seconds"],
                f"must be at least two heartbeats (2 x {self.heartbeat_seconds:g} s): a live "
                "instance that beats late would otherwise lose its calls",
            )
        return self


# --------------------------------------------------------------------------- logging


class LoggingSettings(_Model):
    """How the daemon logs."""

    level: LogLevel = Field(default="info", description="Minimum level: debug|info|warning|error.")
    format: LogFormat = Field(
        default="auto",
        description="json, console, or auto (JSON when stdout is not a terminal, e.g. systemd).",
    )
    mask_numbers: bool = Field(
        default=True,
        description="Show phone numbers in logs with only their last 4 digits (privacy).",
    )

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


# --------------------------------------------------------------------------- phone


class PhoneSettings(_Model):
    """How caller numbers are interpreted and which ones are never called."""

    default_region: str = Field(
        default="US",
        description=(
            "ISO 3166 alpha-2 country used to read numbers that arrive without a +country code "
            "(national format). Set it to the PBX's country."
        ),
    )
    blocked_prefixes: tuple[str, ...] = Field(
        default=(),
        description=(
            "E.164 digit prefixes that are never called back (premium rate, emergency...), "
            "e.g. ['1900', '44870']. A leading + is accepted and ignored."
        ),
    )
    blocked_regions: tuple[str, ...] = Field(
        default=(),
        description="ISO 3166 alpha-2 countries whose numbers are never called back.",
    )
    own_numbers: tuple[str, ...] = Field(
        default=(),
        description="The PBX's own public numbers; calls from them are never called back.",
    )

    @field_validator("default_region", mode="before")
    @classmethod
    def _region_is_supported(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 region known to phonenumbers")
        return region

    @field_validator("blocked_regions", mode="before")
    @classmethod
    def _regions_are_supported(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value
        regions: list[object] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                item = item.strip().upper()
                if item not in phonenumbers.SUPPORTED_REGIONS:
                    raise _KeyedValueError(
                        [index], f"{item!r} is not an ISO 3166 alpha-2 region known to phonenumbers"
                    )
            regions.append(item)
        return tuple(regions)

    @field_validator("blocked_prefixes")
    @classmethod
    def _prefixes_are_digits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned: list[str] = []
        for index, prefix in enumerate(value):
            if not _E164_PREFIX.fullmatch(prefix.strip()):
                raise _KeyedValueError([index], f"{prefix!r} is not a digit prefix like '1900'")
            cleaned.append(prefix.strip().lstrip("+"))
        return tuple(cleaned)

    @field_validator("own_numbers")
    @classmethod
    def _numbers_are_e164(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        region = info.data.get("default_region", "US")
        normalised: list[str] = []
        for index, raw in enumerate(value):
            try:
                parsed = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException as exc:
                raise _KeyedValueError([index], f"{raw!r} is not a phone number: {exc}") from exc
            if not phonenumbers.is_possible_number(parsed):
                raise _KeyedValueError([index], f"{raw!r} is not a possible phone number")
            normalised.append(
                phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            )
        return tuple(normalised)


# --------------------------------------------------------------------------- outbox, webhooks, SMS


def _resolve_host(host: str, timeout: float = 3.0) -> list[Any] | None:
    """The addresses *host* resolves to now, or None if it does not resolve in time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, host, None, proto=socket.IPPROTO_TCP)
        try:
            infos = future.result(timeout=timeout)
        except (OSError, concurrent.futures.TimeoutError):
            return None
    addresses = []
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None:
            addresses.append(address)
    return addresses


def check_target_url(url: str, policy: TargetPolicy) -> None:
    """ValueError if *url* is not a plain http(s) URL or its host is a refused address.

    An IP literal is checked as is; a name is resolved now and every address must pass
    (a name that does not resolve now is accepted: the guard runs again on every request).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (use the secret/auth settings)")
    host = parts.hostname
    literal = parse_address(host)
    addresses = [literal] if literal is not None else (_resolve_host(host) or [])
    refused = policy.first_refusal(addresses)
    if refused is not None:
        address, reason = refused
        raise ValueError(
            f"host {host!r} is {address} ({reason} address): refused as a request target "
            "unless allowed (allow_private_targets = true, or allowed_networks)"
        )


def _networks(value: object) -> object:
    if not isinstance(value, list | tuple):
        return value
    parsed: list[object] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            try:
                parsed.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise _KeyedValueError([index], f"{item!r} is not an IP network: {exc}") from exc
        else:
            parsed.append(item)
    return tuple(parsed)


class OutboxSettings(_Model):
    """How webhooks and SMS are delivered: polling, retries with backoff, giving up."""

    poll_interval_seconds: Seconds = Field(
        default=2.0,
        description="Seconds between looks for due deliveries (a NOTIFY wakes the worker "
        "sooner; polling is the guarantee).",
    )
    batch_size: int = Field(
        default=50, ge=1, le=1000, description="Deliveries claimed (and sent in parallel) at once."
    )
    backoff_initial_seconds: Seconds = Field(
        default=5.0, description="Delay after the first failed try."
    )
    backoff_factor: float = Field(
        default=2.0, ge=1.0, le=10.0, description="Each further failure waits this much longer."
    )
    backoff_max_seconds: Seconds = Field(default=3600.0, description="Ceiling of the delay.")
    jitter: float = Field(
        default=0.25, ge=0, lt=1, description="Each delay is shortened by up to this fraction."
    )
    max_age_seconds: Seconds = Field(
        default=86400.0,
        description="A message still undelivered this long after its event is given up.",
    )
    retention_days: int = Field(
        default=7,
        ge=0,
        le=3650,
        description="Finished events (every delivery delivered or given up) are deleted this "
        "many days after they were written, hourly, with their deliveries; an SMS is kept "
        "at least until its quiet window is over. Events still being delivered are never "
        "deleted. 0 keeps everything forever.",
    )


class WebhookEndpoint(_Model):
    """One receiver of callback events (a CRM)."""

    name: str = Field(description="Short unique name (lowercase); delivery rows refer to it.")
    url: str = Field(description="http(s) URL the events are POSTed to as JSON.")
    secret: SecretStr = Field(
        description="HMAC-SHA256 key of the Callbackd-Signature header (share it with the "
        "receiver only)."
    )
    topics: tuple[str, ...] = Field(
        default=(),
        description="Events sent, e.g. ['callback.completed', 'callback.failed'] or "
        "['callback.*']. Empty: all.",
    )
    timeout_seconds: Seconds = Field(
        default=10.0, description="Seconds one POST may take in all (connect, send, answer)."
    )

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value) or value == "sms":
            raise ValueError(
                f"{value!r} is not a valid name: 1-32 lowercase letters, digits, '-' or '_' "
                "(and not 'sms')"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _secret_is_long(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("topics")
    @classmethod
    def _topics_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, topic in enumerate(value):
            if topic not in TOPICS and topic not in ("*", "callback.*"):
                raise _KeyedValueError(
                    [index], f"{topic!r} is not an event (known: {', '.join(TOPICS)})"
                )
        return value


class WebhookSettings(_Model):
    """Signed webhooks to CRMs for every callback state change."""

    endpoints: tuple[WebhookEndpoint, ...] = Field(
        default=(), description="Receivers ([[webhooks.endpoints]] tables)."
    )
    allow_private_targets: bool = Field(
        default=False,
        description="Allow URLs that resolve to loopback, private, link-local or unique-local "
        "addresses (metadata addresses stay refused unless in allowed_networks).",
    )
    allowed_networks: tuple[IpNetwork, ...] = Field(
        default=(),
        description="Networks always allowed as targets, e.g. ['10.1.2.0/24'].",
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        return _networks(value)

    @property
    def policy(self) -> TargetPolicy:
        return TargetPolicy(self.allow_private_targets, self.allowed_networks)

    @model_validator(mode="after")
    def _targets_allowed(self) -> WebhookSettings:
        seen: set[str] = set()
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.name in seen:
                raise _KeyedValueError(
                    ["endpoints", index, "name"], f"duplicate endpoint name {endpoint.name!r}"
                )
            seen.add(endpoint.name)
            try:
                check_target_url(endpoint.url, self.policy)
            except ValueError as exc:
                raise _KeyedValueError(["endpoints", index, "url"], str(exc)) from exc
        return self


class SmsHttpGateway(_Model):
    """An HTTP SMS gateway: the request callbackd makes for one message."""

    url: str = Field(description="http(s) URL of the gateway's send call.")
    method: Literal["POST", "GET"] = Field(
        default="POST", description="POST sends `body` as JSON or a form; GET as query."
    )
    body_format: Literal["json", "form"] = Field(
        default="json", description="How a POST body is encoded."
    )
    body: dict[str, str] = Field(
        default_factory=lambda: {"to": "{number}", "text": "{text}"},
        description="Fields sent; values may use {number} (E.164), {number_digits}, {text}, "
        "{language} and {message_id} (stable per message: gateways can dedupe by it).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra plain headers.")
    secret_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers holding credentials, e.g. X-Api-Key."
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="Sent as Authorization: Bearer <token>."
    )
    basic_username: str | None = Field(default=None, description="HTTP basic auth user.")
    basic_password: SecretStr | None = Field(default=None, description="HTTP basic password.")
    timeout_seconds: Seconds = Field(default=10.0, description="Seconds one request may take.")
    allow_private_targets: bool = Field(
        default=False, description="Allow a gateway on loopback or a private network."
    )
    allowed_networks: tuple[IpNetwork, ...] = Field(
        default=(), description="Networks always allowed for the gateway."
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        return _networks(value)

    @property
    def policy(self) -> TargetPolicy:
        return TargetPolicy(self.allow_private_targets, self.allowed_networks)

    @field_validator("body")
    @classmethod
    def _body_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for key, template in value.items():
            try:
                check_template(template, GATEWAY_FIELDS)
            except ValueError as exc:
                raise _KeyedValueError([key], str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _target_allowed(self) -> SmsHttpGateway:
        try:
            check_target_url(self.url, self.policy)
        except ValueError as exc:
            raise _KeyedValueError(["url"], str(exc)) from exc
        if (self.basic_username is None) != (self.basic_password is None):
            raise _KeyedValueError(
                ["basic_username"], "basic_username and basic_password go together"
            )
        return self


class SmsAmiSender(_Model):
    """SMS through the PBX: the AMI MessageSend action (needs write class `message`)."""

    pbx: str = Field(default="", description="AMI endpoint to send through. Empty: the first.")
    destination: str = Field(
        description="MessageSend Destination; {number} (E.164) or {number_digits}, e.g. "
        "'pjsip:sms-trunk/sip:{number_digits}@sms.example.net'."
    )
    from_uri: str | None = Field(
        default=None, description="MessageSend From, e.g. 'sip:shop@example.net'."
    )
    timeout_seconds: Seconds = Field(default=5.0, description="Seconds to wait for the answer.")

    @field_validator("destination")
    @classmethod
    def _destination_fields(cls, value: str) -> str:
        check_template(value, frozenset({"number", "number_digits"}))
        return value


class SmsSettings(_Model):
    """Texting callers who gave up (per-campaign templates in campaigns.<name>.sms)."""

    sender: Literal["none", "http", "ami"] = Field(
        default="none", description="none, http (sms.http) or ami (sms.ami, MessageSend)."
    )
    window_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 365,
        description="At most one SMS per number in this many hours (enforced by the database).",
    )
    http: SmsHttpGateway | None = Field(default=None, description="The HTTP gateway.")
    ami: SmsAmiSender | None = Field(default=None, description="MessageSend through the PBX.")

    @model_validator(mode="after")
    def _sender_configured(self) -> SmsSettings:
        if self.sender == "http" and self.http is None:
            raise _KeyedValueError(["http"], "sender = 'http' needs an [sms.http] table")
        if self.sender == "ami" and self.ami is None:
            raise _KeyedValueError(["ami"], "sender = 'ami' needs an [sms.ami] table")
        return self


class CampaignSms(_Model):
    """The SMS a campaign sends to a caller (campaigns.<name>.sms)."""

    template: str = Field(
        min_length=1,
        description="Message text; may use {campaign} and {queue}.",
    )
    language: str = Field(
        default="en",
        pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
        description="Language tag of the text, passed to the gateway as {language}.",
    )
    when: SmsWhen = Field(
        default="abandon",
        description="abandon: when the request is made from an abandon; final_failure: after "
        "the last failed attempt, or when the request expired uncalled; both.",
    )

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        check_template(value, SMS_TEMPLATE_FIELDS)
        return value


# --------------------------------------------------------------------------- campaigns


class RetryPolicy(_Model):
    """When and how often a failed callback is tried again."""

    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Client call attempts before giving up."
    )
    busy_delay_seconds: int = Field(
        default=120, ge=0, description="Wait before retrying after the client was busy."
    )
    no_answer_delay_seconds: int = Field(
        default=300, ge=0, description="Wait before retrying after no answer (or a too-short call)."
    )
    congestion_delay_seconds: int = Field(
        default=60, ge=0, description="Wait before retrying after network congestion."
    )
    unavailable_delay_seconds: int = Field(
        default=60, ge=0, description="Wait before retrying after channel unavailable / failure."
    )
    backoff_factor: float = Field(
        default=1.5,
        ge=1.0,
        le=10.0,
        description="Each further retry waits this many times longer than the previous one.",
    )
    daily_cap_per_number: int = Field(
        default=6,
        ge=1,
        description="Most call attempts to one number per calendar day (in the window's zone).",
    )
    expiry_seconds: int = Field(
        default=86400,
        gt=0,
        description="A callback older than this (since the abandon) is dropped as stale.",
    )
    max_operator_declines: int = Field(
        default=3,
        ge=1,
        description="Operator declines of one callback after which it waits the no-answer "
        "delay before being offered again (the caller is never dropped for it).",
    )


class CallingWindow(_Model):
    """When clients may be called, in the campaign's local time."""

    timezone: str = Field(
        default="UTC", description="IANA time zone of the calling hours, e.g. Europe/Moscow."
    )
    days: tuple[Day, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri"),
        min_length=1,
        description="Weekdays calls are allowed on (mon..sun).",
    )
    start: time = Field(
        default=time(9, 0), description="Local time calling starts (HH:MM), inclusive."
    )
    end: time = Field(
        default=time(21, 0), description="Local time calling stops (HH:MM), exclusive."
    )
    holidays: tuple[date, ...] = Field(
        default=(), description="Dates (YYYY-MM-DD) with no calls at all."
    )

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a known IANA time zone") from exc
        return value

    @field_validator("days", mode="before")
    @classmethod
    def _lowercase_days(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(v.strip().lower() if isinstance(v, str) else v for v in value)
        return value

    @field_validator("days")
    @classmethod
    def _days_unique(cls, value: tuple[Day, ...]) -> tuple[Day, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a day twice")
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> CallingWindow:
        if self.start >= self.end:
            raise _KeyedValueError(
                ["start"], f"must be earlier than end ({self.end.isoformat('minutes')})"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The validated time zone (ZoneInfo caches instances, so this is cheap)."""
        return ZoneInfo(self.timezone)


class ClientFirstSettings(_Model):
    """Client-first mode: the client is rung first, then put into the queue (or a context)."""

    require_free_operator: bool = Field(
        default=False,
        description="Dial only while an operator of the queue is free and no live caller "
        "waits for them (false: dial at once, rate-limited - help lines).",
    )
    max_concurrent_calls: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Client-first calls of this campaign in flight at once, at most.",
    )
    queue_priority: int = Field(
        default=100,
        ge=0,
        le=999,
        description="QUEUE_PRIO the answered client joins the queue with (higher: ahead of "
        "live callers with a lower one).",
    )
    landing_context: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Send the answered client to this dialplan context (extension s, "
        "priority 1: an IVR, a menu) instead of the queue. Unset: the campaign's queue.",
    )


class CrmTaskSettings(_Model):
    """CRM-task mode: never auto-dialled; reminder calls to operators with assigned requests."""

    reminders: bool = Field(
        default=True,
        description="Ring an idle operator who has assigned requests waiting, and say how many.",
    )
    reminder_after_seconds: int = Field(
        default=900,
        ge=0,
        description="Remind only when one of the operator's pending requests is older than this.",
    )
    reminder_interval_seconds: int = Field(
        default=1800,
        ge=1,
        description="At most one reminder call per operator within this many seconds.",
    )
    reminder_ring_seconds: int = Field(
        default=20, ge=1, le=600, description="How long the operator's phone rings."
    )


class Campaign(_Model):
    """One Asterisk queue whose abandoned callers are called back."""

    queue: str = Field(
        default="",
        description="Asterisk queue name (queues.conf section). Empty: the campaign's name.",
    )
    pbx: str = Field(
        default="", description="Name of the AMI endpoint of that queue. Empty: the first one."
    )
    mode: CampaignMode = Field(
        default="operator_first",
        description=(
            "operator_first: ring an operator, then bridge the client; client_first: ring the "
            "client, then put them in the queue; crm_task: only record, never dial."
        ),
    )
    min_hold_seconds: int = Field(
        default=3,
        ge=0,
        description="Callers who hung up sooner than this (misdials) are not called back.",
    )
    initial_delay_seconds: int = Field(
        default=0,
        ge=0,
        description=(
            "Seconds after the abandon before the first callback (gives callers time to "
            "call again by themselves)."
        ),
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=999,
        description="0-999; higher runs first when several campaigns have due callbacks.",
    )
    language: str = Field(
        default="en",
        description=(
            "Language of every call of the campaign (CHANNEL(language) on both legs, IVR and "
            "reminder calls): callbackd's prompts and Asterisk's digits and numbers come from "
            "that sounds directory. callbackd ships en and ru; others need your recordings."
        ),
    )
    announce_number: AnnounceNumber = Field(
        default="on_request",
        description=(
            "When the operator hears the client's number: off (never; their phone shows it), "
            "before_prompt (after the whisper, before 'press 1'), on_request (when they press 0)."
        ),
    )
    operator_confirm: bool = Field(
        default=True,
        description="The operator must press 1 to accept the callback before the client is rung.",
    )
    operator_ring_seconds: int = Field(
        default=20, ge=1, le=600, description="How long an operator is rung."
    )
    client_ring_seconds: int = Field(
        default=30, ge=1, le=600, description="How long the client is rung."
    )
    min_talk_seconds: int = Field(
        default=5,
        ge=0,
        description="A client call shorter than this counts as no answer (retried).",
    )
    client_confirm: bool = Field(
        default=False,
        description="The client must press 1, so an answering machine does not count as success.",
    )
    operator_confirm_timeout_seconds: int = Field(
        default=5,
        ge=1,
        le=60,
        description="Seconds the operator has to press a key once the prompts ended (a key "
        "counts from the answer on).",
    )
    announce: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./-]+(&[A-Za-z0-9_./-]+)*$",
        description="The whisper the operator hears on answering ('&'-joined sounds; default "
        "callbackd/callback-request). Keys count from its first moment.",
    )
    operator_prompt: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./-]+(&[A-Za-z0-9_./-]+)*$",
        description="Sound(s) asking the operator for the key, after the whisper (and number); "
        "default callbackd/press-1-or-0-for-number with announce_number on_request, "
        "callbackd/press-1-to-connect otherwise.",
    )
    client_prompt: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_./-]+(&[A-Za-z0-9_./-]+)*$",
        description="Sound file(s) asking the client to press 1 (with client_confirm).",
    )
    dial_template: str = Field(
        default="Local/{number}@from-callbackd",
        description="Asterisk dial string for the client; {number} is the number in "
        "dial_number_format. The default goes through the shipped [from-callbackd] to the "
        "outbound route set in [globals] (CALLBACKD_OUTBOUND_CONTEXT or CALLBACKD_TRUNK).",
    )
    dial_number_format: DialNumberFormat = Field(
        default="e164",
        description="How {number} (and the dialled number) is written: e164 (digits without "
        "'+', 79161234567) or national (as a phone in phone.default_region dials it: "
        "89161234567 in RU, international numbers with the region's prefix).",
    )
    caller_id: str | None = Field(
        default=None,
        description='Caller ID the client sees, "Name" <number> or a bare number, e.g. '
        '"Shop" <+74951234567>; never the client\'s own. Required when dial_template reaches '
        "a trunk (not Local/, or Local/...@from-callbackd); unset elsewhere: the route's own.",
    )
    interleave_by_join_time: bool = Field(
        default=False,
        description="Live callers come first unless this is on: then a callback whose caller "
        "first joined the queue before every caller waiting now takes the next free operator.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")
    window: CallingWindow = Field(default_factory=CallingWindow, description="Calling hours.")
    sms: CampaignSms | None = Field(
        default=None, description="SMS to the caller (template, language, when)."
    )
    client_first: ClientFirstSettings = Field(
        default_factory=ClientFirstSettings, description="Client-first mode (mode client_first)."
    )
    crm: CrmTaskSettings = Field(
        default_factory=CrmTaskSettings, description="CRM-task mode (mode crm_task)."
    )

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if value and not _QUEUE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid Asterisk queue name")
        return value

    @field_validator("language")
    @classmethod
    def _language_tag(cls, value: str) -> str:
        if not _LANGUAGE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an Asterisk language: 2-3 lowercase letters, optionally "
                "'_' and a region (en, ru, pt_BR)"
            )
        return value

    @field_validator("dial_template")
    @classmethod
    def _template_has_one_number(cls, value: str) -> str:
        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} has unbalanced braces: {exc}") from exc
        fields = [field for _, field, _, _ in parts if field is not None]
        if fields != ["number"] or any(
            spec or conversion for _, field, spec, conversion in parts if field is not None
        ):
            raise ValueError(
                f"{value!r} must contain {{number}} exactly once and no other {{...}} field"
            )
        if any("{" in literal or "}" in literal for literal, _, _, _ in parts):
            raise ValueError(f"{value!r} must not contain literal braces")
        if "/" not in value.split("{number}", 1)[0]:
            raise ValueError(f"{value!r} must start with a channel technology, e.g. PJSIP/")
        if not re.fullmatch(r"[A-Za-z0-9/@._:{}+-]+", value):
            raise ValueError(
                f"{value!r} may hold only letters, digits and / @ . _ : + - around {{number}} "
                "(a ',' or '&' would change what Dial() does)"
            )
        return value

    def dial_string(self, number: str) -> str:
        """The Asterisk dial string for one client number."""
        return self.dial_template.replace("{number}", number)

    @field_validator("caller_id")
    @classmethod
    def _caller_id_is_presentable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_caller_id(value)
        return value

    @property
    def presented_caller_id(self) -> CallerId | None:
        """The caller ID clients see, parsed (None: the route's own)."""
        return parse_caller_id(self.caller_id) if self.caller_id is not None else None

    @property
    def dial_template_reaches_a_trunk(self) -> bool:
        """Whether {number} leaves the PBX: a non-Local technology, or the shipped outbound
        context (which hands it to the site's trunk or outbound routes)."""
        technology, _, rest = self.dial_template.partition("/")
        if technology.lower() != "local":
            return True
        context = rest.partition("@")[2].partition("/")[0]
        return context == dialplan_contract.OUTBOUND_CONTEXT

    @model_validator(mode="after")
    def _trunk_calls_present_a_caller_id(self) -> Campaign:
        if self.caller_id is None and self.dial_template_reaches_a_trunk:
            raise _KeyedValueError(
                ["caller_id"],
                f"required because dial_template {self.dial_template!r} reaches a trunk: set "
                "the number clients see, e.g. caller_id = '\"Shop\" <+74951234567>' "
                "(without it clients would see no number, or their own, and carriers reject "
                "or flag such calls)",
            )
        return self

    @model_validator(mode="after")
    def _client_first_queue_is_dialplan_safe(self) -> Campaign:
        # The shipped callbackd-client-first context accepts only these characters (an
        # empty queue becomes the campaign's name, which always passes).
        safe = re.fullmatch(r"[A-Za-z0-9_.-]{1,79}", self.queue)
        if self.mode == "client_first" and self.queue and not safe:
            raise _KeyedValueError(
                ["queue"],
                f"{self.queue!r}: a client_first campaign's queue may hold only letters, "
                "digits, '_', '.' and '-'",
            )
        return self


# --------------------------------------------------------------------------- HTTP API

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
TokenScope = Literal["read", "write"]


class HttpToken(_Model):
    """One bearer token of the HTTP API, stored as its SHA-256 (``callbackd hash-token``)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Who holds the token (shown in logs and scopes idempotency keys).",
    )
    sha256: str = Field(
        description="Hex SHA-256 of the token, as printed by `callbackd hash-token`; the token "
        "itself is never written into the configuration."
    )
    scopes: tuple[TokenScope, ...] = Field(
        default=("read",),
        min_length=1,
        description="read: list, show, health, metrics; write: create, cancel, reschedule, "
        "call now, assign, customers.",
    )

    @field_validator("sha256", mode="before")
    @classmethod
    def _is_sha256_hex(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if not _SHA256_HEX.fullmatch(value):
                raise ValueError("must be 64 hex digits (the output of `callbackd hash-token`)")
        return value


class HttpSettings(_Model):
    """The HTTP API (CRM side), served inside the daemon."""

    enabled: bool = Field(default=False, description="Serve the HTTP API (off unless switched on).")
    listen_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the API binds to; keep it on loopback or a private network.",
    )
    listen_port: int = Field(default=8580, ge=1, le=65535, description="API TCP port.")
    max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest accepted request body in bytes; larger bodies get 413.",
    )
    tokens: tuple[HttpToken, ...] = Field(
        default=(),
        description="Bearer tokens ([[http.tokens]] tables: name, sha256, scopes). "
        "Without any, every request but /openapi.json is refused with 401.",
    )
    idempotency_retention_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="How long an Idempotency-Key keeps answering with its first result.",
    )

    @field_validator("tokens")
    @classmethod
    def _unique_token_names(cls, value: tuple[HttpToken, ...]) -> tuple[HttpToken, ...]:
        seen: set[str] = set()
        for index, token in enumerate(value):
            if token.name in seen:
                raise _KeyedValueError([index, "name"], f"duplicate token name {token.name!r}")
            seen.add(token.name)
        return value


# --------------------------------------------------------------------------- categories


class CategoryRule(_Model):
    """What a customer category (customers.category) means: set once per category instead
    of on every number. Unset keys leave the customer's own value (or the default). A
    customer's own non-default value wins over the category's: a priority other than 0,
    skip_queue = true."""

    priority: int | None = Field(
        default=None,
        ge=0,
        le=999,
        description="Priority of the category's customers when their own is 0: added to "
        "their callback requests' priority and their QUEUE_PRIO when they call in.",
    )
    skip_queue: bool | None = Field(
        default=None,
        description="true: the category's customers ring the VIP target / sticky operator "
        "first, then join the queue at the top (a customer's own skip_queue = true counts too).",
    )
    sticky_ring_seconds: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="Seconds the sticky operator (or VIP target) rings for the category's "
        "callers; unset: agi.sticky_ring_seconds.",
    )


# --------------------------------------------------------------------------- root


def _default_ami() -> tuple[AmiEndpoint, ...]:
    return (AmiEndpoint(),)


class Settings(BaseSettings):
    """Everything callbackd is configured with; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
    )

    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="Postgres connection."
    )
    ami: tuple[AmiEndpoint, ...] = Field(
        default_factory=_default_ami,
        description="AMI connections, one per PBX ([[ami]] tables). The first is the default.",
    )
    agi: AgiSettings = Field(default_factory=AgiSettings, description="FastAGI server.")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    phone: PhoneSettings = Field(default_factory=PhoneSettings, description="Phone numbers.")
    capture: CaptureSettings = Field(
        default_factory=CaptureSettings, description="Abandon capture."
    )
    daemon: DaemonSettings = Field(default_factory=DaemonSettings, description="The process.")
    campaigns: dict[str, Campaign] = Field(
        default_factory=dict, description="Queues whose abandoned callers are called back."
    )
    categories: dict[str, CategoryRule] = Field(
        default_factory=dict,
        description="Per-category rules ([categories.<name>]) for customers of that category.",
    )

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        for name in value:
            if not _CATEGORY_NAME.fullmatch(name):
                raise _KeyedValueError(
                    [name], "category names use 1-32 letters, digits, '-' or '_' (as customers' do)"
                )
        return value

    outbox: OutboxSettings = Field(
        default_factory=OutboxSettings, description="Webhook and SMS delivery retries."
    )
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings, description="Signed webhooks to CRMs."
    )
    sms: SmsSettings = Field(default_factory=SmsSettings, description="SMS to callers.")

    @field_validator("sms")
    @classmethod
    def _sms_pbx_exists(cls, value: SmsSettings, info: ValidationInfo) -> SmsSettings:
        endpoints: tuple[AmiEndpoint, ...] | None = info.data.get("ami")
        if value.ami is None or not endpoints:
            return value
        names = [endpoint.name for endpoint in endpoints]
        pbx = value.ami.pbx or names[0]
        if pbx not in names:
            raise _KeyedValueError(
                ["ami", "pbx"], f"no AMI endpoint named {pbx!r} (known: {', '.join(names)})"
            )
        return value.model_copy(update={"ami": value.ami.model_copy(update={"pbx": pbx})})

    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP API.")

    @field_validator("ami")
    @classmethod
    def _unique_ami_names(cls, value: tuple[AmiEndpoint, ...]) -> tuple[AmiEndpoint, ...]:
        if not value:
            raise ValueError("at least one AMI endpoint is required")
        seen: set[str] = set()
        for index, endpoint in enumerate(value):
            if endpoint.name in seen:
                raise _KeyedValueError(
                    [index, "name"],
                    f"duplicate AMI endpoint name {endpoint.name!r} (names must be unique)",
                )
            seen.add(endpoint.name)
        return value

    @field_validator("campaigns")
    @classmethod
    def _resolve_campaigns(
        cls, value: dict[str, Campaign], info: ValidationInfo
    ) -> dict[str, Campaign]:
        """Fill the queue/pbx defaults and check cross references.

        Runs here (not in Campaign) because it needs the campaign's name and the AMI list.
        """
        endpoints: tuple[AmiEndpoint, ...] | None = info.data.get("ami")
        resolved: dict[str, Campaign] = {}
        claimed: dict[tuple[str, str], str] = {}
        for name, campaign in value.items():
            if not _CAMPAIGN_NAME.fullmatch(name):
                raise _KeyedValueError(
                    [name],
                    "campaign names use 1-64 lowercase letters, digits, '-' or '_' "
                    "(set `queue` for a mixed-case Asterisk queue name)",
                )
            if endpoints is None:  # the AMI list itself is invalid; that error is reported
                resolved[name] = campaign
                continue
            names = [endpoint.name for endpoint in endpoints]
            pbx = campaign.pbx or names[0]
            if pbx not in names:
                raise _KeyedValueError(
                    [name, "pbx"],
                    f"no AMI endpoint named {pbx!r} (known: {', '.join(names)})",
                )
            queue = campaign.queue or name
            if (pbx, queue) in claimed:
                raise _KeyedValueError(
                    [name, "queue"],
                    f"queue {queue!r} on {pbx!r} is already handled by campaign "
                    f"{claimed[pbx, queue]!r}",
                )
            claimed[pbx, queue] = name
            resolved[name] = campaign.model_copy(update={"queue": queue, "pbx": pbx})
        return resolved

    def ami_endpoint(self, name: str) -> AmiEndpoint:
        """The AMI endpoint called *name* (KeyError if there is none)."""
        for endpoint in self.ami:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    def secret_values(self) -> list[str]:
        """Every secret value configured, for log scrubbing (``configure_logging(secrets=...)``)."""
        values = [endpoint.secret.get_secret_value() for endpoint in self.ami]
        values.append(self.database.dsn.get_secret_value())
        values.extend(_dsn_passwords(self.database.dsn.get_secret_value()))
        values.extend(endpoint.secret.get_secret_value() for endpoint in self.webhooks.endpoints)
        gateway = self.sms.http
        if gateway is not None:
            values.extend(v.get_secret_value() for v in gateway.secret_headers.values())
            values.extend(
                v.get_secret_value() for v in (gateway.bearer_token, gateway.basic_password) if v
            )
        return [value for value in values if value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword overrides > environment > TOML file (> defaults, added by pydantic-settings).

        The file and environment come from :func:`load_settings` for the duration of one
        construction; plain ``Settings()`` reads only ``os.environ``.
        """
        request = _SOURCE_REQUEST.get() or _SourceRequest(toml_file=None, environ=os.environ)
        toml_data: dict[str, Any] = {}
        sources: list[PydanticBaseSettingsSource] = []
        if request.toml_file is not None:
            toml_source = TomlConfigSettingsSource(settings_cls, toml_file=request.toml_file)
            toml_data = toml_source.toml_data
            sources.append(toml_source)
        env_source = _EnvSource(settings_cls, request.environ, base_ami=toml_data.get("ami"))
        return (init_settings, env_source, *sources)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _SourceRequest:
    toml_file: Path | None
    environ: Mapping[str, str]


# Per-call parameters for settings_customise_sources, which pydantic-settings calls as a
# classmethod with no way to pass arguments.  A ContextVar (set and reset around a single
# construction) keeps concurrent loads independent; it is not a mutable module global.
_SOURCE_REQUEST: ContextVar[_SourceRequest | None] = ContextVar(
    "callbackd_settings_source_request", default=None
)


class _EnvSource(EnvSettingsSource):
    """``CALLBACKD_*`` variables from an explicit mapping, plus per-endpoint AMI overrides.

    ``CALLBACKD_AMI__<name or index>__<field>`` patches that endpoint of the file's ``[[ami]]``
    list (or of the default list) instead of replacing the list, so the AMI secret can live in
    the environment (systemd ``EnvironmentFile``) while everything else stays in the file.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        *,
        base_ami: object,
    ) -> None:
        self._environ = environ
        self._base_ami = base_ami
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Same semantics as pydantic-settings' own loader (case-insensitive), but from the
        # mapping we were given rather than os.environ.
        return {key.lower(): value for key, value in self._environ.items()}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        overrides = data.get("ami")
        if isinstance(overrides, dict):
            data["ami"] = _merge_ami_overrides(self._base_ami, overrides)
        return data


def _merge_ami_overrides(base: object, overrides: Mapping[str, Any]) -> list[Any]:
    if isinstance(base, list):
        merged: list[Any] = [dict(item) if isinstance(item, Mapping) else item for item in base]
    else:
        merged = [endpoint.model_dump() for endpoint in _default_ami()]
    for key, fields in overrides.items():
        if not isinstance(fields, Mapping):
            merged.append(fields)  # validation will report it under ami.<n>
            continue
        target: dict[str, Any] | None = None
        if key.isdigit() and int(key) < len(merged) and isinstance(merged[int(key)], dict):
            target = merged[int(key)]
        else:
            for item in merged:
                if isinstance(item, dict) and item.get("name", "pbx") == key:
                    target = item
                    break
        if target is None:
            merged.append({"name": key, **fields} if not key.isdigit() else dict(fields))
        else:
            target.update(fields)
    return merged


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` is one line an admin can act on."""

    def __init__(
        self,
        path: Path | None,
        key: str,
        reason: str,
        problems: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        self.problems: list[tuple[str, str]] = list(problems) if problems else [(key, reason)]
        super().__init__(f"{path if path is not None else '<no config file>'}: {key}: {reason}")


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def _supplied_by(data: Mapping[str, Any], loc: Sequence[str | int]) -> bool:
    """Whether *data* (one source's raw input) supplied the value at *loc*.

    Sources are deep-merged only through tables; a list or scalar replaces the lower-priority
    value wholesale, so reaching one while walking *loc* means this source supplied it.
    """
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _env_var_for(
    loc: Sequence[str | int], environ: Mapping[str, str], ami_names: Sequence[str]
) -> str | None:
    """The environment variable that supplied the value at *loc*, if one did.

    A variable holding JSON for a parent key is named with the dotted key inside it,
    e.g. ``CALLBACKD_AMI (ami.0.port)``.
    """
    by_lower = {key.lower(): key for key in environ}
    parts = [str(part) for part in loc]
    for length in range(len(parts), 0, -1):
        candidates = [parts[:length]]
        if length > 1 and parts[0] == "ami" and isinstance(loc[1], int) and loc[1] < len(ami_names):
            candidates.append(["ami", ami_names[loc[1]], *parts[2:length]])
        for candidate in candidates:
            name = (ENV_PREFIX + ENV_NESTED_DELIMITER.join(candidate)).lower()
            if name in by_lower:
                inner = "" if length == len(parts) else f" ({_dotted(loc)})"
                return by_lower[name] + inner
    return None


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting (check the spelling; see callbackd.example.toml)"
    if error["type"] == "missing":
        return "required setting is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _problems_from(
    exc: ValidationError,
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> list[tuple[str, str]]:
    ami_names = [str(item.get("name", "pbx")) for item in _merged_ami_input(path, environ)]
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        loc: list[str | int] = [part for part in error["loc"] if part != "[key]"]
        ctx_error = error.get("ctx", {}).get("error")
        if isinstance(ctx_error, _KeyedValueError):
            loc.extend(ctx_error.subkey)
        from_overrides = bool(loc) and _supplied_by(overrides, loc)
        env_var = None if from_overrides else _env_var_for(loc, environ, ami_names)
        key = env_var or _dotted(loc) or "<root>"
        problems.append((key, _reason(error)))
    return problems


def _merged_ami_input(path: Path | None, environ: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The AMI list as file + environment produced it (only used to name variables in errors)."""
    try:
        base = tomllib.loads(path.read_text(encoding="utf-8")).get("ami") if path else None
        data = _EnvSource(Settings, environ, base_ami=base)()
    except (OSError, ValueError):  # TOMLDecodeError and SettingsError are ValueErrors
        return []
    ami = data.get("ami")
    return [item for item in ami if isinstance(item, Mapping)] if isinstance(ami, list) else []


def _settings_error_key(exc: SettingsError, environ: Mapping[str, str]) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return "<environment>"
    return _env_var_for([match.group(1)], environ, []) or match.group(1)


# --------------------------------------------------------------------------- loading


def load_settings(
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate the configuration, or raise :class:`ConfigError`.

    *config_path* ``None`` means :data:`DEFAULT_CONFIG_PATH` when it exists (defaults and
    environment only otherwise); an explicit path must exist.  *env* replaces ``os.environ``
    (tests, the demo).  Keyword *overrides* are top-level sections and beat everything else.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    path: Path | None
    if config_path is None:
        path = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
    else:
        path = Path(config_path)
        if not path.exists():
            raise ConfigError(path, "<file>", "config file does not exist")
        if not path.is_file():
            raise ConfigError(path, "<file>", "config path is not a regular file")

    token = _SOURCE_REQUEST.set(_SourceRequest(toml_file=path, environ=environ))
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<file>", f"invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "<file>", f"not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise ConfigError(path, "<file>", f"cannot read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        problems = _problems_from(exc, path, environ, overrides)
        key, reason = problems[0]
        raise ConfigError(path, key, reason, problems) from None
    except SettingsError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise ConfigError(
            path, _settings_error_key(exc, environ), f"cannot parse value{cause}"
        ) from None
    finally:
        _SOURCE_REQUEST.reset(token)


# --------------------------------------------------------------------------- rendering

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|sslpassword)=)[^&#]*", re.I)
_KEYWORD_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``; host, port, user and database stay.

    Handles URL userinfo (``user:pw@``), ``?password=`` query parameters and libpq
    ``password=...`` keyword strings.  Never raises: logging calls it on arbitrary text.
    """
    if not _URL_SCHEME.match(dsn):
        return _KEYWORD_PASSWORD.sub(lambda m: m.group("key") + REDACTED, dsn)
    match = _URL_USERINFO.match(dsn)
    if match is not None:
        user, sep, _password = match.group("userinfo").partition(":")
        if sep:
            dsn = f"{match.group('scheme')}{user}:{REDACTED}@{dsn[match.end() :]}"
    return _QUERY_PASSWORD.sub(lambda m: m.group("key") + REDACTED, dsn)


def _dsn_passwords(dsn: str) -> list[str]:
    match = _URL_USERINFO.match(dsn)
    if match is None:
        return []
    _user, sep, password = match.group("userinfo").partition(":")
    return [password] if sep and password else []


def _to_toml(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): _to_toml(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_toml(item) for item in value if item is not None]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    return value


def render_effective_config(settings: Settings) -> str:
    """The configuration actually in effect, as TOML, with every secret redacted.

    Unset optional values are omitted (TOML has no null).  The DSN keeps everything but its
    password so an admin can still see which database is used.
    """
    data = _to_toml(settings.model_dump())
    data["database"]["dsn"] = redact_dsn(settings.database.dsn.get_secret_value())
    header = "# Effective callbackd configuration (secrets redacted).\n"
    return header + tomli_w.dumps(data)
