"""Number policy: normalisation, refusal rules, and hostile input (property-based)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbackd.domain.numbers import (
    E164,
    Accepted,
    CallerVerdicts,
    NumberPolicy,
    Refusal,
    Refused,
    classify_caller,
    dial_digits,
    preload_numbering_plan,
)

RU = NumberPolicy.build(
    "RU", blocked_prefixes=["+7809"], blocked_regions=["KZ"], own_numbers=["+7 495 123-45-67"]
)
OPEN = NumberPolicy.build("RU")
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


@settings(max_examples=1000)
@given(
    st.sampled_from(["+7", "+1", "+44", "+49", "+800", "+882", "+998", "8", ""]),
    st.text(alphabet="0123456789", min_size=1, max_size=14),
)
def test_accepted_exactly_when_the_library_says_valid_and_not_premium(
    prefix: str, digits: str
) -> None:
    """The classification asks for the number type once instead of validity and type."""
    raw = prefix + digits
    try:
        parsed = phonenumbers.parse(raw, "RU")
    except phonenumbers.NumberParseException:
        assert classify_caller(raw, OPEN) == Refused(Refusal.INVALID)
        return
    verdict = classify_caller(raw, OPEN)
    if verdict in (Refused(Refusal.EMERGENCY), Refused(Refusal.BAD_CHARACTERS)):
        return
    valid = phonenumbers.is_valid_number(parsed)
    premium = phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.PREMIUM_RATE
    assert isinstance(verdict, Accepted) == (valid and not premium)
    if not valid:
        assert verdict == Refused(Refusal.INVALID)
    elif premium:
        assert verdict == Refused(Refusal.PREMIUM_RATE)
    else:
        assert verdict == Accepted(
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(parsed),
        )


@given(st.from_regex(r"\+[1-9][0-9]{5,14}", fullmatch=True))
def test_dial_digits_is_the_number_without_plus(e164: str) -> None:
    assert dial_digits(e164) == e164[1:]


@pytest.mark.parametrize(
    "value", ["79161234567", "+7916&1234567", "+7916/1@x", "+7,1", "", "+0123"]
)
def test_dial_digits_refuses_anything_not_e164(value: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        dial_digits(value)


def test_every_region_preloads_and_then_accepts_its_own_example_number() -> None:
    """The daemon reads its region's numbering plan ahead of the first caller; that must
    work for every region phonenumbers knows, and leave classification as it was."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        preload_numbering_plan(region)
        policy = NumberPolicy.build(region)
        example = phonenumbers.example_number(region)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        verdict = classify_caller(e164, policy)
        assert isinstance(verdict, Accepted), (region, verdict)
        assert verdict.e164 == e164
        # Regions sharing a calling code (EH and MA, say) may name the other one.
        assert example.country_code is not None
        assert verdict.region in phonenumbers.region_codes_for_country_code(example.country_code)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.none(), st.text(max_size=50), st.from_regex(r"\+?[0-9 ()-]{0,20}")))
def test_remembered_verdicts_are_the_policys_verdicts(raw: str | None) -> None:
    verdicts = CallerVerdicts(RU)
    first = verdicts(raw)
    assert first == classify_caller(raw, RU)
    assert verdicts(raw) == first  # the second time from memory, the same


def test_verdicts_are_worked_out_once_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import callbackd.domain.numbers as numbers

    parsed: list[str | None] = []
    real = numbers.classify_caller

    def counting(raw: str | None, policy: NumberPolicy, **kw: object) -> object:
        parsed.append(raw)
        return real(raw, policy)

    monkeypatch.setattr(numbers, "classify_caller", counting)
    verdicts = CallerVerdicts(RU, size=2)
    verdicts("+79161234567")
    verdicts("+79161234567")
    assert parsed == ["+79161234567"]
    verdicts("+79161234568")
    verdicts("+79161234567")  # used again: now the most recent
    verdicts("+79161234569")  # the third: the least recently used goes
    assert len(verdicts) == 2
    assert "+79161234567" in verdicts
    assert "+79161234568" not in verdicts
    too_long = "1" * 41  # refused as bad characters, never kept
    verdicts(too_long)
    verdicts(too_long)
    assert parsed.count(too_long) == 2
    assert too_long not in verdicts
