"""What the client and the operator see: the campaign's caller id, the dialled number's form,
and the Originate the dialer builds from them (pure logic; the real calls are in
tests/test_dialplan_dialer.py and tests/test_dialer_e2e.py)."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest

from callbackd import dialplan_contract as contract
from callbackd.domain.caller_id import CallerId, operator_display_name, parse_caller_id
from callbackd.domain.numbers import dial_number
from callbackd.services.client_first import ClientFirstDialer
from callbackd.services.dialer import Dialer, DialerCampaign, _Call
from callbackd.settings import Campaign

# --------------------------------------------------------------------- caller_id


@pytest.mark.parametrize(
    ("text", "name", "number"),
    [
        ('"Shop" <+74951234567>', "Shop", "+74951234567"),
        ('  "Example Shop"<74951234567> ', "Example Shop", "74951234567"),
        ("Shop <+74951234567>", "Shop", "+74951234567"),
        ("<+74951234567>", "", "+74951234567"),
        ("+74951234567", "", "+74951234567"),
        ("4951234567", "", "4951234567"),
    ],
)
def test_caller_id_forms(text: str, name: str, number: str) -> None:
    assert parse_caller_id(text) == CallerId(name=name, number=number)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Shop",
        '"Shop" <>',
        '"Shop" <+7 495 123-45-67>',  # write the digits only
        '"Shop" <74951234567@evil>',
        '"Shop" <7495+1234567>',
        "1" * 33,
        '"Shop, Inc" <+74951234567>',  # a comma would split the Originate variable
        '"Shop\r\nChannel: x" <+74951234567>',
        '"Магазин" <+74951234567>',  # carriers pass ASCII names only
        '"' + "x" * (contract.MAX_CALLERID_NAME_LENGTH + 1) + '" <+74951234567>',
    ],
)
def test_unsafe_caller_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"name|number"):
        parse_caller_id(text)


def test_the_parsed_parts_pass_the_dialplans_own_checks() -> None:
    parsed = parse_caller_id('"Example Shop-2 v.1_x" <+74951234567>')
    assert set(parsed.number) <= set(contract.CALLERID_NUMBER_CHARACTERS)
    assert len(parsed.number) <= contract.MAX_CALLERID_NUMBER_LENGTH
    assert set(parsed.name) <= set(contract.CALLERID_NAME_CHARACTERS)
    assert parsed.originate_header() == '"Example Shop-2 v.1_x" <+74951234567>'
    assert parse_caller_id("+74951234567").originate_header() == "+74951234567"


@pytest.mark.parametrize(
    ("queue", "shown"),
    [
        ("sales", "Callback sales"),
        ("Sales+Support", "Callback SalesSupport"),
        ('a"b<c>d,e', "Callback abcde"),
        ("q" * 80, ("Callback " + "q" * 80)[: contract.MAX_CALLERID_NAME_LENGTH]),
    ],
)
def test_what_the_operators_phone_shows(queue: str, shown: str) -> None:
    assert operator_display_name(queue) == shown


# --------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "template",
    [
        "Local/{number}@from-callbackd",
        "Local/{number}@from-callbackd/n",
        "PJSIP/{number}@trunk",
        "SIP/trunk/{number}",
        "IAX2/provider/{number}",
    ],
)
def test_caller_id_is_required_when_the_template_reaches_a_trunk(template: str) -> None:
    with pytest.raises(ValueError, match="caller_id") as raised:
        Campaign(dial_template=template)
    assert "reaches a trunk" in str(raised.value)
    assert Campaign(dial_template=template, caller_id="+74951234567").dial_template_reaches_a_trunk


@pytest.mark.parametrize(
    "template", ["Local/{number}@lab-clients", "Local/{number}@my-routing/n", "local/{number}@x"]
)
def test_other_local_contexts_may_leave_caller_id_unset(template: str) -> None:
    campaign = Campaign(dial_template=template)
    assert campaign.presented_caller_id is None
    assert not campaign.dial_template_reaches_a_trunk


def test_a_bad_caller_id_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="digits"):
        Campaign(caller_id='"Shop" <call-me>')


def test_campaign_prompt_settings() -> None:
    campaign = Campaign(
        caller_id="+74951234567",
        operator_prompt="custom/press-1",
        language="ru",
        announce_number="before_prompt",
        dial_number_format="national",
    )
    assert campaign.operator_prompt == "custom/press-1"
    assert campaign.dial_number_format == "national"
    with pytest.raises(ValueError, match="operator_prompt"):
        Campaign(caller_id="+74951234567", operator_prompt="a,b")
    with pytest.raises(ValueError, match="dial_number_format"):
        Campaign(caller_id="+74951234567", dial_number_format="local")


# --------------------------------------------------------------------- number format


@pytest.mark.parametrize(
    ("e164", "region", "national"),
    [
        ("+79161234567", "RU", "89161234567"),
        ("+74951234567", "RU", "84951234567"),
        ("+442071234567", "RU", "810442071234567"),
        ("+442071234567", "GB", "02071234567"),
        ("+79161234567", "GB", "0079161234567"),
        ("+12025550143", "US", "12025550143"),  # NANP long distance: 1 + ten digits
    ],
)
def test_national_format_is_what_a_phone_in_the_region_dials(
    e164: str, region: str, national: str
) -> None:
    assert dial_number(e164, "national", region) == national
    assert dial_number(e164, "e164", region) == e164[1:]


@pytest.mark.parametrize("value", ["79161234567", "+7916&1", "", "+7916@x"])
def test_dial_number_refuses_anything_not_e164(value: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        dial_number(value, "national", "RU")


# --------------------------------------------------------------------- the Originates


def _call(campaign: Campaign, number: str = "+79161234567") -> _Call:
    attempt = SimpleNamespace(
        id=uuid.uuid4(),
        number=number,
        operator_channel_id="callbackd-op",
        client_channel_id="callbackd-cl",
        request_id=1,
    )
    return _Call(
        attempt=cast(Any, attempt),
        campaign=DialerCampaign(id=1, name="sales", settings=campaign, region="RU"),
        operator="Local/op1@lab-operators",
        result=cast(Any, None),
    )


def _variables(headers: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in headers["Variable"])


def _dialer(cls: type[Dialer], campaign: Campaign) -> Dialer:
    return cls(
        pool=None,
        links={},
        boards={},
        campaigns=[DialerCampaign(id=1, name="sales", settings=campaign)],
        instance="t",
    )


def test_the_operator_first_originate_carries_the_new_flow() -> None:
    campaign = Campaign(
        queue="lab-sales",
        caller_id='"Example Shop" <+74951234567>',
        language="ru",
        announce_number="before_prompt",
        operator_prompt="custom/press-1",
        dial_number_format="national",
    )
    headers = _dialer(Dialer, campaign)._originate(_call(campaign))
    variables = _variables(headers)
    assert headers["CallerID"] == '"Callback lab-sales" <89161234567>'
    assert variables[contract.VAR_NUMBER] == "89161234567"
    assert variables[contract.VAR_LANGUAGE] == "ru"
    assert variables[contract.VAR_ANNOUNCE_NUMBER] == "before_prompt"
    assert variables[contract.VAR_OPERATOR_PROMPT] == "custom/press-1"
    assert variables[contract.VAR_CLIENT_CALLERID] == "+74951234567"
    assert variables[contract.VAR_CLIENT_CALLERNAME] == "Example Shop"
    assert contract.VAR_ANNOUNCE not in variables  # the dialplan's default whisper
    sent = {name.lstrip("_") for name in variables}
    assert sent <= contract.CALLBACK_VARIABLES
    # Every value is safe in an Originate "Variable:" line (no ',' CR or LF).
    assert all(re.fullmatch(r"[^,\r\n]*", value) for value in variables.values())


def test_without_a_caller_id_the_client_leg_is_cleared_never_the_clients_number() -> None:
    campaign = Campaign(queue="lab-sales", dial_template="Local/{number}@lab-clients")
    variables = _variables(_dialer(Dialer, campaign)._originate(_call(campaign)))
    assert variables[contract.VAR_CLIENT_CALLERID] == ""
    assert variables[contract.VAR_CLIENT_CALLERNAME] == ""
    assert variables[contract.VAR_NUMBER] == "79161234567"  # e164 by default


def test_client_first_presents_the_parsed_caller_id_or_none() -> None:
    with_id = Campaign(
        queue="lab-sales", mode="client_first", caller_id='"Example Shop" <+74951234567>'
    )
    headers = _dialer(ClientFirstDialer, with_id)._originate(_call(with_id))
    assert headers["CallerID"] == '"Example Shop" <+74951234567>'
    assert headers["Channel"] == "Local/79161234567@from-callbackd"
    without = Campaign(
        queue="lab-sales", mode="client_first", dial_template="Local/{number}@lab-clients"
    )
    assert "CallerID" not in _dialer(ClientFirstDialer, without)._originate(_call(without))
