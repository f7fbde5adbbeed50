"""The API's pure rules: tokens, scopes, cursors, payload fingerprints, preferred times."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbackd.domain.api import (
    CursorError,
    TimeError,
    TokenRecord,
    bearer_token,
    decode_cursor,
    encode_cursor,
    hash_token,
    match_token,
    payload_fingerprint,
    request_id_from,
    resolve_preferred_time,
)
from callbackd.settings import ConfigError, load_settings

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def test_hash_token_is_hex_sha256() -> None:
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc123", "abc123"),
        ("bearer   abc123  ", "abc123"),
        ("Basic YWJjOmRlZg==", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_is_read_from_the_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_match_token_finds_the_configured_record_by_hash() -> None:
    reader = TokenRecord("reader", hash_token("r-token"), frozenset({"read"}))
    writer = TokenRecord("writer", hash_token("w-token"), frozenset({"read", "write"}))
    assert match_token("w-token", [reader, writer]) == writer
    assert match_token("r-token", [reader, writer]) == reader
    assert match_token("other", [reader, writer]) is None
    assert match_token(hash_token("w-token"), [reader, writer]) is None  # the hash is no token
    assert match_token("w-token", []) is None


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_id_cursor_round_trips(value: int) -> None:
    assert decode_cursor(encode_cursor({"id": value}), key="id", kind=int) == value


@given(st.text(min_size=1, max_size=40))
def test_text_cursor_round_trips(value: str) -> None:
    assert decode_cursor(encode_cursor({"number": value}), key="number", kind=str) == value


@pytest.mark.parametrize(
    "cursor",
    [
        "!!",
        "a" * 600,
        encode_cursor({"id": "7"}),
        encode_cursor({"id": 0}),
        encode_cursor({"id": True}),
        encode_cursor({"id": 2**63}),
        encode_cursor({"other": 1}),
        "bm90IGpzb24",  # "not json"
    ],
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(cursor, key="id", kind=int)


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    one = payload_fingerprint({"a": 1, "b": [1, 2], "c": {"x": "y"}})
    assert one == payload_fingerprint({"c": {"x": "y"}, "b": [1, 2], "a": 1})
    assert one != payload_fingerprint({"a": 1, "b": [2, 1], "c": {"x": "y"}})
    assert one != payload_fingerprint({"a": "1", "b": [1, 2], "c": {"x": "y"}})


def test_preferred_time_with_an_offset_is_kept() -> None:
    when = datetime(2026, 3, 21, 10, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert resolve_preferred_time(when, None, now=NOW) == when


def test_preferred_local_time_follows_the_zone_across_dst() -> None:
    # New York changes to summer time on 2026-03-08: 09:00 local is 14:00 UTC before, 13:00 after.
    before = resolve_preferred_time(datetime(2026, 3, 7, 9, 0), "America/New_York", now=NOW)
    after = resolve_preferred_time(datetime(2026, 3, 9, 9, 0), "America/New_York", now=NOW)
    assert before.astimezone(UTC).hour == 14
    assert after.astimezone(UTC).hour == 13


@pytest.mark.parametrize(
    ("when", "zone", "reason"),
    [
        (datetime(2026, 3, 21, 10, 0), None, "UTC offset"),
        (datetime(2026, 3, 21, 10, 0, tzinfo=UTC), "Europe/Moscow", "not both"),
        (datetime(2026, 3, 21, 10, 0), "Mars/Base", "time zone"),
        (datetime(2026, 3, 21, 10, 0), "../../etc/passwd", "time zone"),
        (NOW + timedelta(days=400), None, "year ahead"),
        (NOW - timedelta(days=400), None, "in the past"),
        (datetime(1, 1, 1, tzinfo=UTC), None, "past"),
    ],
)
def test_unusable_preferred_times_are_refused(
    when: datetime, zone: str | None, reason: str
) -> None:
    with pytest.raises(TimeError, match=reason):
        resolve_preferred_time(when, zone, now=NOW)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("trace-1", "trace-1"), ("a b", "fallback"), ("x" * 65, "fallback"), (None, "fallback")],
)
def test_request_id_is_the_clients_when_safe(header: str | None, expected: str) -> None:
    assert request_id_from(header, "fallback") == expected


@pytest.mark.parametrize(
    ("tokens", "key", "reason"),
    [
        ([{"name": "crm", "sha256": "abc"}], "http.tokens.0.sha256", "64 hex digits"),
        ([{"name": "crm", "sha256": "a" * 64, "scopes": ["admin"]}], "http.tokens.0.scopes.0", ""),
        ([{"name": "crm", "sha256": "a" * 64, "scopes": []}], "http.tokens.0.scopes", ""),
        (
            [{"name": "crm", "sha256": "a" * 64}, {"name": "crm", "sha256": "b" * 64}],
            "http.tokens.1.name",
            "duplicate",
        ),
    ],
)
def test_bad_token_settings_name_the_key(
    tokens: list[dict[str, object]], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={}, http={"tokens": tokens})
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_token_settings_accept_upper_case_hex_and_default_to_read() -> None:
    settings = load_settings(None, env={}, http={"tokens": [{"name": "crm", "sha256": "AB" * 32}]})
    [token] = settings.http.tokens
    assert token.sha256 == "ab" * 32
    assert token.scopes == ("read",)
    assert settings.http.enabled is False
    assert settings.http.listen_host == "127.0.0.1"
