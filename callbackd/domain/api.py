"""Pure rules of the HTTP API and the management CLI: tokens, scopes, cursors, times.

Nothing here does I/O, so every decision the API makes about who may do what, which page
comes next and when a callback is due is unit-tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A request id we accept from a client (X-Request-Id) and echo back; anything else is replaced.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_PREFERRED_AHEAD = timedelta(days=366)


@dataclass(frozen=True)
class TokenRecord:
    """A configured token as the authoriser needs it (name, hash, scopes)."""

    name: str
    sha256: str
    scopes: frozenset[str]


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token: what the configuration stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if absent/malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def match_token(presented: str, tokens: Iterable[TokenRecord]) -> TokenRecord | None:
    """The configured token whose hash equals the presented token's, compared in constant time.

    Every configured hash is compared (no early exit), so timing tells nothing about which
    token, or how much of one, matched.
    """
    digest = hash_token(presented).encode("ascii")
    found: TokenRecord | None = None
    for record in tokens:
        if hmac.compare_digest(digest, record.sha256.encode("ascii")):
            found = record
    return found


def encode_cursor(position: Mapping[str, Any]) -> str:
    """An opaque page cursor (URL-safe base64 of compact JSON)."""
    raw = json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class CursorError(ValueError):
    """A cursor that this server did not hand out."""


def decode_cursor(cursor: str, *, key: str, kind: type) -> Any:
    """The value under *key* of a cursor made by :func:`encode_cursor`, checked to be *kind*."""
    if len(cursor) > 512 or not re.fullmatch(r"[A-Za-z0-9_-]*", cursor):
        raise CursorError("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise CursorError("malformed cursor") from exc
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise CursorError("malformed cursor")
    value = data[key]
    if kind is int and (isinstance(value, bool) or not 0 < value < 2**63):
        raise CursorError("malformed cursor")
    return value


def payload_fingerprint(payload: Any) -> str:
    """Same JSON payload (whatever the key order or spacing) -> same fingerprint."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class TimeError(ValueError):
    """A preferred time the API cannot use; the message says why."""


def resolve_preferred_time(when: datetime, timezone: str | None, *, now: datetime) -> datetime:
    """An aware moment for a preferred callback time.

    *when* carries its own UTC offset, or is a local time in the IANA *timezone* (then DST
    is applied as that zone has it on that date). A naive time without a zone, a time with
    both an offset and a zone, an unknown zone, or a time more than a year ahead is refused.
    """
    if timezone is not None:
        if when.tzinfo is not None:
            raise TimeError("give either a UTC offset in the time or a timezone, not both")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise TimeError(f"{timezone!r} is not a known IANA time zone") from exc
        when = when.replace(tzinfo=zone)
    elif when.tzinfo is None or when.utcoffset() is None:
        raise TimeError("the time needs a UTC offset (e.g. +03:00) or a timezone")
    try:
        ahead = when - now
    except OverflowError as exc:
        raise TimeError("the time is out of range") from exc
    if ahead > MAX_PREFERRED_AHEAD:
        raise TimeError("the time is more than a year ahead")
    if -ahead > MAX_PREFERRED_AHEAD:
        raise TimeError("the time is more than a year in the past")
    return when


def request_id_from(header: str | None, fallback: str) -> str:
    """The client's X-Request-Id if it is safe to log and echo, else *fallback*."""
    if header is not None and REQUEST_ID.fullmatch(header):
        return header
    return fallback
