"""Settings: sources, precedence, error reporting and secret-free rendering."""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path

import pytest
from pydantic import BaseModel

from callbackd.settings import (
    DEFAULT_CONFIG_PATH,
    AgiSettings,
    AmiEndpoint,
    CallingWindow,
    Campaign,
    CampaignSms,
    CategoryRule,
    ConfigError,
    DatabaseSettings,
    HttpSettings,
    HttpToken,
    LoggingSettings,
    OutboxSettings,
    PhoneSettings,
    RetryPolicy,
    SmsAmiSender,
    SmsHttpGateway,
    SmsSettings,
    WebhookEndpoint,
    WebhookSettings,
    load_settings,
    redact_dsn,
    render_effective_config,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[[ami]]
name = "main"
host = "pbx.example"
secret = "toml-ami-secret"

[logging]
level = "warning"
format = "console"

[campaigns.sales]
mode = "client_first"
caller_id = '"Shop" <+15551234567>'
"""


def write(tmp_path: Path, text: str, name: str = "callbackd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, env: dict[str, str] | None = None, **kw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {}, **kw)
    return info.value


# ----------------------------------------------------------------- defaults and sources


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})

    assert settings.database.dsn.get_secret_value() == "postgresql:///callbackd"
    assert (settings.database.min_connections, settings.database.max_connections) == (2, 10)
    [ami] = settings.ami
    assert (ami.name, ami.host, ami.port, ami.username, ami.tls) == (
        "pbx",
        "127.0.0.1",
        5038,
        "callbackd",
        False,
    )
    assert ami.queue_log_path is None
    assert (settings.agi.listen_host, settings.agi.listen_port) == ("127.0.0.1", 4573)
    assert (settings.logging.level, settings.logging.format) == ("info", "auto")
    assert settings.logging.mask_numbers is True
    assert settings.phone.default_region == "US"
    assert settings.campaigns == {}


def test_campaign_defaults_are_resolved(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})

    sales = settings.campaigns["sales"]
    assert sales.queue == "sales"  # defaults to the campaign's name
    assert sales.pbx == "main"  # defaults to the first AMI endpoint
    assert sales.mode == "client_first"
    assert sales.retry.max_attempts == 3
    assert sales.window.days == ("mon", "tue", "wed", "thu", "fri")
    assert (sales.window.start, sales.window.end) == (time(9), time(21))
    assert sales.dial_string("+15551234567") == "Local/+15551234567@from-callbackd"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    with pytest.raises(ValueError, match="frozen"):
        settings.logging.level = "debug"  # type: ignore[misc]


def test_env_overrides_toml(tmp_path: Path) -> None:
    env = {
        "CALLBACKD_LOGGING__LEVEL": "DEBUG",
        "CALLBACKD_DATABASE__DSN": "postgresql://cb:pw@db:5432/cb",
        "CALLBACKD_CAMPAIGNS__SALES__RETRY__MAX_ATTEMPTS": "7",
    }
    settings = load_settings(write(tmp_path, MINIMAL), env=env)

    assert settings.logging.level == "debug"  # env wins over the file...
    assert settings.logging.format == "console"  # ...but only for the key it names
    assert settings.database.dsn.get_secret_value() == "postgresql://cb:pw@db:5432/cb"
    assert settings.campaigns["sales"].retry.max_attempts == 7
    assert settings.campaigns["sales"].mode == "client_first"


def test_nested_env_without_file() -> None:
    settings = load_settings(None, env={"CALLBACKD_LOGGING__LEVEL": "error"})
    assert settings.logging.level == "error"


def test_overrides_beat_env(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MINIMAL),
        env={"CALLBACKD_LOGGING__LEVEL": "debug"},
        logging={"level": "error"},
    )
    assert settings.logging.level == "error"
    assert settings.logging.format == "console"


def test_env_patches_one_ami_endpoint_by_name(tmp_path: Path) -> None:
    env = {"CALLBACKD_AMI__MAIN__SECRET": "env-secret", "CALLBACKD_AMI__0__PORT": "5039"}
    settings = load_settings(write(tmp_path, MINIMAL), env=env)

    [ami] = settings.ami
    assert ami.host == "pbx.example"  # from the file
    assert ami.secret.get_secret_value() == "env-secret"
    assert ami.port == 5039


def test_explicit_env_ignores_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("CALLBACKD_LOGGING__LEVEL", "debug")
    assert load_settings(path, env={}).logging.level == "info"
    assert load_settings(path).logging.level == "debug"


def test_default_path_constant() -> None:
    assert Path("/etc/callbackd/callbackd.toml") == DEFAULT_CONFIG_PATH


def test_example_file_loads() -> None:
    settings = load_settings(REPO_ROOT / "callbackd.example.toml", env={})

    assert set(settings.campaigns) == {"sales"}
    assert settings.campaigns["sales"].window.holidays == (date(2025, 12, 25), date(2026, 1, 1))
    assert [endpoint.name for endpoint in settings.ami] == ["pbx"]


@pytest.mark.parametrize(
    "model",
    [
        DatabaseSettings,
        AmiEndpoint,
        AgiSettings,
        LoggingSettings,
        PhoneSettings,
        Campaign,
        RetryPolicy,
        CallingWindow,
        OutboxSettings,
        WebhookSettings,
        WebhookEndpoint,
        SmsSettings,
        SmsHttpGateway,
        SmsAmiSender,
        CampaignSms,
        HttpSettings,
        HttpToken,
        CategoryRule,
    ],
)
def test_example_file_shows_every_key(model: type[BaseModel]) -> None:
    """The example documents every setting (a commented-out line counts)."""
    text = (REPO_ROOT / "callbackd.example.toml").read_text(encoding="utf-8")
    for field in model.model_fields:
        shown = (f"\n{field} = ", f"\n# {field} = ", f".{field}]")  # key, commented, table
        assert any(form in text for form in shown), field


# ----------------------------------------------------------------- errors


def test_explicit_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    err = config_error(missing)
    assert err.path == missing
    assert err.key == "<file>"
    assert str(err) == f"{missing}: <file>: config file does not exist"


def test_broken_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[logging]\nlevel = 'info'\nformat = \n")
    err = config_error(path)
    assert err.key == "<file>"
    assert "line 3" in err.reason
    assert "column" in err.reason
    assert "\n" not in str(err)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[logging]\nlevle = 'debug'\n"))
    assert err.key == "logging.levle"
    assert "unknown setting" in err.reason


def test_unknown_section_is_named(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[loging]\nlevel = 'debug'\n"))
    assert err.key == "loging"


def test_bad_value_in_campaign_retry(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[campaigns.sales.retry]\nmax_attempts = 0\n")
    err = config_error(path)
    assert err.key == "campaigns.sales.retry.max_attempts"
    assert "greater than or equal to 1" in err.reason
    assert str(err) == f"{path}: {err.key}: {err.reason}"


def test_all_problems_are_kept(tmp_path: Path) -> None:
    text = MINIMAL + "[campaigns.sales.retry]\nmax_attempts = 0\nbackoff_factor = 0.5\n"
    err = config_error(write(tmp_path, text))
    keys = [key for key, _ in err.problems]
    assert keys == ["campaigns.sales.retry.max_attempts", "campaigns.sales.retry.backoff_factor"]
    assert (err.key, err.reason) == err.problems[0]


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, MINIMAL), env={"CALLBACKD_LOGGING__LEVEL": "loud"})
    assert err.key == "CALLBACKD_LOGGING__LEVEL"
    assert "'debug'" in err.reason


def test_env_error_for_ami_endpoint_names_the_variable(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, MINIMAL), env={"CALLBACKD_AMI__MAIN__PORT": "99999"})
    assert err.key == "CALLBACKD_AMI__MAIN__PORT"


def test_env_json_that_does_not_parse(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, MINIMAL), env={"CALLBACKD_AMI": "[{not json"})
    assert err.key == "CALLBACKD_AMI"


def test_bad_timezone(tmp_path: Path) -> None:
    text = MINIMAL + "[campaigns.sales.window]\ntimezone = 'Mars/Olympus_Mons'\n"
    err = config_error(write(tmp_path, text))
    assert err.key == "campaigns.sales.window.timezone"
    assert "Mars/Olympus_Mons" in err.reason


def test_window_start_must_precede_end(tmp_path: Path) -> None:
    text = MINIMAL + "[campaigns.sales.window]\nstart = '21:00'\nend = '09:00'\n"
    err = config_error(write(tmp_path, text))
    assert err.key == "campaigns.sales.window.start"


@pytest.mark.parametrize(
    "template",
    [
        "Local/@from-callbackd",  # no {number}
        "Local/{number}{number}@x",  # twice
        "Local/{number}@{context}",  # another field
        "Local/{number!r}@x",  # conversion
        "Local/{number:>20}@x",  # format spec
        "Local/{number@x",  # unbalanced
        "{number}",  # no technology
    ],
)
def test_bad_dial_template(tmp_path: Path, template: str) -> None:
    text = MINIMAL + f"dial_template = '{template}'\n"
    err = config_error(write(tmp_path, text))
    assert err.key == "campaigns.sales.dial_template"


def test_campaign_with_unknown_pbx(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, MINIMAL + "pbx = 'elsewhere'\n"))
    assert err.key == "campaigns.sales.pbx"
    assert "elsewhere" in err.reason
    assert "main" in err.reason  # lists the known ones


def test_two_campaigns_on_one_queue(tmp_path: Path) -> None:
    text = MINIMAL + "[campaigns.other]\nqueue = 'sales'\ncaller_id = '+15551234567'\n"
    err = config_error(write(tmp_path, text))
    assert err.key == "campaigns.other.queue"


def test_duplicate_ami_names(tmp_path: Path) -> None:
    text = "[[ami]]\nname = 'a'\n[[ami]]\nname = 'b'\n[[ami]]\nname = 'a'\n"
    err = config_error(write(tmp_path, text))
    assert err.key == "ami.2.name"
    assert "duplicate" in err.reason


def test_ami_name_must_be_a_slug(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[[ami]]\nname = 'Main PBX'\n"))
    assert err.key == "ami.0.name"


def test_campaign_names_are_lowercase(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[campaigns.Sales]\nqueue = 'Sales'\ncaller_id = '+1555'\n"))
    assert err.key == "campaigns.Sales"


def test_unknown_region(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "[phone]\ndefault_region = 'XX'\n"))
    assert err.key == "phone.default_region"


def test_phone_lists_are_normalised(tmp_path: Path) -> None:
    text = (
        "[phone]\ndefault_region = 'gb'\nblocked_prefixes = ['+4487']\n"
        "blocked_regions = ['ru']\nown_numbers = ['020 7946 0000']\n"
    )
    phone = load_settings(write(tmp_path, text), env={}).phone
    assert phone.default_region == "GB"
    assert phone.blocked_regions == ("RU",)
    assert phone.blocked_prefixes == ("4487",)
    assert phone.own_numbers == ("+442079460000",)


def test_dsn_must_be_postgres_and_is_not_echoed(tmp_path: Path) -> None:
    err = config_error(
        write(tmp_path, ""), env={"CALLBACKD_DATABASE__DSN": "mysql://u:topsecret@db/x"}
    )
    assert err.key == "CALLBACKD_DATABASE__DSN"
    assert "topsecret" not in str(err)


# ----------------------------------------------------------------- rendering


def test_render_effective_config_has_no_secrets(tmp_path: Path) -> None:
    env = {
        "CALLBACKD_DATABASE__DSN": "postgresql://callbackd:dbpassw0rd@db.example:5432/callbackd",
        "CALLBACKD_AMI__MAIN__SECRET": "ami-s3cret",
    }
    settings = load_settings(write(tmp_path, MINIMAL), env=env)
    text = render_effective_config(settings)

    assert "dbpassw0rd" not in text
    assert "ami-s3cret" not in text
    assert "toml-ami-secret" not in text
    assert "postgresql://callbackd:***@db.example:5432/callbackd" in text
    assert "pbx.example" in text

    data = tomllib.loads(text)  # valid TOML, and re-loadable apart from the secrets
    assert data["ami"][0]["secret"] == "***"
    assert data["ami"][0]["username"] == "callbackd"
    assert data["campaigns"]["sales"]["pbx"] == "main"
    reloaded = load_settings(write(tmp_path, text, "effective.toml"), env={})
    assert reloaded.campaigns == settings.campaigns


def test_secrets_lists_every_secret(tmp_path: Path) -> None:
    env = {"CALLBACKD_DATABASE__DSN": "postgresql://u:dbpw@db/x"}
    secrets = load_settings(write(tmp_path, MINIMAL), env=env).secret_values()
    assert "toml-ami-secret" in secrets
    assert "dbpw" in secrets


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:pw@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql:///callbackd", "postgresql:///callbackd"),
        (
            "postgresql://db/x?user=u&password=pw&sslmode=require",
            "postgresql://db/x?user=u&password=***&sslmode=require",
        ),
        ("host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"),
        ("", ""),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_orphan_timeout_must_span_two_heartbeats() -> None:
    err = config_error(None, daemon={"heartbeat_seconds": 5, "orphan_after_seconds": 8})
    assert err.key == "daemon.orphan_after_seconds"
    assert "two heartbeats" in err.reason
    fine = load_settings(None, env={}, daemon={"heartbeat_seconds": 1, "orphan_after_seconds": 2})
    assert (fine.daemon.heartbeat_seconds, fine.daemon.orphan_after_seconds) == (1, 2)


def test_outbox_retention_defaults_to_a_week_and_zero_keeps_forever(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={}).outbox.retention_days == 7
    forever = load_settings(write(tmp_path, "[outbox]\nretention_days = 0\n"), env={})
    assert forever.outbox.retention_days == 0
    from_env = load_settings(None, env={"CALLBACKD_OUTBOX__RETENTION_DAYS": "30"})
    assert from_env.outbox.retention_days == 30


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "greater than or equal to 0"),
        ("3651", "less than or equal to 3650"),
        ("1.5", "integer"),
        ('"a week"', "integer"),
    ],
)
def test_outbox_retention_must_be_whole_days(tmp_path: Path, value: str, reason: str) -> None:
    err = config_error(write(tmp_path, f"[outbox]\nretention_days = {value}\n"))
    assert err.key == "outbox.retention_days"
    assert reason in err.reason


# ----------------------------------------------------------------- customer categories


def test_categories_are_optional_rules_per_category(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[categories.vip]
priority = 50
skip_queue = true
sticky_ring_seconds = 25

[categories.gold]
priority = 10
""",
    )
    settings = load_settings(path, env={})
    assert settings.categories["vip"] == CategoryRule(
        priority=50, skip_queue=True, sticky_ring_seconds=25
    )
    gold = settings.categories["gold"]
    assert (gold.priority, gold.skip_queue, gold.sticky_ring_seconds) == (10, None, None)
    assert load_settings(write(tmp_path, MINIMAL, "bare.toml"), env={}).categories == {}
    example = load_settings(REPO_ROOT / "callbackd.example.toml", env={})
    assert example.categories["vip"].skip_queue is True


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ("[categories.vip]\npriority = 1000", "categories.vip.priority", "999"),
        ("[categories.vip]\nsticky_ring_seconds = 0", "categories.vip.sticky_ring_seconds", "1"),
        ("[categories.vip]\nqueue = 'x'", "categories.vip.queue", "unknown setting"),
        ('[categories."v i p"]\npriority = 1', "categories.v i p", "category names"),
    ],
)
def test_category_rules_are_checked(tmp_path: Path, table: str, key: str, reason: str) -> None:
    err = config_error(write(tmp_path, MINIMAL + "\n" + table + "\n"))
    assert err.key == key
    assert reason.lower() in err.reason.lower()
