"""Logging: one JSON object per line, stdlib loggers included, no secrets, masked numbers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from callbackd.logs import PHONE_NUMBER_KEYS, configure_logging, get_logger, mask_number
from callbackd.settings import LoggingSettings

AMI_SECRET = "hunter2-ami"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    panoramisk_level = logging.getLogger("panoramisk").level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.getLogger("panoramisk").setLevel(panoramisk_level)
    logging.captureWarnings(False)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def setup(
    fmt: str = "json", *, level: str = "debug", mask: bool = True, secrets: tuple[str, ...] = ()
) -> io.StringIO:
    stream = io.StringIO()
    cfg = LoggingSettings.model_validate({"format": fmt, "level": level, "mask_numbers": mask})
    configure_logging(cfg, stream=stream, secrets=secrets)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_one_object_per_line() -> None:
    stream = setup()
    log = get_logger("callbackd.test", queue="sales")
    structlog.contextvars.bind_contextvars(request_id="req-1")
    log.info("first", attempt=3)
    log.warning("second\nwith a newline")

    first, second = lines(stream)
    assert first["event"] == "first"
    assert first["level"] == "info"
    assert first["logger"] == "callbackd.test"
    assert first["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert (first["queue"], first["attempt"], first["request_id"]) == ("sales", 3, "req-1")
    assert second["level"] == "warning"


def test_auto_format_is_json_when_not_a_tty() -> None:
    stream = setup("auto")
    get_logger().info("hello")
    assert lines(stream)[0]["event"] == "hello"


def test_console_format() -> None:
    stream = setup("console")
    get_logger("callbackd.test").info("hello", queue="sales")
    text = stream.getvalue()
    assert "hello" in text
    assert "queue=sales" in text
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal


def test_stdlib_logger_goes_through_the_pipeline() -> None:
    stream = setup()
    logging.getLogger("panoramisk.manager").info("connected to %s", "pbx")

    [record] = lines(stream)
    assert record["event"] == "connected to pbx"
    assert record["logger"] == "panoramisk.manager"
    assert record["level"] == "info"
    assert "timestamp" in record


def test_panoramisk_debug_is_suppressed_even_at_debug_level() -> None:
    stream = setup(level="debug")
    logging.getLogger("panoramisk.manager").debug("Action: Login")
    logging.getLogger("asyncpg").debug("visible")
    assert [r["event"] for r in lines(stream)] == ["visible"]


def test_level_filters() -> None:
    stream = setup(level="warning")
    log = get_logger()
    log.info("dropped")
    logging.getLogger("asyncpg").info("dropped too")
    log.warning("kept")
    assert [r["event"] for r in lines(stream)] == ["kept"]


def test_reconfiguring_does_not_stack_handlers() -> None:
    setup()
    before = len(logging.getLogger().handlers)
    stream = setup()
    assert len(logging.getLogger().handlers) == before
    get_logger().info("once")
    assert len(lines(stream)) == 1


def test_secrets_are_scrubbed_from_stdlib_messages() -> None:
    stream = setup(secrets=(AMI_SECRET,))
    manager = logging.getLogger("panoramisk.manager")
    manager.warning("Action: Login\r\nUsername: callbackd\r\nSecret: hunter2\r\n")
    manager.warning("sent %r", {"Action": "Login", "Secret": "hunter2 two"})
    manager.warning("login as %s with %s", "callbackd", AMI_SECRET)

    text = stream.getvalue()
    assert "hunter2" not in text
    assert "Secret: ***" in text
    assert "callbackd" in text  # only the secret goes


def test_secrets_are_scrubbed_from_exceptions() -> None:
    stream = setup(secrets=(AMI_SECRET,))

    def fail() -> None:
        raise ValueError(f"login failed for secret {AMI_SECRET} (Secret: hunter2)")

    try:
        fail()
    except ValueError:
        get_logger("callbackd.ami").exception("ami login failed")
        logging.getLogger("panoramisk").exception("stdlib view of it")

    text = stream.getvalue()
    assert "hunter2" not in text
    records = lines(stream)
    assert len(records) == 2
    for record in records:
        assert "ValueError" in json.dumps(record["exception"])


def test_secrets_are_scrubbed_from_console_tracebacks() -> None:
    stream = setup("console", secrets=(AMI_SECRET,))

    def fail() -> None:
        raise RuntimeError(f"bad {AMI_SECRET}")

    try:
        fail()
    except RuntimeError:
        get_logger().exception("boom")
    text = stream.getvalue()
    assert "RuntimeError: bad ***" in text
    assert AMI_SECRET not in text


def test_secret_keys_are_redacted() -> None:
    stream = setup()
    get_logger().info(
        "connecting",
        dsn="postgresql://callbackd:dbpw@db:5432/callbackd",
        secret="s",
        ami_password="p",
        headers={"Authorization": "Bearer abc"},
        url="https://user:pw@example.org/x",
    )
    [record] = lines(stream)
    assert record["dsn"] == "postgresql://callbackd:***@db:5432/callbackd"
    assert record["secret"] == "***"
    assert record["ami_password"] == "***"
    assert record["headers"] == {"Authorization": "***"}
    assert record["url"] == "https://user:***@example.org/x"


def test_secret_patterns_in_event_text() -> None:
    stream = setup()
    get_logger().info("retry with password=abc123&user=x and token: 'tok tok'")
    [record] = lines(stream)
    assert record["event"] == "retry with password=***&user=x and token: '***'"


def test_numbers_are_masked() -> None:
    stream = setup(mask=True)
    get_logger().info(
        "calling",
        number="+79161234567",
        caller_id=79161234567,
        event_fields={"CallerIDNum": "89161234567"},
        queue="sales",
    )
    [record] = lines(stream)
    assert record["number"] == "+*******4567"
    assert record["caller_id"] == "*******4567"
    assert record["event_fields"]["CallerIDNum"] == "*******4567"
    assert "916123" not in stream.getvalue()
    assert record["queue"] == "sales"


def test_numbers_are_intact_when_masking_is_off() -> None:
    stream = setup(mask=False)
    get_logger().info("calling", number="+79161234567")
    assert lines(stream)[0]["number"] == "+79161234567"


def test_phone_keys_are_exported() -> None:
    assert {"number", "caller_number", "client_number", "caller_id", "callerid"} <= (
        PHONE_NUMBER_KEYS
    )
    assert {"phone", "from_number", "to_number"} <= PHONE_NUMBER_KEYS


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+79161234567", "+*******4567"),
        ("+7 (916) 123-45-67", "+*******4567"),
        ("1234", "****"),
        ("12", "**"),
        ("12345", "*2345"),
        ("anonymous", "anonymous"),
        ("", ""),
    ],
)
def test_mask_number_examples(raw: str, masked: str) -> None:
    assert mask_number(raw) == masked


def _digits(text: str) -> list[str]:
    return [char for char in text if char.isdigit()]


@given(st.text(alphabet="0123456789", min_size=0, max_size=30))
def test_mask_number_reveals_at_most_the_last_four_digits(digits: str) -> None:
    masked = mask_number(digits)
    revealed = _digits(masked)
    assert revealed == (list(digits[-4:]) if len(digits) > 4 else [])
    assert len(masked) == len(digits)


@given(st.text())
def test_mask_number_never_raises_and_never_leaks(text: str) -> None:
    masked = mask_number(text)
    digits = _digits(text)
    if digits:
        assert _digits(masked) == (digits[-4:] if len(digits) > 4 else [])
        assert set(masked) - set(digits[-4:]) <= {"+", "*"}
    else:
        assert masked == text
