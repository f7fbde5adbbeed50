"""The shipped callback dialplan (callbackd-operator and friends) on the real lab Asterisk.

Every test originates exactly as callbackd does: to the operator's queue-member interface
(``Local/op1@lab-operators``), Context callbackd-operator, the contract's variables, and
reads the outcome from the UserEvents alone (CallbackdAttempt per stage, CallbackdResult at
the end), as callbackd's least-privilege account sees them.

Timing: most tests use the one-beep sound for the whisper and the prompts, so the operator's
Read() listens from the answer on and the lab operator's key (after PRESS_AFTER s) lands in
it. The tests of the operator's keys use callbackd's own prompts (installed in the Asterisk
root by the lab) and time them from the files themselves (:func:`sound_seconds`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
import wave
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from callbackd import dialplan_contract as contract
from callbackd.dialplan_contract import Stage
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.driver import AmiMessage, EventCollector, LabDriver

pytestmark = pytest.mark.asterisk

CLIENT = "42"
OPERATOR = "op1"
PRESS_AFTER = 3
"""Seconds after answering at which the lab operator presses its key."""
CLIENT_CHANNEL_PREFIX = f"Local/{CLIENT}@lab-clients-"

BASE_VARIABLES: Mapping[str, str] = {
    contract.VAR_NUMBER: CLIENT,
    contract.VAR_DIAL_PREFIX: "Local/",
    contract.VAR_DIAL_SUFFIX: "@lab-clients",
    contract.VAR_OPERATOR_CONFIRM: "1",
    contract.VAR_CONFIRM_TIMEOUT: "5",
    contract.VAR_CLIENT_RING: "5",
    contract.VAR_CLIENT_CONFIRM: "0",
    contract.VAR_ANNOUNCE: "beep",
    contract.VAR_OPERATOR_PROMPT: "beep",
    contract.VAR_CLIENT_PROMPT: "beep",
}
"""What callbackd sends, with short sounds; a test overrides items (None: not sent)."""


@dataclass(frozen=True)
class Callback:
    """One originated callback attempt."""

    attempt_id: str
    channel_id: str
    """ChannelId of the Originate: the Uniqueid of the operator's channel."""
    response: AmiMessage
    """The OriginateResponse event."""


@dataclass(frozen=True)
class Outcome:
    """What the attempt's UserEvents said."""

    stages: list[str]
    attempts: list[AmiMessage]
    result: AmiMessage

    def header(self, name: str) -> str:
        value = self.result.get(name)
        assert value is not None, f"{contract.RESULT_EVENT} without {name}: {self.result}"
        return value


async def originate_callback(
    driver: LabDriver,
    variables: Mapping[str, str | None] | None = None,
    *,
    operator: str = OPERATOR,
    attempt_id: str | None = None,
    timeout_ms: int = 5000,
) -> Callback:
    """Originate a callback as callbackd does and return once Asterisk says how it went."""
    attempt_id = str(uuid.uuid4()) if attempt_id is None else attempt_id
    channel_id = str(uuid.uuid4())
    merged: dict[str, str | None] = {contract.ORIGINATE_VAR_ATTEMPT_ID: attempt_id}
    merged.update(BASE_VARIABLES)
    merged.update(variables or {})
    messages = await driver.action_list(
        {
            "Action": "Originate",
            "Channel": f"Local/{operator}@lab-operators",
            "Context": contract.OPERATOR_CONTEXT,
            "Exten": contract.OPERATOR_ENTRY_EXTENSION,
            "Priority": str(contract.OPERATOR_ENTRY_PRIORITY),
            "Timeout": str(timeout_ms),
            "CallerID": f'"Callback" <{CLIENT}>',
            "Async": "true",
            "ChannelId": channel_id,
            "OtherChannelId": f"{channel_id};2",
            "Variable": [f"{name}={value}" for name, value in merged.items() if value is not None],
        },
        timeout=timeout_ms / 1000 + 5,
    )
    assert messages[0].success, messages[0]
    (response,) = [m for m in messages[1:] if m.event == "OriginateResponse"]
    return Callback(attempt_id, channel_id, response)


async def reached(events: EventCollector, callback: Callback, stage: Stage) -> AmiMessage:
    """Wait until the attempt's CallbackdAttempt event of ``stage`` arrived.

    The event stays collected, so :func:`outcome` still lists it.
    """

    def is_it(event: AmiMessage) -> bool:
        return (
            event.get("UserEvent") == contract.ATTEMPT_EVENT
            and event.get("Attempt") == callback.attempt_id
            and event.get("Stage") == stage
        )

    async with asyncio.timeout(15):
        while True:
            found = [e for e in events.pending if is_it(e)]
            if found:
                return found[0]
            await asyncio.sleep(0.02)


async def outcome(events: EventCollector, attempt_id: str, timeout: float = 15) -> Outcome:
    """Every stage event of the attempt, in order, up to and including its result."""
    attempts: list[AmiMessage] = []
    while True:
        event = await events.next(
            "UserEvent",
            lambda e: (
                e.get("Attempt") == attempt_id
                and e.get("UserEvent") in (contract.ATTEMPT_EVENT, contract.RESULT_EVENT)
            ),
            timeout=timeout,
        )
        if event["UserEvent"] == contract.RESULT_EVENT:
            assert_result_headers(event)
            return Outcome([e["Stage"] for e in attempts], attempts, event)
        attempts.append(event)


def client_channels(events: EventCollector) -> list[str]:
    """Channels created towards lab clients (Newchannel events collected so far)."""
    return [
        e["Channel"]
        for e in events.pending
        if e.event == "Newchannel" and "@lab-clients-" in (e.get("Channel") or "")
    ]


def client_called(events: EventCollector) -> AmiMessage:
    """The lab client's LabClientCalled event: sent from the client's own channel, so its
    CallerIDNum / CallerIDName are the caller id the client received."""
    (called,) = [
        e for e in events.pending if e.event == "UserEvent" and e["UserEvent"] == "LabClientCalled"
    ]
    return called


def in_root(root: Path, path: str) -> Path:
    """``path`` as Asterisk sees it inside the root: absolute symbolic links (sounds/en ->
    /etc/alternatives/...) are followed relative to the root."""
    resolved = PurePosixPath("/")
    parts = list(PurePosixPath(path).parts[1:])
    for _ in range(100):
        if not parts:
            return root / resolved.relative_to("/")
        resolved = resolved / parts.pop(0)
        host = root / resolved.relative_to("/")
        if host.is_symlink():
            target = PurePosixPath(os.readlink(host))
            base = target if target.is_absolute() else resolved.parent / target
            parts = list(base.parts[1:]) + parts
            resolved = PurePosixPath("/")
    raise AssertionError(f"too many symbolic links under {path}")


def sound_seconds(pbx: LabAsterisk, language: str, *sounds: str) -> float:
    """How long ``sounds`` play in ``language``, from the files Asterisk plays."""
    total = 0.0
    for sound in sounds:
        base = f"/usr/share/asterisk/sounds/{language}/{sound}"
        wav, gsm = in_root(pbx.root, base + ".wav"), in_root(pbx.root, base + ".gsm")
        if wav.is_file():
            with wave.open(str(wav)) as audio:
                total += audio.getnframes() / audio.getframerate()
        else:
            total += gsm.stat().st_size / 1650  # 33 bytes per 20 ms frame
    return total


@contextmanager
def playing_log(pbx: LabAsterisk) -> Iterator[Path]:
    """A log channel of Asterisk's verbose output (level 3: "Playing 'x' (language 'y')")
    for the duration of the block, whatever the instance's own verbosity."""
    name = f"playing-{uuid.uuid4().hex[:8]}.log"
    pbx.cli(f"logger add channel {name} verbose(3)")
    try:
        yield pbx.log_dir / name
    finally:
        pbx.cli(f"logger remove channel {name}")


def seconds_between(first: AmiMessage, second: AmiMessage) -> float:
    return float(second["Timestamp"]) - float(first["Timestamp"])


async def hang_up(driver: LabDriver, channel: str) -> None:
    response = await driver.action({"Action": "Hangup", "Channel": channel})
    assert response.success, response


def assert_result_headers(result: AmiMessage) -> None:
    """The result carries exactly the documented headers, in order, after Asterisk's own."""
    names = [name for name, _ in result.headers]
    start = names.index(contract.HEADER_ATTEMPT)
    assert tuple(names[start:]) == contract.RESULT_HEADERS


# --------------------------------------------------------------------- connected calls


async def test_operator_accepts_client_answers_and_stays_until_the_operator_hangs_up(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "accept", PRESS_AFTER)
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        callback = await originate_callback(ami_driver)
        assert callback.response["Response"] == "Success"
        answered = await reached(events, callback, Stage.CLIENT_ANSWERED)
        await asyncio.sleep(2)
        await hang_up(ami_driver, callback.channel_id)
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    # client_answered comes from the client's channel, which inherited the attempt id.
    assert answered["Channel"].startswith(CLIENT_CHANNEL_PREFIX)
    assert got.attempts[0]["Uniqueid"] == callback.channel_id
    assert got.header("Stage") == Stage.CLIENT_ANSWERED
    assert got.header("DialStatus") == "ANSWER"
    talk_ms = int(got.header("TalkTimeMs"))
    assert 1900 <= talk_ms <= 3000
    # ANSWEREDTIME is the OPERATOR's up time (announcement + press + talk), not talk time.
    answered_time = int(got.header("AnsweredTime"))
    assert answered_time >= talk_ms // 1000 + PRESS_AFTER - 1
    assert int(got.header("DialedTime")) >= answered_time
    assert got.header("HangupSource") == ""  # AMI Hangup of a Local channel
    assert got.result["Uniqueid"] == callback.channel_id


async def test_without_operator_confirmation_a_client_who_hangs_up_is_a_short_call(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "talk")  # never presses a key: not asked to
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(ami_driver, {contract.VAR_OPERATOR_CONFIRM: "0"})
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    assert got.header("Stage") == Stage.CLIENT_ANSWERED
    assert got.header("DialStatus") == "ANSWER"
    assert 900 <= int(got.header("TalkTimeMs")) <= 1600
    assert int(got.header("AnsweredTime")) >= 1
    assert int(got.header("DialedTime")) >= int(got.header("AnsweredTime"))
    assert got.header("HangupSource") == contract.HANGUP_SOURCE_DIALPLAN
    # No key was awaited: the client is dialled right after the whisper (a beep).
    assert seconds_between(got.attempts[0], got.attempts[1]) < 3


async def test_client_who_confirms_is_bridged(pbx: LabAsterisk, ami_driver: LabDriver):
    pbx.set_operator(OPERATOR, "accept", PRESS_AFTER)
    pbx.set_client(CLIENT, "confirm", 1)
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(ami_driver, {contract.VAR_CLIENT_CONFIRM: "1"})
        confirmed = await reached(events, callback, Stage.CLIENT_CONFIRMED)
        await asyncio.sleep(1)
        await hang_up(ami_driver, callback.channel_id)
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [
        Stage.OPERATOR_ANSWERED,
        Stage.CLIENT_DIALING,
        Stage.CLIENT_ANSWERED,
        Stage.CLIENT_CONFIRMED,
    ]
    assert confirmed["Channel"].startswith(CLIENT_CHANNEL_PREFIX)
    assert got.header("Stage") == Stage.CLIENT_CONFIRMED
    assert got.header("DialStatus") == "ANSWER"
    # Talk time starts at the confirmation, not at the client's answer.
    assert 900 <= int(got.header("TalkTimeMs")) <= 1800
    assert int(got.header("AnsweredTime")) >= PRESS_AFTER + 2


async def test_client_who_does_not_press_1_is_declined_and_both_hung_up(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    # The timeout (1 s) is the operator's too: the key comes within the whisper.
    pbx.set_operator(OPERATOR, "accept", 0.5)
    pbx.set_client(CLIENT, "answer")  # answers (an answering machine) and never presses
    async with ami_driver.events("UserEvent", "Hangup") as events:
        callback = await originate_callback(
            ami_driver, {contract.VAR_CLIENT_CONFIRM: "1", contract.VAR_CONFIRM_TIMEOUT: "1"}
        )
        got = await outcome(events, callback.attempt_id)
        client_hangup = await events.next(
            "Hangup", lambda e: e["Channel"].startswith(CLIENT_CHANNEL_PREFIX), timeout=5
        )

    assert got.stages == [
        Stage.OPERATOR_ANSWERED,
        Stage.CLIENT_DIALING,
        Stage.CLIENT_ANSWERED,
        Stage.CLIENT_DECLINED,
    ]
    assert got.attempts[-1]["Channel"].startswith(CLIENT_CHANNEL_PREFIX)
    assert got.header("Stage") == Stage.CLIENT_DECLINED
    # Dial's own DialEnd says ABORT; the DIALSTATUS variable keeps ANSWER.
    assert got.header("DialStatus") == "ANSWER"
    assert got.header("AnsweredTime") == ""
    assert got.header("DialedTime") == ""
    assert got.header("TalkTimeMs") == ""
    assert got.header("HangupSource") == contract.HANGUP_SOURCE_DIALPLAN
    assert client_hangup["Channel"].startswith(CLIENT_CHANNEL_PREFIX)


async def test_client_who_hangs_up_during_the_confirmation_prompt(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "accept", PRESS_AFTER)
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(ami_driver, {contract.VAR_CLIENT_CONFIRM: "1"})
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    # Last stage client_answered although confirmation was on: never put through.
    assert got.header("Stage") == Stage.CLIENT_ANSWERED
    assert got.header("DialStatus") == "ANSWER"
    assert got.header("TalkTimeMs") == ""
    assert int(got.header("AnsweredTime")) >= PRESS_AFTER


@pytest.mark.parametrize(
    ("number", "name"),
    [("+74951234567", "Example Shop"), ("4951234567", None), (None, None)],
    ids=["number-and-name", "number-only", "none"],
)
async def test_the_client_sees_the_campaigns_caller_id_never_their_own_number(
    pbx: LabAsterisk, ami_driver: LabDriver, number: str | None, name: str | None
):
    pbx.set_operator(OPERATOR, "accept", 0.5)
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(
            ami_driver,
            {contract.VAR_CLIENT_CALLERID: number, contract.VAR_CLIENT_CALLERNAME: name},
        )
        got = await outcome(events, callback.attempt_id)
        client = client_called(events)

    assert got.header("DialStatus") == "ANSWER"
    # Read from the client's own channel, as Asterisk presents the call to the client.
    assert client["Channel"].startswith(CLIENT_CHANNEL_PREFIX)
    assert client["CallerIDNum"] != CLIENT
    assert client["CallerIDNum"] == (number or "<unknown>")
    assert client["CallerIDName"] == (name or "<unknown>")


async def test_attempt_id_sent_without_inheritance_still_reaches_the_client_leg(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(CLIENT, "answer", 1)
    attempt_id = str(uuid.uuid4())
    async with ami_driver.events("UserEvent") as events:
        await originate_callback(
            ami_driver,
            {
                contract.ORIGINATE_VAR_ATTEMPT_ID: None,
                contract.VAR_ATTEMPT_ID: attempt_id,
                contract.VAR_OPERATOR_CONFIRM: "0",
            },
            attempt_id=attempt_id,
        )
        got = await outcome(events, attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    assert got.attempts[-1]["Channel"].startswith(CLIENT_CHANNEL_PREFIX)


# --------------------------------------------------------------------- no client call


@pytest.mark.parametrize(
    ("mode", "seconds", "timeout"),
    [("decline", PRESS_AFTER, "5"), ("talk", None, "1")],
    ids=["presses-2", "never-presses"],
)
async def test_operator_who_does_not_press_1_is_hung_up_and_no_client_is_called(
    pbx: LabAsterisk, ami_driver: LabDriver, mode: str, seconds: int | None, timeout: str
):
    pbx.set_operator(OPERATOR, mode, seconds)  # type: ignore[arg-type]
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        callback = await originate_callback(ami_driver, {contract.VAR_CONFIRM_TIMEOUT: timeout})
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.OPERATOR_DECLINED]
    assert got.header("Stage") == Stage.OPERATOR_DECLINED
    assert got.header("DialStatus") == ""
    assert got.header("TalkTimeMs") == ""
    assert got.header("HangupSource") == contract.HANGUP_SOURCE_DIALPLAN
    assert client_channels(events) == []


@pytest.mark.parametrize(
    ("mode", "seconds", "dial_status"),
    [("busy", None, "BUSY"), ("noanswer", None, "NOANSWER"), ("congestion", None, "CONGESTION")],
)
async def test_client_who_does_not_answer(
    pbx: LabAsterisk, ami_driver: LabDriver, mode: str, seconds: int | None, dial_status: str
):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(CLIENT, mode, seconds)  # type: ignore[arg-type]
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(
            ami_driver, {contract.VAR_OPERATOR_CONFIRM: "0", contract.VAR_CLIENT_RING: "2"}
        )
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING]
    assert got.header("Stage") == Stage.CLIENT_DIALING
    assert got.header("DialStatus") == dial_status
    assert got.header("AnsweredTime") == ""
    assert got.header("DialedTime") == ""
    assert got.header("TalkTimeMs") == ""
    assert got.header("HangupSource") == contract.HANGUP_SOURCE_DIALPLAN
    rang = seconds_between(got.attempts[1], got.result)
    if dial_status == "NOANSWER":
        assert 1.9 <= rang <= 3.0  # CALLBACKD_CLIENT_RING
    else:
        assert rang < 1


async def test_dial_string_nobody_can_call_is_chanunavail(pbx: LabAsterisk, ami_driver: LabDriver):
    pbx.set_operator(OPERATOR, "talk")
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(
            ami_driver,
            {contract.VAR_OPERATOR_CONFIRM: "0", contract.VAR_DIAL_SUFFIX: "@lab-nowhere"},
        )
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING]
    assert got.header("DialStatus") == "CHANUNAVAIL"


async def test_operator_who_hangs_up_while_the_client_rings(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(CLIENT, "noanswer")
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(ami_driver, {contract.VAR_OPERATOR_CONFIRM: "0"})
        await reached(events, callback, Stage.CLIENT_DIALING)
        await asyncio.sleep(0.5)
        await hang_up(ami_driver, f"{callback.channel_id};2")  # the operator's phone
        got = await outcome(events, callback.attempt_id)

    assert got.header("Stage") == Stage.CLIENT_DIALING
    assert got.header("DialStatus") == "CANCEL"
    assert got.header("TalkTimeMs") == ""


@pytest.mark.parametrize(("mode", "reason", "ring_ms"), [("away", "3", 2000), ("busy", "5", 5000)])
async def test_operator_who_does_not_answer_gets_no_result_event(
    pbx: LabAsterisk, ami_driver: LabDriver, mode: str, reason: str, ring_ms: int
):
    pbx.set_operator(OPERATOR, mode)  # type: ignore[arg-type]
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(ami_driver, timeout_ms=ring_ms)
        await asyncio.sleep(1)
        sent = [e for e in events.pending if e.get("Attempt") == callback.attempt_id]

    assert callback.response["Response"] == "Failure"
    assert callback.response["Reason"] == reason
    assert sent == []


async def test_operator_who_hangs_up_during_the_announcement(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "accept", PRESS_AFTER)
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        callback = await originate_callback(
            ami_driver,
            {contract.VAR_ANNOUNCE: contract.DEFAULT_ANNOUNCE},  # 1.2 s
        )
        await reached(events, callback, Stage.OPERATOR_ANSWERED)
        await asyncio.sleep(0.5)
        await hang_up(ami_driver, f"{callback.channel_id};2")  # the operator's phone
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED]
    assert got.header("Stage") == Stage.OPERATOR_ANSWERED
    assert got.header("DialStatus") == ""
    assert got.header("AnsweredTime") == ""
    assert got.header("TalkTimeMs") == ""
    assert seconds_between(got.attempts[0], got.result) < 1
    assert client_channels(events) == []


# --------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "variables",
    [
        {contract.VAR_NUMBER: "123@evil"},
        {contract.VAR_NUMBER: "42@lab-operators"},
        {contract.VAR_NUMBER: "42&Local/43"},
        {contract.VAR_NUMBER: ""},
        {contract.VAR_NUMBER: None},
        {contract.VAR_NUMBER: "4 2"},
        {contract.VAR_NUMBER: "+42"},
        {contract.VAR_NUMBER: "42/n"},
        {contract.VAR_NUMBER: "٤٢"},
        {contract.VAR_NUMBER: "${EXTEN}"},
        {contract.VAR_NUMBER: "4" * (contract.MAX_NUMBER_DIGITS + 1)},
        {contract.VAR_DIAL_PREFIX: None},
        {contract.VAR_DIAL_PREFIX: "Local"},
        {contract.VAR_DIAL_PREFIX: "Local/43@lab-clients&Local/"},
        {contract.VAR_DIAL_SUFFIX: "@lab-clients&Local/43@lab-clients"},
        {contract.VAR_DIAL_SUFFIX: "@lab-clients)"},
    ],
    ids=lambda v: ",".join(f"{k}={val!r}" for k, val in v.items()),
)
async def test_invalid_input_dials_nothing(
    pbx: LabAsterisk, ami_driver: LabDriver, variables: dict[str, str | None]
):
    pbx.set_operator(OPERATOR, "accept", 0)
    async with ami_driver.events("UserEvent", "Newchannel", "DialBegin") as events:
        callback = await originate_callback(ami_driver, variables)
        got = await outcome(events, callback.attempt_id)
        dial_begins = [e for e in events.pending if e.event == "DialBegin"]

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.INVALID]
    assert got.header("Stage") == Stage.INVALID
    assert got.header("DialStatus") == ""
    assert got.header("HangupSource") == contract.HANGUP_SOURCE_DIALPLAN
    assert client_channels(events) == []
    # The only Dial was the Originate's own call to the operator.
    assert [(e.get("DestChannel") or "").startswith("Local/op1@") for e in dial_begins] == [True]
    assert "@lab-clients" not in pbx.cli("core show channels")


async def test_invalid_attempt_id_dials_nothing_and_reports_an_empty_attempt(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "accept", 0)
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        await originate_callback(ami_driver, attempt_id="not/valid@all")
        got = await outcome(events, "")

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.INVALID]
    assert got.header("Stage") == Stage.INVALID
    assert client_channels(events) == []


# --------------------------------------------------------------------- defaults


OPTIONAL_VARIABLES = (
    contract.VAR_OPERATOR_CONFIRM,
    contract.VAR_CONFIRM_TIMEOUT,
    contract.VAR_CLIENT_RING,
    contract.VAR_CLIENT_CONFIRM,
    contract.VAR_LANGUAGE,
    contract.VAR_ANNOUNCE,
    contract.VAR_ANNOUNCE_NUMBER,
    contract.VAR_OPERATOR_PROMPT,
    contract.VAR_CLIENT_PROMPT,
    contract.VAR_CLIENT_CALLERID,
    contract.VAR_CLIENT_CALLERNAME,
)
"""Every callback variable with a default (the others make the attempt invalid)."""


def test_optional_variables_are_all_but_the_required_ones():
    required = {
        contract.VAR_ATTEMPT_ID,
        contract.VAR_NUMBER,
        contract.VAR_DIAL_PREFIX,
        contract.VAR_DIAL_SUFFIX,
    }
    assert set(OPTIONAL_VARIABLES) == contract.CALLBACK_VARIABLES - required


@pytest.mark.parametrize(
    "variables",
    [
        dict.fromkeys(OPTIONAL_VARIABLES),
        {
            contract.VAR_OPERATOR_CONFIRM: "yes",
            contract.VAR_CONFIRM_TIMEOUT: "100",
            contract.VAR_CLIENT_RING: "0",
            contract.VAR_CLIENT_CONFIRM: "2",
            contract.VAR_LANGUAGE: "ru/../en",
            contract.VAR_ANNOUNCE: "beep x",
            contract.VAR_ANNOUNCE_NUMBER: "always",
            contract.VAR_OPERATOR_PROMPT: "beep|x",
            contract.VAR_CLIENT_PROMPT: "$[1]",
            contract.VAR_CLIENT_CALLERID: "12ab",
            contract.VAR_CLIENT_CALLERNAME: "Shop<x>",
        },
    ],
    ids=["missing", "garbage"],
)
async def test_safe_defaults(
    pbx: LabAsterisk, ami_driver: LabDriver, variables: dict[str, str | None]
):
    pbx.set_operator(OPERATOR, "accept", 2)  # during the default whisper or prompt
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent", "Newexten") as events:
        callback = await originate_callback(ami_driver, variables)
        got = await outcome(events, callback.attempt_id)
        ran = {
            e["Application"]: e.get("AppData") or ""
            for e in events.pending
            if e.event == "Newexten"
            and e.get("Uniqueid") == callback.channel_id
            and e.get("Context") == contract.OPERATOR_CONTEXT
        }
        client = client_called(events)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    assert "Playback" not in ran
    assert "SayDigits" not in ran
    timeout = contract.DEFAULT_CONFIRM_TIMEOUT
    assert ran["Read"] == (
        f"{contract.VAR_OPERATOR_KEY},{contract.DEFAULT_ANNOUNCE}"
        f"&{contract.DEFAULT_OPERATOR_PROMPT_ON_REQUEST},1,,1,{timeout}"
    )
    confirm = contract.DEFAULT_CLIENT_CONFIRM
    assert ran["Dial"] == (
        f"Local/{CLIENT}@lab-clients,{contract.DEFAULT_CLIENT_RING},"
        f"giU({contract.CLIENT_CONFIRM_CONTEXT}^{callback.channel_id}^{confirm}^{timeout}"
        f"^{contract.DEFAULT_CLIENT_PROMPT}^{contract.DEFAULT_LANGUAGE})"
    )
    assert got.header("DialStatus") == "ANSWER"
    assert client["CallerIDNum"] == "<unknown>"  # cleared: never the client's own number


def test_default_sounds_exist_in_the_asterisk_root(pbx: LabAsterisk):
    chroot = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin")
    assert chroot is not None
    for language in contract.PROMPT_LANGUAGES:
        for sound in (
            contract.DEFAULT_ANNOUNCE,
            contract.DEFAULT_OPERATOR_PROMPT,
            contract.DEFAULT_OPERATOR_PROMPT_ON_REQUEST,
            contract.DEFAULT_CLIENT_PROMPT,
        ):
            # As Asterisk sees it: sounds/<language> is a symlink that resolves in the root.
            path = f"/usr/share/asterisk/sounds/{language}/{sound}.wav"
            found = subprocess.run([chroot, str(pbx.root), "test", "-f", path], check=False)
            assert found.returncode == 0, path
        digits = f"/usr/share/asterisk/sounds/{language}/digits/7.gsm"
        found = subprocess.run([chroot, str(pbx.root), "test", "-f", digits], check=False)
        assert found.returncode == 0, digits


# --------------------------------------------------------------------- the operator's keys
# callbackd's own prompts (no sound overrides): the whisper, the number, the prompt.

LONG_CLIENT = "79161234567"
"""A number long enough to be pressed "during": eleven digits take several seconds."""
DEFAULT_SOUNDS: Mapping[str, str | None] = {
    contract.VAR_ANNOUNCE: None,
    contract.VAR_OPERATOR_PROMPT: None,
    contract.VAR_CLIENT_PROMPT: None,
}
KEY_TO_CLIENT_SECONDS = 1.0
"""The acceptance bound: the client's channel exists within this long after the key."""


def operator_keys(events: EventCollector, callback: Callback) -> list[AmiMessage]:
    """DTMFBegin events of keys the operator's leg received (in callbackd-operator)."""
    return [
        e
        for e in events.pending
        if e.event == "DTMFBegin"
        and e.get("Uniqueid") == callback.channel_id
        and e.get("Direction") == "Received"
    ]


def client_created(events: EventCollector, number: str) -> AmiMessage:
    (created,) = [
        e
        for e in events.pending
        if e.event == "Newchannel"
        and (e.get("Channel") or "").startswith(f"Local/{number}@lab-clients-")
        and (e.get("Channel") or "").endswith(";1")
    ]
    return created


@pytest.mark.parametrize(
    ("announce_number", "press_after", "during"),
    [("on_request", 0.5, "whisper"), ("before_prompt", None, "number")],
    ids=["during-the-whisper", "during-the-number"],
)
async def test_a_key_pressed_during_the_announcement_connects_at_once(
    pbx: LabAsterisk,
    ami_driver: LabDriver,
    announce_number: str,
    press_after: float | None,
    during: str,
):
    whisper = sound_seconds(pbx, "en", contract.DEFAULT_ANNOUNCE)
    number = sound_seconds(pbx, "en", *(f"digits/{d}" for d in LONG_CLIENT))
    if press_after is None:
        press_after = round(whisper + number / 2, 1)  # halfway through the number
    pbx.set_operator(OPERATOR, "accept", press_after)
    pbx.set_client(LONG_CLIENT, "answer", 1)
    variables = {
        **DEFAULT_SOUNDS,
        contract.VAR_NUMBER: LONG_CLIENT,
        contract.VAR_ANNOUNCE_NUMBER: announce_number,
    }
    async with ami_driver.events("UserEvent", "Newchannel", "DTMFBegin") as events:
        callback = await originate_callback(ami_driver, variables)
        got = await outcome(events, callback.attempt_id)
        keys = operator_keys(events, callback)
        created = client_created(events, LONG_CLIENT)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    answered = got.attempts[0]
    key = keys[0]
    pressed_at = seconds_between(answered, key)
    if during == "whisper":
        assert pressed_at < whisper
    else:
        assert whisper < pressed_at < whisper + number
    assert 0 <= seconds_between(key, created) < KEY_TO_CLIENT_SECONDS
    assert seconds_between(key, got.attempts[1]) < KEY_TO_CLIENT_SECONDS


@pytest.mark.parametrize("announce_number", ["on_request", "before_prompt", "off"])
async def test_an_operator_who_never_presses_is_declined_after_the_timeout_from_the_prompts_end(
    pbx: LabAsterisk, ami_driver: LabDriver, announce_number: str
):
    pbx.set_operator(OPERATOR, "talk")
    timeout = 2
    sounds = [contract.DEFAULT_ANNOUNCE]
    if announce_number == "before_prompt":
        sounds += [f"digits/{d}" for d in CLIENT]
    prompt = (
        contract.DEFAULT_OPERATOR_PROMPT_ON_REQUEST
        if announce_number == "on_request"
        else contract.DEFAULT_OPERATOR_PROMPT
    )
    prompts = sound_seconds(pbx, "en", *sounds, prompt)
    variables = {
        **DEFAULT_SOUNDS,
        contract.VAR_ANNOUNCE_NUMBER: announce_number,
        contract.VAR_CONFIRM_TIMEOUT: str(timeout),
    }
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        callback = await originate_callback(ami_driver, variables)
        got = await outcome(events, callback.attempt_id, timeout=30)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.OPERATOR_DECLINED]
    declined_after = seconds_between(got.attempts[0], got.attempts[1])
    # Asterisk waits 50 ms for a key between two prompts of a list: a little slack.
    assert prompts + timeout - 0.2 <= declined_after <= prompts + timeout + 1.0
    assert client_channels(events) == []


async def test_0_says_the_number_then_1_connects(pbx: LabAsterisk, ami_driver: LabDriver):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(LONG_CLIENT, "answer", 1)
    variables = {**DEFAULT_SOUNDS, contract.VAR_NUMBER: LONG_CLIENT}
    digits = "&".join(f"digits/{d}" for d in LONG_CLIENT)
    async with ami_driver.events("UserEvent", "Newexten", "Newchannel") as events:
        callback = await originate_callback(ami_driver, variables)
        operator_phone = f"{callback.channel_id};2"
        await reached(events, callback, Stage.OPERATOR_ANSWERED)
        await asyncio.sleep(0.5)
        await press(ami_driver, operator_phone, "0")

        def number_read(e: AmiMessage) -> bool:
            return (
                e.get("Uniqueid") == callback.channel_id
                and e.get("Application") == "Read"
                and (e.get("AppData") or "").startswith(f"{contract.VAR_OPERATOR_KEY},{digits}&")
            )

        again = await events.next("Newexten", number_read, timeout=5)
        await asyncio.sleep(1.5)  # a few digits in
        await press(ami_driver, operator_phone, "1")
        got = await outcome(events, callback.attempt_id)
        created = client_created(events, LONG_CLIENT)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    # The number, then the same prompt again, all in one interruptible Read.
    prompt = contract.DEFAULT_OPERATOR_PROMPT_ON_REQUEST
    assert again["AppData"] == (
        f"{contract.VAR_OPERATOR_KEY},{digits}&{prompt},1,,1,{BASE_VARIABLES[contract.VAR_CONFIRM_TIMEOUT]}"
    )
    assert 1.4 <= seconds_between(again, created) < 1.5 + KEY_TO_CLIENT_SECONDS


@pytest.mark.parametrize("key", ["0", "2"])
async def test_with_announce_number_off_0_declines_like_any_other_key(
    pbx: LabAsterisk, ami_driver: LabDriver, key: str
):
    pbx.set_operator(OPERATOR, "talk")
    variables = {**DEFAULT_SOUNDS, contract.VAR_ANNOUNCE_NUMBER: "off"}
    async with ami_driver.events("UserEvent", "Newchannel") as events:
        callback = await originate_callback(ami_driver, variables)
        await reached(events, callback, Stage.OPERATOR_ANSWERED)
        await asyncio.sleep(0.5)
        await press(ami_driver, f"{callback.channel_id};2", key)
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.OPERATOR_DECLINED]
    assert seconds_between(got.attempts[0], got.attempts[1]) < 1.5  # at once, mid-whisper
    assert client_channels(events) == []


async def press(driver: LabDriver, channel: str, digit: str) -> None:
    """The operator presses ``digit`` on their phone (the far half of the Local channel)."""
    response = await driver.action(
        # "Async: false": panoramisk 1.4 reads the "DTMF successfully queued" reply as the
        # start of an async list unless the action says it is not one.
        {"Action": "PlayDTMF", "Channel": channel, "Digit": digit, "Async": "false"}
    )
    assert response.success, response


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_the_campaigns_language_plays_its_prompts_on_both_legs(
    pbx: LabAsterisk, ami_driver: LabDriver, language: str
):
    # The operator hears everything (presses during the prompt), the client confirms.
    whisper = sound_seconds(pbx, language, contract.DEFAULT_ANNOUNCE)
    number = sound_seconds(pbx, language, *(f"digits/{d}" for d in CLIENT))
    pbx.set_operator(OPERATOR, "accept", round(whisper + number + 0.5, 1))
    pbx.set_client(CLIENT, "confirm", 1)
    variables = {
        **DEFAULT_SOUNDS,
        contract.VAR_LANGUAGE: language,
        contract.VAR_ANNOUNCE_NUMBER: "before_prompt",
        contract.VAR_CLIENT_CONFIRM: "1",
    }
    with playing_log(pbx) as log:
        async with ami_driver.events("UserEvent") as events:
            callback = await originate_callback(ami_driver, variables)
            await reached(events, callback, Stage.CLIENT_CONFIRMED)
            await hang_up(ami_driver, callback.channel_id)
            got = await outcome(events, callback.attempt_id)
        played = log.read_text(encoding="utf-8")

    assert got.header("Stage") == Stage.CLIENT_CONFIRMED
    operator = f"<Local/{OPERATOR}@lab-operators-"
    client = f"<Local/{CLIENT}@lab-clients-"
    for leg, sound in [
        (operator, contract.DEFAULT_ANNOUNCE),
        *[(operator, f"digits/{d}") for d in CLIENT],
        (operator, contract.DEFAULT_OPERATOR_PROMPT),
        (client, contract.DEFAULT_CLIENT_PROMPT),
    ]:
        lines = [line for line in played.splitlines() if leg in line and f"'{sound}." in line]
        assert lines, (sound, played[-2000:])
        assert all(line.endswith(f"(language '{language}')") for line in lines), lines
    # The files exist in that language's own directory (no fallback to another one).
    for sound in (contract.DEFAULT_ANNOUNCE, contract.DEFAULT_CLIENT_PROMPT):
        path = f"/usr/share/asterisk/sounds/{language}/{sound}.wav"
        assert in_root(pbx.root, path).is_file(), path


# --------------------------------------------------------------------- from-callbackd


@asynccontextmanager
async def outbound_globals(driver: LabDriver, **values: str) -> AsyncIterator[None]:
    """Set [globals] of the lab PBX for one test (CALLBACKD_OUTBOUND_CONTEXT and friends),
    then put back what the lab configures."""
    configured = {contract.VAR_OUTBOUND_CONTEXT: "lab-clients", contract.VAR_TRUNK: ""}
    try:
        for name, value in values.items():
            await set_global(driver, name, value)
        yield
    finally:
        for name, value in configured.items():
            await set_global(driver, name, value)


async def set_global(driver: LabDriver, name: str, value: str) -> None:
    response = await driver.action({"Action": "Setvar", "Variable": name, "Value": value})
    assert response.success, response


DEFAULT_TEMPLATE = {contract.VAR_DIAL_SUFFIX: f"@{contract.OUTBOUND_CONTEXT}"}
"""The default dial_template, Local/{number}@from-callbackd, as prefix and suffix."""


async def test_the_default_dial_template_reaches_the_client_through_the_sites_route(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "accept", 0.5)
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(
            ami_driver, {**DEFAULT_TEMPLATE, contract.VAR_CLIENT_CALLERID: "+74951234567"}
        )
        got = await outcome(events, callback.attempt_id)
        client = client_called(events)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    assert got.header("DialStatus") == "ANSWER"
    # lab [globals] CALLBACKD_OUTBOUND_CONTEXT=lab-clients, as a site sets from-internal.
    assert client["Channel"].startswith(f"Local/{CLIENT}@{contract.OUTBOUND_CONTEXT}-")
    assert client["Number"] == CLIENT
    assert client["CallerIDNum"] == "+74951234567"


@pytest.mark.parametrize(("mode", "dial_status"), [("busy", "BUSY"), ("congestion", "CONGESTION")])
async def test_from_callbackd_passes_busy_and_congestion_back(
    pbx: LabAsterisk, ami_driver: LabDriver, mode: str, dial_status: str
):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(CLIENT, mode)  # type: ignore[arg-type]
    async with ami_driver.events("UserEvent") as events:
        callback = await originate_callback(
            ami_driver, {**DEFAULT_TEMPLATE, contract.VAR_OPERATOR_CONFIRM: "0"}
        )
        got = await outcome(events, callback.attempt_id)

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING]
    assert got.header("DialStatus") == dial_status


async def test_from_callbackd_dials_the_trunk_when_only_a_trunk_is_set(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "talk")
    async with (
        outbound_globals(ami_driver, CALLBACKD_OUTBOUND_CONTEXT="", CALLBACKD_TRUNK="lab-trunk"),
        ami_driver.events("UserEvent", "Newexten") as events,
    ):
        callback = await originate_callback(
            ami_driver, {**DEFAULT_TEMPLATE, contract.VAR_OPERATOR_CONFIRM: "0"}
        )
        got = await outcome(events, callback.attempt_id)
        dials = [
            e["AppData"]
            for e in events.pending
            if e.event == "Newexten"
            and e.get("Context") == contract.OUTBOUND_CONTEXT
            and e.get("Application") == "Dial"
        ]

    assert dials == [f"PJSIP/{CLIENT}@lab-trunk"]
    # The lab loads no chan_pjsip: the trunk is unavailable, passed back as congestion.
    assert got.header("DialStatus") == "CONGESTION"


async def test_from_callbackd_without_a_route_says_what_to_set(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_operator(OPERATOR, "talk")
    before = pbx.messages_log_path.stat().st_size
    async with (
        outbound_globals(ami_driver, CALLBACKD_OUTBOUND_CONTEXT=""),
        ami_driver.events("UserEvent") as events,
    ):
        callback = await originate_callback(
            ami_driver, {**DEFAULT_TEMPLATE, contract.VAR_OPERATOR_CONFIRM: "0"}
        )
        got = await outcome(events, callback.attempt_id)
    with pbx.messages_log_path.open("rb") as handle:
        handle.seek(before)
        logged = handle.read().decode("utf-8", errors="replace")

    assert got.header("DialStatus") == "CONGESTION"
    errors = [line for line in logged.splitlines() if "ERROR" in line and "from-callbackd" in line]
    assert len(errors) == 1, logged
    assert contract.VAR_OUTBOUND_CONTEXT in errors[0]
    assert contract.VAR_TRUNK in errors[0]
