"""The typed AGI call every route handler talks to, over any transport.

A transport (FastAGI socket, classic stdin/stdout) only implements :class:`AgiChannel`:
the environment and "send one command line, return the reply lines". :class:`AgiCall`
builds the commands, bounds each with a timeout and turns failures into exceptions, so a
route never carries on after the caller hung up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Protocol

from callbackd.agi.protocol import AgiError, AgiHangup, AgiReply, check_argument, parse_reply

__all__ = ["AgiCall", "AgiChannel"]

_VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_SOUND = re.compile(r"^[A-Za-z0-9_/.-]{1,255}$")
_DIGITS = re.compile(r"^[0-9*#]{0,64}$")
_ESCAPE = re.compile(r"^[0-9*#]{0,12}$")
_FORMAT = re.compile(r"^[A-Za-z0-9 '/_.-]{1,64}$")
_ZONE = re.compile(r"^[A-Za-z0-9_/+-]{1,64}$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_/@:.+-]{0,128}$")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")

ANY_KEY: Final = "0123456789*#"
"""Escape digits that let any key interrupt a prompt."""

DEFAULT_COMMAND_TIMEOUT: Final = 5.0
PROMPT_ALLOWANCE: Final = 30.0
"""Seconds a prompt may play before a command that plays one is considered stuck."""


class AgiChannel(Protocol):
    """What a transport gives :class:`AgiCall`."""

    @property
    def env(self) -> Mapping[str, str]:
        """The ``agi_*`` environment Asterisk sent first."""

    @property
    def hung_up(self) -> bool:
        """Whether Asterisk told us the channel hung up (HANGUP line, SIGHUP)."""

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        """Send one command line; return its reply line and any continuation lines.

        Raises AgiTimeout when no reply came within *timeout* seconds and AgiHangup when
        the session is gone.
        """


class AgiCall:
    """One AGI session: typed commands that raise AgiHangup / AgiError instead of returning
    error codes."""

    def __init__(self, channel: AgiChannel, *, command_timeout: float = DEFAULT_COMMAND_TIMEOUT):
        self.channel = channel
        self.command_timeout = command_timeout

    # ----------------------------------------------------------------- facts

    @property
    def env(self) -> Mapping[str, str]:
        return self.channel.env

    def argument(self, index: int) -> str:
        """``agi_arg_<index>`` (1-based), "" when absent."""
        return self.channel.env.get(f"agi_arg_{index}", "")

    @property
    def caller_number(self) -> str:
        return self.channel.env.get("agi_callerid", "")

    @property
    def uniqueid(self) -> str:
        return self.channel.env.get("agi_uniqueid", "")

    # ----------------------------------------------------------------- commands

    async def command(self, line: str, *, timeout: float | None = None) -> AgiReply:
        """Send one raw command; the reply, or AgiHangup / AgiError / AgiTimeout."""
        if self.channel.hung_up:
            raise AgiHangup("the channel hung up")
        reply_line, usage = await self.channel.exchange(
            line, self.command_timeout if timeout is None else timeout
        )
        reply = parse_reply(reply_line, usage)
        if self.channel.hung_up and reply.number < 0:
            raise AgiHangup("the channel hung up during the command")
        return reply

    async def answer(self) -> None:
        reply = await self.command("ANSWER")
        self._check(reply, "ANSWER")

    async def set_variable(self, name: str, value: str | int) -> None:
        if not _VARIABLE_NAME.match(name):
            raise ValueError(f"bad channel variable name {name!r}")
        text = check_argument(str(value))
        reply = await self.command(f'SET VARIABLE {name} "{text}"')
        if reply.number != 1:
            raise AgiError(f"SET VARIABLE {name} failed: {reply.raw}")

    async def set_language(self, language: str) -> None:
        """``CHANNEL(language)``: the sounds directory prompts, numbers and digits come from."""
        if not _LANGUAGE.fullmatch(language):
            raise ValueError(f"bad channel language {language[:16]!r}")
        reply = await self.command(f'SET VARIABLE CHANNEL(language) "{language}"')
        if reply.number != 1:
            raise AgiError(f"SET VARIABLE CHANNEL(language) failed: {reply.raw}")

    async def set_variables(self, values: Mapping[str, str | int]) -> None:
        """Several variables in ONE round trip (``EXEC MSet``).

        Values are restricted to ``A-Z a-z 0-9 _ / @ : . + -`` (a comma would start the
        next assignment); anything else raises ValueError before a byte is sent.
        """
        assignments = []
        for name, value in values.items():
            text = str(value)
            if not _VARIABLE_NAME.match(name):
                raise ValueError(f"bad channel variable name {name!r}")
            if not _PLAIN_VALUE.match(text):
                raise ValueError(f"{name}: value not settable in one MSet: {text[:40]!r}")
            assignments.append(f"{name}={text}")
        reply = await self.command(f'EXEC MSet "{",".join(assignments)}"')
        if reply.number != 0:
            self._check(reply, "EXEC MSet")
            raise AgiError(f"EXEC MSet failed: {reply.raw}")

    async def get_variable(self, name: str) -> str | None:
        """A channel variable's value, None when it is not set."""
        if not _VARIABLE_NAME.match(name):
            raise ValueError(f"bad channel variable name {name!r}")
        reply = await self.command(f"GET VARIABLE {name}")
        return reply.data if reply.number == 1 else None

    async def evaluate(self, expression: str) -> str | None:
        """``GET FULL VARIABLE``: an expression with functions, evaluated on the channel."""
        reply = await self.command(f'GET FULL VARIABLE "{check_argument(expression)}"')
        return reply.data if reply.number == 1 else None

    async def stream_file(self, sound: str, escape_digits: str = "") -> str:
        """Play *sound*; the key that interrupted it, or ""."""
        self._sound(sound)
        self._escape(escape_digits)
        reply = await self.command(
            f'STREAM FILE {sound} "{escape_digits}"', timeout=PROMPT_ALLOWANCE
        )
        self._check(reply, f"STREAM FILE {sound}")
        return chr(reply.number) if reply.number > 0 else ""

    async def say_digits(self, digits: str, escape_digits: str = "") -> str:
        if not _DIGITS.match(digits):
            raise ValueError("SAY DIGITS takes digits only")
        self._escape(escape_digits)
        reply = await self.command(
            f'SAY DIGITS {digits} "{escape_digits}"', timeout=PROMPT_ALLOWANCE
        )
        self._check(reply, "SAY DIGITS")
        return chr(reply.number) if reply.number > 0 else ""

    async def say_number(self, number: int, escape_digits: str = "") -> str:
        """Say a whole number in the channel's language; the key that interrupted it, or ""."""
        self._escape(escape_digits)
        reply = await self.command(
            f'SAY NUMBER {int(number)} "{escape_digits}"', timeout=PROMPT_ALLOWANCE
        )
        self._check(reply, "SAY NUMBER")
        return chr(reply.number) if reply.number > 0 else ""

    async def say_datetime(self, epoch: int, fmt: str, zone: str) -> None:
        if not _FORMAT.match(fmt) or not _ZONE.match(zone):
            raise ValueError("bad SAY DATETIME format or zone")
        reply = await self.command(
            f'SAY DATETIME {int(epoch)} "" "{fmt}" {zone}', timeout=PROMPT_ALLOWANCE
        )
        self._check(reply, "SAY DATETIME")

    async def get_data(self, prompt: str, *, timeout_ms: int, max_digits: int) -> str:
        """Play *prompt* and collect up to *max_digits* keys (``#`` ends early).

        Returns the keys ("" when none came in time).
        """
        self._sound(prompt)
        if not 0 < timeout_ms <= 60_000 or not 0 < max_digits <= 64:
            raise ValueError("GET DATA timeout 1-60000 ms and 1-64 digits")
        reply = await self.command(
            f"GET DATA {prompt} {timeout_ms} {max_digits}",
            timeout=PROMPT_ALLOWANCE + timeout_ms / 1000,
        )
        if reply.result == "-1" or reply.data == "hangup":
            raise AgiHangup("the channel hung up while keys were read")
        if not _DIGITS.match(reply.result):
            raise AgiError(f"GET DATA returned {reply.raw!r}")
        return reply.result

    # ----------------------------------------------------------------- internals

    def _check(self, reply: AgiReply, what: str) -> None:
        if reply.number < 0:
            if self.channel.hung_up:
                raise AgiHangup(f"{what}: the channel hung up")
            raise AgiError(f"{what} failed: {reply.raw}")

    @staticmethod
    def _sound(sound: str) -> None:
        if not _SOUND.match(sound):
            raise ValueError(f"bad sound name {sound!r}")

    @staticmethod
    def _escape(digits: str) -> None:
        if not _ESCAPE.match(digits):
            raise ValueError(f"bad escape digits {digits!r}")
