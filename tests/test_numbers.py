"""Number policy: normalisation, refusal rules, and hostile input (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbackd.domain.numbers import (
    E164,
    Accepted,
    NumberPolicy,
    Refusal,
    Refused,
    classify_caller,
    dial_digits,
)

RU = NumberPolicy.build(
    "RU", blocked_prefixes=["+7809"], blocked_regions=["KZ"], own_numbers=["+7 495 123-45-67"]
)
HOSTILE = ["\r", "\n", "&", "/", "@", ",", "${", ";", "|", "'", '"', "\x00", "１", "٣"]


@pytest.mark.parametrize(
    "raw", ["8 (916) 123-45-67", "+79161234567", "79161234567", "9161234567", "+7 916 123 45 67"]
)
def test_national_and_international_forms_are_the_same_person(raw: str) -> None:
    assert classify_caller(raw, RU) == Accepted("+79161234567", "RU")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "  ",
        "anonymous",
        "Anonymous",
        "unknown",
        "<unknown>",
        "Restricted",
        "Private",
        "Unavailable",
        "withheld",
    ],
)
def test_withheld_caller_ids_are_refused(raw: str | None) -> None:
    assert classify_caller(raw, RU) == Refused(Refusal.WITHHELD)


@pytest.mark.parametrize("presentation", ["prohib", "prohib_passed_screen", "unavailable"])
def test_restricted_presentation_is_refused_even_with_a_number(presentation: str) -> None:
    assert classify_caller("+79161234567", RU, presentation=presentation) == Refused(
        Refusal.WITHHELD
    )


def test_allowed_presentation_is_fine() -> None:
    verdict = classify_caller("+79161234567", RU, presentation="allowed_not_screened")
    assert isinstance(verdict, Accepted)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("112", Refusal.EMERGENCY),
        ("01", Refusal.EMERGENCY),
        ("+78091234567", Refusal.PREMIUM_RATE),
        ("+7 495 123 45 67", Refusal.OWN_NUMBER),
        ("+77012345678", Refusal.BLOCKED_REGION),
        ("123", Refusal.INVALID),
        ("+7916", Refusal.INVALID),
        ("+7916&1234567", Refusal.BAD_CHARACTERS),
        ("+7916１２３4567", Refusal.BAD_CHARACTERS),
        ("9" * 10_000, Refusal.BAD_CHARACTERS),
        ("Иван Петров", Refusal.BAD_CHARACTERS),
    ],
)
def test_refusals_name_their_reason(raw: str, reason: Refusal) -> None:
    assert classify_caller(raw, RU) == Refused(reason)


def test_blocked_prefix() -> None:
    policy = NumberPolicy.build("RU", blocked_prefixes=["7916"])
    assert classify_caller("+79161234567", policy) == Refused(Refusal.BLOCKED_PREFIX)
    assert isinstance(classify_caller("+79261234567", policy), Accepted)


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_any_text_gives_a_verdict_and_accepted_is_pure_e164(raw: str) -> None:
    verdict = classify_caller(raw, RU)
    if isinstance(verdict, Accepted):
        assert E164.fullmatch(verdict.e164)
        assert dial_digits(verdict.e164).isdigit()


@settings(max_examples=300)
@given(
    st.sampled_from(["+79161234567", "8 (916) 123-45-67", "+12025550143"]),
    st.sampled_from(HOSTILE),
    st.integers(min_value=0, max_value=15),
)
def test_hostile_characters_anywhere_are_never_accepted(base: str, bad: str, at: int) -> None:
    at = min(at, len(base))
    assert isinstance(classify_caller(base[:at] + bad + base[at:], RU), Refused)


@given(st.from_regex(r"\+[1-9][0-9]{5,14}", fullmatch=True))
def test_dial_digits_is_the_number_without_plus(e164: str) -> None:
    assert dial_digits(e164) == e164[1:]


@pytest.mark.parametrize(
    "value", ["79161234567", "+7916&1234567", "+7916/1@x", "+7,1", "", "+0123"]
)
def test_dial_digits_refuses_anything_not_e164(value: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        dial_digits(value)
