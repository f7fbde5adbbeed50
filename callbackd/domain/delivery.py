"""Pure decisions of the outbox: retry timing, which targets an event goes to, when an SMS
is due, and how templates are filled.

Nothing here touches the network or the database; callbackd/services/outbox.py applies
these decisions and stores their results.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

SmsWhen = Literal["abandon", "final_failure", "both"]

TOPICS: tuple[str, ...] = (
    "callback.created",
    "callback.attempted",
    "callback.completed",
    "callback.failed",
    "callback.cancelled",
    "callback.resolved_inbound",
    "callback.expired",
)

SMS_TEMPLATE_FIELDS = frozenset({"campaign", "queue"})
GATEWAY_FIELDS = frozenset({"number", "number_digits", "text", "language", "message_id"})


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter, and an age after which a message is given up.

    The n-th failed try waits ``initial * factor**(n-1)`` seconds, capped at ``maximum``, then
    shortened by up to ``jitter`` (a fraction) so that many messages failing together (a
    receiver's outage) do not all come back at the same moment.
    """

    initial_seconds: float = 5.0
    factor: float = 2.0
    maximum_seconds: float = 3600.0
    jitter: float = 0.25
    max_age_seconds: float = 86400.0

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.initial_seconds <= 0 or self.factor < 1 or self.maximum_seconds <= 0:
            raise ValueError("initial and maximum must be positive, factor at least 1")

    def delay(self, tries: int, rand: float) -> float:
        """Seconds to wait after the *tries*-th failed try; *rand* is uniform in [0, 1)."""
        if tries < 1:
            raise ValueError("tries counts the failed tries, from 1")
        exponent = min(tries - 1, 64)  # beyond this the cap applies anyway
        base = min(self.maximum_seconds, self.initial_seconds * self.factor**exponent)
        return base * (1 - self.jitter * rand)

    def after_failure(self, *, tries: int, age_seconds: float, rand: float) -> RetryDecision:
        """Retry after a delay, or give up when the message has been failing for too long."""
        if age_seconds >= self.max_age_seconds:
            return RetryDecision(give_up=True, delay_seconds=0.0)
        return RetryDecision(give_up=False, delay_seconds=self.delay(tries, rand))


@dataclass(frozen=True)
class RetryDecision:
    give_up: bool
    delay_seconds: float


def topic_matches(patterns: Iterable[str], topic: str) -> bool:
    """Whether an endpoint subscribed to *patterns* gets *topic*.

    No patterns means every topic; ``callback.*`` matches every topic under ``callback.``.
    """
    listed = tuple(patterns)
    if not listed:
        return True
    for pattern in listed:
        if pattern == "*" or pattern == topic:
            return True
        if pattern.endswith(".*") and topic.startswith(pattern[:-1]):
            return True
    return False


def sms_due(when: SmsWhen, topic: str, payload: Mapping[str, object]) -> bool:
    """Whether a campaign whose SMS policy is *when* texts the caller for this event.

    ``abandon``: a request created from a queue abandon (not one made by the API or the
    IVR, whose callers did not give up). ``final_failure``: the request ended without the
    caller being called back: failed for good, or expired.
    """
    on_abandon = topic == "callback.created" and payload.get("source") == "abandon"
    on_failure = topic in ("callback.failed", "callback.expired")
    if when == "abandon":
        return on_abandon
    if when == "final_failure":
        return on_failure
    return on_abandon or on_failure


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names of a template; ValueError if it is malformed or uses
    attribute/index access, conversions or format specs."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template: {exc}") from exc
    fields: list[str] = []
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"{{{field}}}: only plain {{name}} fields are allowed")
        fields.append(field)
    return fields


def check_template(template: str, allowed: frozenset[str]) -> None:
    """ValueError naming the first field of *template* that is not in *allowed*."""
    for field in template_fields(template):
        if field not in allowed:
            raise ValueError(f"unknown field {{{field}}} (allowed: {', '.join(sorted(allowed))})")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a template checked with :func:`check_template` (missing values become '')."""
    out: list[str] = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values.get(field, ""))
    return "".join(out)
