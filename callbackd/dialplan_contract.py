"""Names shared by callbackd's code and its shipped dialplan (dialplan/callbackd.conf).

The dialplan is text that site admins include unchanged; this module is the one place the
Python side spells the same contexts and channel variables. tests/test_dialplan_contract.py
fails when the two drift apart.
"""

from __future__ import annotations

from typing import Final

SHIPPED_DIALPLAN_FILE: Final = "callbackd.conf"
"""The file sites ``#include`` from extensions.conf."""

QUEUE_CONTEXT: Final = "callbackd-queue"
"""Gosub routine ``Gosub(callbackd-queue,s,1(<queue>[,<Queue() options>]))``.

Sets safe values for every ``CALLBACKD_*`` variable, runs ``Queue()`` and returns when the
caller leaves the queue without hanging up.
"""

QUEUE_ENTRY_EXTENSION: Final = "s"
"""Extension of :data:`QUEUE_CONTEXT` the Gosub enters (priority 1)."""

VAR_PRIORITY: Final = "CALLBACKD_PRIORITY"
"""Callback priority, 0-999, higher is called back sooner.

The site may set it before the Gosub; the routine turns anything that is not 1-3 digits
into :data:`DEFAULT_PRIORITY`.
"""

DEFAULT_PRIORITY: Final = 0
"""Value of :data:`VAR_PRIORITY` when the site set none (or an invalid one)."""

MAX_PRIORITY: Final = 999
"""Largest value :data:`VAR_PRIORITY` can have after the routine checked it."""

VAR_QUEUE: Final = "CALLBACKD_QUEUE"
"""The queue the routine sent the caller to (its first argument)."""

PROBE_CONTEXT: Final = "callbackd-probe"
"""Originated by callbackd at connect time (``Local/s@callbackd-probe``): it answers, sends
``UserEvent(CallbackdProbe)`` with the token and hangs up, proving the AMI account receives
call-class (OriginateResponse) and user-class (UserEvent) events."""

PROBE_EVENT: Final = "CallbackdProbe"
"""UserEvent name the probe context sends."""

VAR_PROBE_TOKEN: Final = "CALLBACKD_PROBE_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Hex token callbackd gives the probe call; echoed as the UserEvent's ``Token`` header."""

CONTEXTS: Final = frozenset({QUEUE_CONTEXT, PROBE_CONTEXT})
"""Every context the shipped dialplan defines."""

VARIABLES: Final = frozenset({VAR_PRIORITY, VAR_QUEUE, VAR_PROBE_TOKEN})
"""Every ``CALLBACKD_*`` channel variable the shipped dialplan sets or reads."""

MANAGER_CHANNELVARS: Final = ",".join(sorted({VAR_PRIORITY, VAR_QUEUE}))
"""Value for manager.conf ``channelvars`` so AMI events carry the variables."""
