"""Logging: one structlog pipeline for our code and for stdlib loggers (panoramisk, asyncpg...).

Every line carries an ISO UTC timestamp, level, logger name, event and the bound context
(``structlog.contextvars``).  Before anything is rendered it passes a sanitiser that removes
secrets (by key name, by known value, by shape) and masks phone numbers, because logs end up
in journald, tickets and chat where neither AMI passwords nor customers' numbers belong.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from callbackd.settings import REDACTED, LoggingSettings, redact_dsn

__all__ = [
    "MIN_SCRUB_LENGTH",
    "PHONE_NUMBER_KEYS",
    "configure_logging",
    "get_logger",
    "mask_number",
]

PHONE_NUMBER_KEYS: frozenset[str] = frozenset(
    {
        "number",
        "caller_number",
        "client_number",
        "caller_id",
        "callerid",
        "phone",
        "from_number",
        "to_number",
        # the same numbers as AMI spells them in events (keys are compared lower-cased)
        "calleridnum",
        "connectedlinenum",
    }
)
"""Keys (case-insensitive, at any nesting depth) whose values are masked by ``mask_number``."""

MIN_SCRUB_LENGTH = 4
"""Known secrets shorter than this are not scrubbed by value: doing so would shred every log
line (a secret ``ab`` matches everywhere).  Key- and pattern-based redaction still apply."""

_HANDLER_NAME = "callbackd"
_MAX_DEPTH = 8

_SECRET_KEY = re.compile(
    r"secret|passw(?:or)?d|pwd|token|authori[sz]ation|api[_-]?key|credential|dsn", re.IGNORECASE
)
_DSN_KEY = re.compile(r"dsn", re.IGNORECASE)

# `Secret: xyz` (AMI actions), `password=xyz`, `'token': 'xyz'`, `Authorization: Bearer xyz`.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>(?<![A-Za-z])(?:secret|passw(?:or)?d|pwd|token|api[_-]?key|authori[sz]ation)"
    r"[\"']?[ \t]*[:=][ \t]*)"
    r"(?P<value>\"[^\"\r\n]*\"|'[^'\r\n]*'"
    r"|(?:(?:bearer|basic|digest)[ \t]+)?[^\s\"',;&}\])]+)",
    re.IGNORECASE,
)
# scheme://user:password@host -> scheme://user:***@host (the last '@' before '/' or space).
_URL_PASSWORD = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s/]*@")


def mask_number(value: str) -> str:
    """Hide all but the last 4 digits: ``+79161234567`` -> ``+*******4567``.

    Separators and any other characters are dropped so nothing but the final digits leaks;
    values with at most 4 digits become all ``*``; values without digits (``anonymous``)
    are returned unchanged.
    """
    text = str(value).strip()
    digits = [char for char in text if char.isdigit()]
    if not digits:
        return str(value)
    kept = digits[-4:] if len(digits) > 4 else []
    sign = "+" if text.startswith("+") else ""
    return sign + "*" * (len(digits) - len(kept)) + "".join(kept)


class _Sanitiser:
    """Processor that redacts secrets and (optionally) masks phone numbers everywhere.

    It walks every value of the event dict, nested mappings and sequences included, after
    exceptions were rendered to text, so tracebacks are cleaned the same way.
    """

    def __init__(self, secrets: Iterable[str], *, mask_numbers: bool) -> None:
        known = sorted(
            {s for s in secrets if len(s.strip()) >= MIN_SCRUB_LENGTH}, key=len, reverse=True
        )
        self._known = re.compile("|".join(re.escape(s) for s in known)) if known else None
        self._mask_numbers = mask_numbers

    def scrub(self, text: str) -> str:
        """Remove known secrets and secret-shaped substrings from free text."""
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        # Each pattern needs its separator: most values (ids, names, numbers) skip both scans.
        if "@" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}{REDACTED}@", text)
        if ":" in text or "=" in text:
            text = _SECRET_ASSIGNMENT.sub(_redact_assignment, text)
        return text

    def clean(self, key: str | None, value: Any, depth: int = 0) -> Any:
        """The value safe to print; *key* is the name it is logged under, if any."""
        phone, secret, dsn = _key_kind(key) if key is not None else (False, False, False)
        masks = phone and self._mask_numbers
        if value is None or isinstance(value, bool | int | float):
            if value is not None and masks:
                return mask_number(str(value))
            if value is not None and secret:
                return REDACTED
            return value
        if secret:
            if dsn:
                return self.scrub(redact_dsn(value if isinstance(value, str) else str(value)))
            return REDACTED
        if depth >= _MAX_DEPTH:
            return self.scrub(repr(value))
        if isinstance(value, str):
            return self.scrub(mask_number(value) if masks else value)
        if isinstance(value, Mapping):
            return {str(k): self.clean(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.clean(None, item, depth + 1) for item in value]
        # Anything else would be repr()'d by the renderer; do that here so it is scrubbed.
        return self.scrub(repr(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self.clean(key, value) for key, value in event_dict.items()}


@functools.lru_cache(maxsize=2048)
def _key_kind(key: str) -> tuple[bool, bool, bool]:
    """(a phone-number key, a secret key, a DSN key): log keys repeat, so this is cached."""
    return (
        key.lower() in PHONE_NUMBER_KEYS,
        _SECRET_KEY.search(key) is not None,
        _DSN_KEY.search(key) is not None,
    )


def _redact_assignment(match: re.Match[str]) -> str:
    value = match.group("value")
    if value[:1] in {'"', "'"}:
        return f"{match.group('key')}{value[0]}{REDACTED}{value[0]}"
    return f"{match.group('key')}{REDACTED}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def configure_logging(
    cfg: LoggingSettings,
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Route structlog and stdlib logging through one sanitising pipeline to *stream*.

    Safe to call again (tests, the CLI after loading settings): it replaces its own root
    handler instead of adding another.  Pass every configured secret in *secrets*
    (``settings.secrets()``) so they are scrubbed even from third-party messages.
    """
    out = stream if stream is not None else sys.stdout
    as_json = cfg.format == "json" or (cfg.format == "auto" and not _is_tty(out))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    render_exception: Processor
    if as_json:
        render_exception = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        # Exceptions become text *before* the sanitiser; the renderer must not format them
        # again from exc_info (rich/better-exceptions would print unscrubbed locals).
        render_exception = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_tty(out), exception_formatter=structlog.dev.plain_traceback
        )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            render_exception,
            _Sanitiser(secrets, mask_numbers=cfg.mask_numbers),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    root.setLevel(level)
    # panoramisk logs the AMI Login action, Secret included, at DEBUG.
    logging.getLogger("panoramisk").setLevel(max(level, logging.INFO))
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: a logger first used before configure_logging() (import time) would
        # otherwise keep structlog's unconfigured defaults for the life of the process.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named *name* (default ``callbackd``) with *bound* context."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name or "callbackd")
    return logger.bind(**bound) if bound else logger
