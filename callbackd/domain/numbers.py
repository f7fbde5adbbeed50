"""Number policy: which caller ids become callback requests, and in what form.

Everything a caller id can carry ends up, sooner or later, in an Originate or a dial
string, where ``&``, ``/``, ``@``, ``,`` or a CR/LF change what gets dialled. So the rule is
strict: the input may hold only ASCII digits, one leading ``+`` and the usual formatting
(spaces, dashes, dots, brackets); it must parse to a valid number for the configured
region; the output is E.164 and nothing else is ever stored.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, shortnumberinfo

E164 = re.compile(r"\+[1-9][0-9]{5,14}")  # always used with fullmatch
_DIAL_DIGITS = re.compile(r"[0-9]{1,32}")
_FORMATTED = re.compile(r"\+?[0-9 ().\-]{1,40}")
MAX_INPUT_LENGTH = 40

WITHHELD_MARKERS = frozenset(
    {
        "anonymous",
        "unknown",
        "<unknown>",
        "restricted",
        "private",
        "unavailable",
        "withheld",
        "blocked",
        "no caller id",
    }
)


class Refusal(StrEnum):
    WITHHELD = "withheld"
    BAD_CHARACTERS = "bad_characters"
    INVALID = "invalid"
    EMERGENCY = "emergency"
    PREMIUM_RATE = "premium_rate"
    BLOCKED_PREFIX = "blocked_prefix"
    BLOCKED_REGION = "blocked_region"
    OWN_NUMBER = "own_number"


@dataclass(frozen=True)
class Accepted:
    e164: str
    region: str | None


@dataclass(frozen=True)
class Refused:
    reason: Refusal


Verdict = Accepted | Refused


@dataclass(frozen=True)
class NumberPolicy:
    """The site's rules, built once from the settings."""

    default_region: str
    blocked_prefixes: tuple[str, ...] = ()
    blocked_regions: frozenset[str] = frozenset()
    own_numbers: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        default_region: str,
        *,
        blocked_prefixes: Iterable[str] = (),
        blocked_regions: Iterable[str] = (),
        own_numbers: Iterable[str] = (),
    ) -> NumberPolicy:
        """Normalise the configured lists (prefixes without '+', own numbers as E.164)."""
        own: set[str] = set()
        for raw in own_numbers:
            verdict = _parse(raw, default_region)
            if isinstance(verdict, Accepted):
                own.add(verdict.e164)
        return cls(
            default_region=default_region.upper(),
            blocked_prefixes=tuple(p.lstrip("+") for p in blocked_prefixes if p.strip("+")),
            blocked_regions=frozenset(r.upper() for r in blocked_regions),
            own_numbers=frozenset(own),
        )


def preload_numbering_plan(region: str) -> None:
    """Read and compile the region's numbering plan now rather than on the first abandon.

    phonenumbers loads a region's tables and compiles their patterns on first use: the
    daemon's first caller would otherwise wait about 3 ms more for their callback. A
    one-number process (classic AGI) has nothing to gain and does not call this.
    """
    region = region.upper()
    for kind in PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        _parse(e164, region)
        _is_emergency(phonenumbers.national_significant_number(example), region)


def is_withheld(raw: str | None, presentation: str | None = None) -> bool:
    """Asterisk's and carriers' ways of saying 'no number' (also restricted presentation)."""
    if presentation:
        pres = presentation.strip().lower()
        if pres.startswith("prohib") or pres == "unavailable" or "restricted" in pres:
            return True
    if raw is None:
        return True
    text = raw.strip().lower()
    return not text or text in WITHHELD_MARKERS


def classify_caller(
    raw: str | None, policy: NumberPolicy, *, presentation: str | None = None
) -> Verdict:
    """Decide whether a caller id may be called back, and its E.164 form if so."""
    if is_withheld(raw, presentation):
        return Refused(Refusal.WITHHELD)
    assert raw is not None
    text = raw.strip(" ")  # only spaces: a CR/LF or tab around a number means a forged id
    if len(text) > MAX_INPUT_LENGTH or not text.isascii() or not _FORMATTED.fullmatch(text):
        return Refused(Refusal.BAD_CHARACTERS)
    digits = text.lstrip("+")
    if not text.startswith("+") and _is_emergency(digits, policy.default_region):
        return Refused(Refusal.EMERGENCY)
    verdict = _parse(text, policy.default_region)
    if isinstance(verdict, Refused):
        return verdict
    e164 = verdict.e164
    if verdict.region and verdict.region in policy.blocked_regions:
        return Refused(Refusal.BLOCKED_REGION)
    if any(e164[1:].startswith(prefix) for prefix in policy.blocked_prefixes):
        return Refused(Refusal.BLOCKED_PREFIX)
    if e164 in policy.own_numbers:
        return Refused(Refusal.OWN_NUMBER)
    return verdict


class CallerVerdicts:
    """:func:`classify_caller` under one policy, remembered for the latest caller ids.

    A verdict depends on nothing but the caller id and the policy, so it can be worked out
    while the caller still waits in the queue and read back when they hang up: the parse
    (about a third of a millisecond) then leaves the callback's critical path. Bounded: past
    *size* entries the least recently used goes; ids too long to be numbers are not kept.
    """

    def __init__(self, policy: NumberPolicy, *, size: int = 4096) -> None:
        self.policy = policy
        self._size = size
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verdicts)

    def __contains__(self, raw: object) -> bool:
        return raw in self._verdicts

    def __call__(self, raw: str | None) -> Verdict:
        if raw is None or len(raw) > MAX_INPUT_LENGTH:
            return classify_caller(raw, self.policy)
        verdict = self._verdicts.get(raw)
        if verdict is not None:
            self._verdicts.move_to_end(raw)
            return verdict
        verdict = classify_caller(raw, self.policy)
        self._verdicts[raw] = verdict
        if len(self._verdicts) > self._size:
            self._verdicts.popitem(last=False)
        return verdict


def _is_emergency(digits: str, region: str) -> bool:
    cleaned = re.sub(r"[^0-9]", "", digits)
    return bool(cleaned) and shortnumberinfo.is_emergency_number(cleaned, region)


def _parse(text: str, region: str) -> Verdict:
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException:
        return Refused(Refusal.INVALID)
    # number_type is UNKNOWN exactly when is_valid_number is false; asking once halves the
    # metadata lookups (each a regex walk over the region's patterns, on the abandon's path).
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.UNKNOWN:
        return Refused(Refusal.INVALID)
    if kind == PhoneNumberType.PREMIUM_RATE:
        return Refused(Refusal.PREMIUM_RATE)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not E164.fullmatch(e164):
        return Refused(Refusal.BAD_CHARACTERS)
    return Accepted(e164=e164, region=phonenumbers.region_code_for_number(parsed))


def dial_digits(e164: str) -> str:
    """The only form of a number that goes into a dial string or channel variable.

    Raises ``ValueError`` for anything that is not E.164 -- including hostile values that
    were written into the database by hand.
    """
    if not E164.fullmatch(e164):
        raise ValueError("not an E.164 number")
    return e164[1:]


DIAL_NUMBER_FORMATS = ("e164", "national")
"""How a number is dialled: ``e164`` its E.164 digits without ``+``; ``national`` as a phone
in the site's region dials it (RU: +79161234567 -> 89161234567, +442071234567 ->
81044...), the national prefix for local numbers and the international prefix otherwise."""


def dial_number(e164: str, number_format: str, region: str) -> str:
    """The digits that go into the dial string and CALLBACKD_NUMBER for one client.

    Raises ``ValueError`` for anything that is not E.164 (as :func:`dial_digits`) or a
    format that gives anything but 1-32 ASCII digits.
    """
    digits = dial_digits(e164)
    if number_format == "e164":
        return digits
    if number_format != "national":
        raise ValueError(f"unknown dial number format {number_format!r}")
    parsed = phonenumbers.parse(e164, None)
    text = phonenumbers.format_out_of_country_calling_number(parsed, region.upper())
    dialled = re.sub(r"[^0-9]", "", text)
    if not _DIAL_DIGITS.fullmatch(dialled):
        raise ValueError("the national form of the number is not 1-32 digits")
    return dialled
