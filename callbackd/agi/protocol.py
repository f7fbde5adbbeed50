"""The AGI wire format, shared by both transports: the environment block and replies.

Asterisk starts every AGI session with ``agi_<name>: <value>`` lines ended by a blank
line, then answers each command with one line ``<code> result=<n> [(<data>)] [k=v]``; a
``520-`` reply spans lines up to ``520 End of proper usage.``; a FastAGI session may
also receive a bare ``HANGUP`` line when the channel hangs up (AGISIGHUP).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AgiError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiReply",
    "AgiTimeout",
    "check_argument",
    "parse_environment",
    "parse_reply",
]

HANGUP_LINE: Final = "HANGUP"
USAGE_CODE: Final = 520
DEAD_CHANNEL_CODE: Final = 511

_REPLY = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$")
_RESULT = re.compile(r"^result=(?P<result>[^ ]*)(?: \((?P<data>[^)]*)\))?(?P<extra>.*)$")
_ENV_KEY = re.compile(r"^agi_[a-z0-9_]{1,64}$")
_FORBIDDEN_IN_ARGUMENT: Final = frozenset('"\\\r\n\0')


class AgiError(Exception):
    """A command failed: Asterisk refused it, or the channel cannot do it."""


class AgiHangup(AgiError):
    """The channel hung up; nothing more can be done on it."""


class AgiTimeout(AgiError):
    """Asterisk did not answer a command (or send its environment) in time."""


class AgiProtocolError(AgiError):
    """Asterisk (or whoever connected) sent something that is not AGI."""


@dataclass(frozen=True)
class AgiReply:
    """One parsed ``200 result=...`` reply."""

    code: int
    result: str
    """As Asterisk sent it: a number, or the digits GET DATA collected (may be empty)."""
    data: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def number(self) -> int:
        """The result as an integer (-1 for anything that is not one)."""
        try:
            return int(self.result)
        except ValueError:
            return -1


def parse_environment(lines: list[str]) -> dict[str, str]:
    """``agi_*`` lines (without the blank end line) -> a mapping; anything else raises."""
    env: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not _ENV_KEY.match(key):
            raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
        env[key] = value.strip()
    if "agi_channel" not in env:
        raise AgiProtocolError("AGI environment without agi_channel")
    return env


def parse_reply(line: str, usage: list[str] | None = None) -> AgiReply:
    """One reply line -> AgiReply; errors raise (a dead channel raises AgiHangup).

    *usage* are the continuation lines of a ``520-`` reply (the caller reads them).
    """
    match = _REPLY.match(line)
    if match is None:
        raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
    code = int(match["code"])
    rest = match["rest"]
    if code == DEAD_CHANNEL_CODE:
        raise AgiHangup(f"dead channel: {rest}")
    if code != 200:
        detail = " | ".join([rest, *(usage or [])])
        raise AgiError(f"AGI error {code}: {detail}")
    result = _RESULT.match(rest)
    if result is None:
        raise AgiProtocolError(f"200 reply without result: {line[:80]!r}")
    extra: dict[str, str] = {}
    for item in result["extra"].split():
        key, _, value = item.partition("=")
        extra[key] = value
    return AgiReply(
        code=code,
        result=result["result"],
        data=result["data"] or "",
        extra=extra,
        raw=line,
    )


def is_multiline_start(line: str) -> bool:
    """A ``520-`` line: more lines follow up to ``520 End of proper usage.``."""
    return line.startswith(f"{USAGE_CODE}-")


def check_argument(value: str) -> str:
    """A value we put inside double quotes on an AGI command line.

    AGI has no escaping Asterisk honours everywhere, so a quote, backslash, CR, LF or NUL
    could end the argument or the command: such a value is refused, never sent.
    """
    if any(char in _FORBIDDEN_IN_ARGUMENT for char in value):
        raise ValueError(f"AGI argument with a quote, backslash or line break: {value[:40]!r}")
    return value
