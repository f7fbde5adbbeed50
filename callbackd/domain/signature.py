"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"``.

Every webhook request carries::

    Callbackd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    Callbackd-Event-Id: <uuid, the same on every retry of one event>
    Callbackd-Event: <topic, e.g. callback.completed>

A receiver recomputes the HMAC over the raw request body (bytes exactly as received, before
any JSON parsing), compares it in constant time, and refuses timestamps older than a few
minutes (replay). :func:`verify_signature` does all of that; this module depends on the
standard library only, so a receiver written in Python can copy or import it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Callbackd-Signature"
EVENT_ID_HEADER = "Callbackd-Event-Id"
EVENT_HEADER = "Callbackd-Event"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Callbackd-Signature`` header value for *body* at *timestamp* (default: now)."""
    moment = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={moment},{SCHEME}={_mac(secret, moment, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a ``Callbackd-Signature`` header against the raw *body*; return its timestamp.

    Raises :class:`SignatureError` when the header is missing or malformed, when its
    timestamp is further than *tolerance_seconds* from *now*, or when no ``v1`` value
    matches. Several ``v1`` values are accepted (a sender rotating its secret may sign twice).
    """
    if not header:
        raise SignatureError("no signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if not value.isdigit():
                raise SignatureError("malformed timestamp")
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header lacks t= or v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("timestamp outside the tolerance (replayed or clock skew)")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
    return timestamp
