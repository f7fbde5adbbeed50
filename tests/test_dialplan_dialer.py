"""The shipped callback dialplan (callbackd-operator and friends) on the real lab Asterisk.

Every test originates exactly as callbackd does: to the operator's queue-member interface
(``Local/op1@lab-operators``), Context callbackd-operator, the contract's variables, and
reads the outcome from the UserEvents alone (CallbackdAttempt per stage, CallbackdResult at
the end), as callbackd's least-privilege account sees them.

Timing (measured): the tests use the one-beep sound for every prompt. With the number "42"
the operator's Read() starts 2.0 s after the answer (beep 0.44 s + "four two"), the lab
operator presses its key after 3 s, inside the Read window (until about 7.5 s). With the
default sounds Read() starts at 3.0 s (telephone-number 1.4 s) and its prompt lasts 2.6 s.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

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
    # No key was awaited: the client is dialled right after beep + "four two".
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
    pbx.set_operator(OPERATOR, "accept", PRESS_AFTER)
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
    ("client_cid", "seen_by_client"),
    [("4951234567", "4951234567"), (None, CLIENT)],
    ids=["client-callerid", "default-is-the-clients-own-number"],
)
async def test_caller_id_the_client_sees(
    pbx: LabAsterisk, ami_driver: LabDriver, client_cid: str | None, seen_by_client: str
):
    pbx.set_operator(OPERATOR, "talk")
    pbx.set_client(CLIENT, "answer", 1)
    async with ami_driver.events("UserEvent", "Hangup") as events:
        callback = await originate_callback(
            ami_driver,
            {contract.VAR_OPERATOR_CONFIRM: "0", contract.VAR_CLIENT_CALLERID: client_cid},
        )
        got = await outcome(events, callback.attempt_id)
        client_side = await events.next(
            "Hangup",
            lambda e: (
                e["Channel"].startswith(CLIENT_CHANNEL_PREFIX) and e["Channel"].endswith(";2")
            ),
            timeout=5,
        )
    assert got.header("DialStatus") == "ANSWER"
    assert client_side["CallerIDNum"] == seen_by_client


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
            {contract.VAR_ANNOUNCE: contract.DEFAULT_ANNOUNCE},  # 1.4 s
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
    contract.VAR_ANNOUNCE,
    contract.VAR_OPERATOR_PROMPT,
    contract.VAR_CLIENT_PROMPT,
    contract.VAR_CLIENT_CALLERID,
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
            contract.VAR_ANNOUNCE: "beep x",
            contract.VAR_OPERATOR_PROMPT: "beep|x",
            contract.VAR_CLIENT_PROMPT: "$[1]",
            contract.VAR_CLIENT_CALLERID: "12ab",
        },
    ],
    ids=["missing", "garbage"],
)
async def test_safe_defaults(
    pbx: LabAsterisk, ami_driver: LabDriver, variables: dict[str, str | None]
):
    pbx.set_operator(OPERATOR, "accept", 4)  # during the default prompt (3.0 s - 5.6 s)
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

    assert got.stages == [Stage.OPERATOR_ANSWERED, Stage.CLIENT_DIALING, Stage.CLIENT_ANSWERED]
    assert ran["Playback"] == contract.DEFAULT_ANNOUNCE
    assert ran["SayDigits"] == CLIENT
    timeout = contract.DEFAULT_CONFIRM_TIMEOUT
    assert ran["Read"] == (
        f"{contract.VAR_OPERATOR_KEY},{contract.DEFAULT_OPERATOR_PROMPT},1,,1,{timeout}"
    )
    confirm = contract.DEFAULT_CLIENT_CONFIRM
    assert ran["Dial"] == (
        f"Local/{CLIENT}@lab-clients,{contract.DEFAULT_CLIENT_RING},"
        f"giU({contract.CLIENT_CONFIRM_CONTEXT}^{callback.channel_id}^{confirm}^{timeout}"
        f"^{contract.DEFAULT_CLIENT_PROMPT})"
    )
    assert got.header("DialStatus") == "ANSWER"


def test_default_sounds_exist_in_the_asterisk_root(pbx: LabAsterisk):
    chroot = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin")
    assert chroot is not None
    for sound in (
        contract.DEFAULT_ANNOUNCE,
        contract.DEFAULT_OPERATOR_PROMPT,
        contract.DEFAULT_CLIENT_PROMPT,
    ):
        # As Asterisk sees it: sounds/en is a symlink that only resolves inside the root.
        path = f"/usr/share/asterisk/sounds/en/{sound}.gsm"
        found = subprocess.run([chroot, str(pbx.root), "test", "-f", path], check=False)
        assert found.returncode == 0, path
