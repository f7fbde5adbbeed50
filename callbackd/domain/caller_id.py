"""The caller ID a campaign presents to its clients, parsed once from the configuration.

``caller_id = '"Shop" <+74951234567>'`` or a bare ``+74951234567``. The parts travel to the
PBX as channel variables (operator-first) or an Originate ``CallerID`` header (client-first),
so both are held to what the shipped dialplan accepts (dialplan_contract): a number of 1-32
digits with at most one leading ``+``, a name of plain ASCII letters, digits, spaces and
``_ . -``. Anything else is refused with a message that says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callbackd import dialplan_contract as contract

_NUMBER = re.compile(r"\+?[0-9]{1,31}")
_NAME = re.compile(rf"[0-9A-Za-z _.-]{{1,{contract.MAX_CALLERID_NAME_LENGTH}}}")
_QUOTED = re.compile(r'"(?P<name>[^"]*)"\s*<(?P<number>[^<>]*)>')
_UNQUOTED = re.compile(r"(?P<name>[^\"<>]*?)\s*<(?P<number>[^<>]*)>")


@dataclass(frozen=True)
class CallerId:
    """A presentation name (may be empty) and number, both safe for AMI and the dialplan."""

    name: str
    number: str

    def originate_header(self) -> str:
        """The AMI Originate ``CallerID`` value: ``"name" <number>`` or the bare number."""
        return f'"{self.name}" <{self.number}>' if self.name else self.number


def parse_caller_id(text: str) -> CallerId:
    """``"Name" <number>``, ``Name <number>`` or a bare number; ValueError if unsafe."""
    value = text.strip()
    match = _QUOTED.fullmatch(value) or _UNQUOTED.fullmatch(value)
    if match is None:
        name, number = "", value
    else:
        name, number = match["name"].strip(), match["number"].strip()
    if not _NUMBER.fullmatch(number):
        raise ValueError(
            f"{text!r}: the number must be 1-32 digits with an optional leading + "
            "(e.g. '\"Shop\" <+74951234567>' or '+74951234567')"
        )
    if name and not _NAME.fullmatch(name):
        raise ValueError(
            f"{text!r}: the name may hold only {contract.MAX_CALLERID_NAME_LENGTH} ASCII "
            "letters, digits, spaces and _ . - (carriers pass little else)"
        )
    return CallerId(name=name, number=number)


def operator_display_name(queue: str) -> str:
    """What the operator's phone shows as the caller's name: a callback, and for which queue.

    Only characters that are safe inside a quoted AMI CallerID, bounded so phones show it.
    """
    safe = re.sub(r"[^0-9A-Za-z _.-]", "", queue)
    return f"Callback {safe}".strip()[: contract.MAX_CALLERID_NAME_LENGTH]
