"""Pure parts of the outbox: backoff, topic filters, SMS decisions, templates, signatures,
the SSRF address policy, and the configuration checks that use them."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbackd.domain.delivery import (
    BackoffPolicy,
    check_template,
    render,
    sms_due,
    topic_matches,
)
from callbackd.domain.signature import SignatureError, sign, verify_signature
from callbackd.domain.targets import TargetPolicy, classify
from callbackd.settings import ConfigError, load_settings, render_effective_config

SECRET = "s3cret-for-tests-0123456789"


# -- backoff -----------------------------------------------------------------------------------
def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = BackoffPolicy(initial_seconds=5, factor=2, maximum_seconds=60, jitter=0)
    assert [policy.delay(n, rand=0.5) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_jitter_only_shortens_the_delay_by_at_most_its_fraction() -> None:
    policy = BackoffPolicy(initial_seconds=10, factor=2, maximum_seconds=100, jitter=0.25)
    assert policy.delay(1, rand=0.0) == 10
    assert policy.delay(1, rand=0.999999) == pytest.approx(7.5, abs=1e-4)
    assert policy.delay(2, rand=0.5) == pytest.approx(17.5)


def test_give_up_once_the_message_is_older_than_the_max_age() -> None:
    policy = BackoffPolicy(initial_seconds=1, max_age_seconds=600)
    keep = policy.after_failure(tries=3, age_seconds=599, rand=0)
    assert (keep.give_up, keep.delay_seconds) == (False, 4)
    assert policy.after_failure(tries=3, age_seconds=600, rand=0).give_up


@settings(max_examples=300, deadline=None)
@given(
    tries=st.integers(min_value=1, max_value=10_000),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    jitter=st.floats(min_value=0, max_value=0.99),
)
def test_backoff_stays_within_bounds_and_never_shrinks_without_jitter(
    tries: int, rand: float, jitter: float
) -> None:
    policy = BackoffPolicy(initial_seconds=2, factor=3, maximum_seconds=900, jitter=jitter)
    delay = policy.delay(tries, rand)
    assert 2 * (1 - jitter) - 1e-9 <= delay <= 900
    plain = BackoffPolicy(initial_seconds=2, factor=3, maximum_seconds=900, jitter=0)
    assert plain.delay(tries + 1, 0) >= plain.delay(tries, 0)


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=1.0)
    with pytest.raises(ValueError, match="tries"):
        BackoffPolicy().delay(0, 0.5)


# -- topics and SMS decisions ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patterns", "topic", "expected"),
    [
        ((), "callback.created", True),
        (("callback.*",), "callback.failed", True),
        (("*",), "callback.attempted", True),
        (("callback.completed", "callback.failed"), "callback.failed", True),
        (("callback.completed",), "callback.created", False),
        (("callback.completed",), "callback.completed.extra", False),
    ],
)
def test_topic_filters(patterns: tuple[str, ...], topic: str, expected: bool) -> None:
    assert topic_matches(patterns, topic) is expected


@pytest.mark.parametrize(
    ("when", "topic", "source", "expected"),
    [
        ("abandon", "callback.created", "abandon", True),
        ("abandon", "callback.created", "api", False),  # the caller did not give up
        ("abandon", "callback.failed", "abandon", False),
        ("final_failure", "callback.failed", "abandon", True),
        ("final_failure", "callback.expired", "abandon", True),  # never called back either
        ("final_failure", "callback.created", "abandon", False),
        ("both", "callback.created", "abandon", True),
        ("both", "callback.failed", "ivr", True),
        ("both", "callback.completed", "abandon", False),
    ],
)
def test_when_a_campaign_texts_the_caller(
    when: str, topic: str, source: str, expected: bool
) -> None:
    assert sms_due(when, topic, {"source": source}) is expected  # type: ignore[arg-type]


def test_templates_allow_only_known_plain_fields() -> None:
    allowed = frozenset({"campaign", "queue"})
    check_template("Sorry, {campaign} will call you back", allowed)
    assert render("{campaign}/{queue}!", {"campaign": "sales", "queue": "q1"}) == "sales/q1!"
    with pytest.raises(ValueError, match=r"unknown field \{number\}"):
        check_template("{number}", allowed)
    with pytest.raises(ValueError, match="plain"):
        check_template("{campaign.__class__}", allowed)
    with pytest.raises(ValueError, match="plain"):
        check_template("{campaign!r}", allowed)
    with pytest.raises(ValueError, match="malformed"):
        check_template("{campaign", allowed)


# -- signatures --------------------------------------------------------------------------------
def test_signature_round_trip() -> None:
    body = '{"id":"e1","type":"callback.created","data":{"note":"Привет"}}'.encode()
    header = sign(SECRET, body, timestamp=1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_800_000_100) == 1_800_000_000


@pytest.mark.parametrize(
    ("secret", "body", "now", "error"),
    [
        ("another-secret-0123456789", b"{}", 1_800_000_000, "does not match"),
        (SECRET, b"{} ", 1_800_000_000, "does not match"),
        (SECRET, b"{}", 1_800_000_301, "tolerance"),
        (SECRET, b"{}", 1_799_999_000, "tolerance"),
    ],
)
def test_signature_refuses_other_secret_changed_body_and_stale_time(
    secret: str, body: bytes, now: float, error: str
) -> None:
    header = sign(SECRET, b"{}", timestamp=1_800_000_000)
    with pytest.raises(SignatureError, match=error):
        verify_signature(secret, header, body, now=now)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1800000000", "v1=ab"])
def test_malformed_signature_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, b"{}", now=1_800_000_000)


def test_a_rotating_sender_may_send_two_signatures() -> None:
    body = b"{}"
    old = sign("old-secret-0123456789", body, timestamp=1_800_000_000)
    new = sign(SECRET, body, timestamp=1_800_000_000)
    header = old + "," + new.split(",", 1)[1]
    assert verify_signature(SECRET, header, body, now=1_800_000_000) == 1_800_000_000


# -- target addresses --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("10.0.0.1", "private"),
        ("192.168.1.10", "private"),
        ("172.16.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "not globally routable"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    assert classify(ipaddress.ip_address(address)) == reason


def test_allow_private_opens_private_ranges_but_not_metadata() -> None:
    policy = TargetPolicy(allow_private=True)
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "metadata"
    listed = TargetPolicy(allowed_networks=(ipaddress.ip_network("169.254.169.254/32"),))
    assert listed.refusal(ipaddress.ip_address("169.254.169.254")) is None
    assert listed.refusal(ipaddress.ip_address("10.0.0.1")) == "private"


# -- configuration -----------------------------------------------------------------------------
def _webhooks(url: str, **section: object) -> dict[str, object]:
    return {"endpoints": [{"name": "crm", "url": url, "secret": SECRET}], **section}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://10.0.0.1/hooks", "private"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("http://localhost:8080/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
    ],
)
def test_webhook_urls_to_internal_addresses_are_refused_at_config_time(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={}, webhooks=_webhooks(url))
    assert caught.value.key == "webhooks.endpoints.0.url"
    assert reason in caught.value.reason
    assert SECRET not in str(caught.value)


def test_explicit_allowances_open_internal_targets() -> None:
    private = load_settings(
        None, env={}, webhooks=_webhooks("http://10.0.0.1/", allow_private_targets=True)
    )
    assert private.webhooks.endpoints[0].url == "http://10.0.0.1/"
    with pytest.raises(ConfigError, match="metadata"):
        load_settings(
            None,
            env={},
            webhooks=_webhooks("http://169.254.169.254/", allow_private_targets=True),
        )
    listed = load_settings(
        None, env={}, webhooks=_webhooks("http://10.1.2.3/", allowed_networks=["10.1.2.0/24"])
    )
    assert listed.webhooks.allowed_networks == (ipaddress.ip_network("10.1.2.0/24"),)


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        (
            {"endpoints": [{"name": "crm", "url": "ftp://x.example/", "secret": SECRET}]},
            "webhooks.endpoints.0.url",
            "http",
        ),
        (
            {"endpoints": [{"name": "crm", "url": "https://u:p@x.example/", "secret": SECRET}]},
            "webhooks.endpoints.0.url",
            "credentials",
        ),
        (
            {"endpoints": [{"name": "crm", "url": "https://93.184.216.34/", "secret": "short"}]},
            "webhooks.endpoints.0.secret",
            "16",
        ),
        (
            {
                "endpoints": [
                    {"name": "crm", "url": "https://93.184.216.34/", "secret": SECRET},
                    {"name": "crm", "url": "https://93.184.216.35/", "secret": SECRET},
                ]
            },
            "webhooks.endpoints.1.name",
            "duplicate",
        ),
        (
            {
                "endpoints": [
                    {
                        "name": "crm",
                        "url": "https://93.184.216.34/",
                        "secret": SECRET,
                        "topics": ["callback.exploded"],
                    }
                ]
            },
            "webhooks.endpoints.0.topics.0",
            "not an event",
        ),
    ],
)
def test_webhook_config_errors_name_the_key(section: object, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={}, webhooks=section)
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_sms_config_checks() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={}, sms={"sender": "http"})
    assert caught.value.key == "sms.http"
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None, env={}, sms={"sender": "ami", "ami": {"pbx": "nope", "destination": "x"}}
        )
    assert caught.value.key == "sms.ami.pbx"
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            env={},
            sms={"sender": "http", "http": {"url": "http://10.9.9.9/send"}},
        )
    assert caught.value.key == "sms.http.url"
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            env={},
            sms={
                "sender": "http",
                "http": {"url": "https://93.184.216.34/", "body": {"to": "{phone}"}},
            },
        )
    assert caught.value.key == "sms.http.body.to"
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            env={},
            campaigns={"sales": {"sms": {"template": "Hi {number}"}, "caller_id": "+15551234567"}},
        )
    assert caught.value.key == "campaigns.sales.sms.template"
    ok = load_settings(
        None,
        env={},
        sms={"sender": "ami", "ami": {"destination": "pjsip:trunk/sip:{number_digits}@x"}},
        campaigns={
            "sales": {
                "sms": {"template": "{campaign}", "language": "ru", "when": "both"},
                "caller_id": "+15551234567",
            }
        },
    )
    assert ok.sms.ami is not None
    assert ok.sms.ami.pbx == "pbx"  # the first AMI endpoint
    assert ok.campaigns["sales"].sms is not None


def test_webhook_and_gateway_secrets_are_scrubbed_from_logs() -> None:
    loaded = load_settings(
        None,
        env={},
        webhooks=_webhooks("https://93.184.216.34/"),
        sms={
            "sender": "http",
            "http": {
                "url": "https://93.184.216.34/send",
                "bearer_token": "gateway-token-123",
                "secret_headers": {"X-Api-Key": "gateway-key-456"},
            },
        },
    )
    values = loaded.secret_values()
    assert {SECRET, "gateway-token-123", "gateway-key-456"} <= set(values)


def test_check_config_output_redacts_webhook_and_gateway_secrets() -> None:
    loaded = load_settings(
        None,
        env={},
        webhooks=_webhooks("https://93.184.216.34/"),
        sms={
            "sender": "http",
            "http": {
                "url": "https://93.184.216.34/send",
                "bearer_token": "gateway-token-123",
                "basic_username": "shop",
                "basic_password": "gateway-pass-789",
                "secret_headers": {"X-Api-Key": "gateway-key-456"},
            },
        },
    )
    text = render_effective_config(loaded)
    for secret in (SECRET, "gateway-token-123", "gateway-key-456", "gateway-pass-789"):
        assert secret not in text
    assert 'X-Api-Key = "***"' in text
    assert load_settings(None, env={}).webhooks.endpoints == ()
