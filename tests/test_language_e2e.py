"""Campaign languages end to end: what the real Asterisk PLAYED, read from its verbose log
("<channel> Playing '<file>.<format>' (language '<lang>')"), on calls placed through the real
daemon, the shipped dialplan and Postgres: the request IVR in Russian and English, reminder
calls with the Russian plural forms, a client-first call's "press 1" in Russian.

These need callbackd's shipped prompts in the lab's sounds directories (en and ru).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callbackd import dialplan_contract as contract
from callbackd.lab.asterisk import LabAsterisk
from callbackd.lab.daemon import lab_settings, running_daemon, wait_until
from callbackd.lab.driver import AmiMessage, LabDriver
from callbackd.services.call_now import assign
from tests.agi_lab import (
    AGI_EVENTS,
    asked,
    crm_campaign,
    free_port,
    fresh_number,
    keys_when_asked,
    on_channel,
    originate,
    press,
)
from tests.test_agi_e2e import agi_address, stored_request
from tests.test_dialer_e2e import add_request, attempts_of, campaign, wait_status
from tests.test_modes_e2e import hotline

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

_PLAYING = re.compile(
    r"<(?P<channel>[^>]+)> Playing '(?P<file>[^']+)\.[a-z0-9]+' \(language '(?P<language>[^']*)'\)"
)


@pytest.fixture(scope="module")
def lab_asterisk() -> Iterator[LabAsterisk]:
    """A lab Asterisk of this module's own that logs what it plays (verbose 3)."""
    lab = LabAsterisk(verbose=3)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def played(pbx: LabAsterisk, channel: str) -> list[tuple[str, str]]:
    """(file, language) of every sound Asterisk played on channels whose name starts with
    ``channel``, in order."""
    text = pbx.messages_log_path.read_text(encoding="utf-8", errors="replace")
    return [
        (m["file"], m["language"])
        for m in _PLAYING.finditer(text)
        if m["channel"].startswith(channel)
    ]


def ivr_settings(pbx: LabAsterisk, database: str, port: int, language: str) -> Any:
    """The request IVR with its shipped prompts (the defaults) in *language*."""
    return lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"sales": crm_campaign(language=language)},
        agi={"listen_port": port, "ivr_digit_timeout_seconds": 3},
    )


@dataclass
class Booking:
    channel: str
    """The caller's channel (the name the verbose log uses)."""
    row: Any
    """The stored request."""
    commands: list[tuple[str, str]]
    """(AGI command, the channel's language when it ended), in order."""


async def _book(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any, language: str, when: str
) -> Booking:
    """A caller orders a callback through the IVR: keeps their number, keys *when*."""
    number = fresh_number()
    port = free_port()
    async with running_daemon(ivr_settings(pbx, database, port, language)) as app:
        async with ami_driver.events(*AGI_EVENTS, "Hangup") as events:
            channel_id = await originate(
                ami_driver, "lab-request-callers", number, variables=agi_address(port)
            )
            caller = f"{channel_id};2"
            await keys_when_asked(ami_driver, events, caller, "1#")
            channel = await keys_when_asked(ami_driver, events, caller, f"{when}#")
            row = await stored_request(db, number)
            await events.next("Hangup", lambda e: e.get("Uniqueid") == caller, timeout=30)
            ended = [
                (str(e.get("Command")), str(e.get("Language")))
                for e in events.pending
                if e.event == "AGIExecEnd" and e.get("Uniqueid") == caller
            ]
        server = app.agi_server
        assert server is not None
        # The route ran to its end: every STREAM FILE found its sound (a missing one fails
        # the command, and the route with it).
        assert (server.stats["completed"], server.stats["failed"]) == (1, 0)
    return Booking(channel, row, ended)


async def test_russian_ivr_plays_russian_prompts_and_reads_the_time_24_hour(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    booking = await _book(pbx, ami_driver, database, db, "ru", "21405")  # tomorrow 14:05
    assert booking.row["preferred_at"] is not None
    # The language first, before anything is played; everything after it in Russian.
    assert booking.commands[0][0] == 'SET VARIABLE CHANNEL(language) "ru"'
    assert {language for _, language in booking.commands[1:]} == {"ru"}
    # "Обратный звонок назначен на завтра, на 14 05" (SAY NUMBER 14, then 0 and 5 as
    # digits), then "thank you".
    assert [command for command, _ in booking.commands][-5:] == [
        f'STREAM FILE {contract.prompt("ivr-booked-for")} ""',
        f'STREAM FILE {contract.prompt("ivr-tomorrow")} ""',
        'SAY NUMBER 14 ""',
        'SAY DIGITS 05 ""',
        f'STREAM FILE {contract.prompt("ivr-thank-you")} ""',
    ]
    # What Asterisk played from files it looked up in the channel's language: the
    # questions' prompts, the number read back and the time, all in Russian.
    sounds = played(pbx, booking.channel)
    assert {language for _, language in sounds} == {"ru"}
    files = [file for file, _ in sounds]
    assert contract.prompt("ivr-confirm-number") in files
    assert contract.prompt("ivr-ask-time") in files
    assert files[-3:] == ["digits/14", "digits/0", "digits/5"]


async def test_english_ivr_reads_the_time_12_hour(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    booking = await _book(pbx, ami_driver, database, db, "en", "21430")  # tomorrow 14:30
    assert booking.commands[0][0] == 'SET VARIABLE CHANNEL(language) "en"'
    *_, booked_for, tomorrow, clock, thanks = [command for command, _ in booking.commands]
    assert booked_for == f'STREAM FILE {contract.prompt("ivr-booked-for")} ""'
    assert tomorrow == f'STREAM FILE {contract.prompt("ivr-tomorrow")} ""'
    assert clock.startswith("SAY DATETIME ")
    assert '"IMp"' in clock
    assert thanks == f'STREAM FILE {contract.prompt("ivr-thank-you")} ""'
    sounds = played(pbx, booking.channel)
    assert {language for _, language in sounds} == {"en"}
    # "Your callback is booked for tomorrow, at 2 30 PM" (Asterisk's own clock reading).
    assert [file for file, _ in sounds][-3:] == ["digits/2", "digits/30", "digits/p-m"]


async def test_a_key_pressed_while_the_number_is_read_back_confirms_it(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    number = fresh_number()
    port = free_port()
    async with (
        running_daemon(ivr_settings(pbx, database, port, "ru")),
        ami_driver.events(*AGI_EVENTS) as events,
    ):
        channel_id = await originate(
            ami_driver, "lab-request-callers", number, variables=agi_address(port)
        )
        caller = f"{channel_id};2"
        # "1" while the number is still being said (SAY DIGITS), "#" once the rest is read.
        reading = await events.next(
            "AGIExecStart",
            lambda e: (
                e.get("Uniqueid") == caller
                and str(e.get("Command", "")).upper().startswith("SAY DIGITS")
            ),
            timeout=20,
        )
        await asyncio.sleep(0.5)
        await press(ami_driver, reading["Channel"], "1")
        channel = await asked(events, caller)
        await press(ami_driver, channel, "#")
        await keys_when_asked(ami_driver, events, caller, "0#")
        row = await stored_request(db, number)
        commands = [
            str(e.get("Command"))
            for e in events.pending
            if e.event == "AGIExecStart" and e.get("Uniqueid") == caller
        ]
    assert row["number"] == f"+{number}"
    assert row["preferred_at"] is None
    # The confirm prompt never had to play: the key was taken during the read-back.
    assert not any("ivr-confirm-number" in c for c in commands)
    assert commands[0] == 'SET VARIABLE CHANNEL(language) "ru"'


async def test_russian_reminders_pick_one_few_many(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    counts = {"op1": 1, "op2": 3, "op3": 5}
    for operator in counts:
        pbx.set_operator(operator, "talk")
    crm = campaign(
        mode="crm_task",
        language="ru",
        crm={
            "reminder_after_seconds": 1,
            "reminder_interval_seconds": 600,
            "reminder_ring_seconds": 5,
        },
    )
    settings = lab_settings(database, pbx.ami_callbackd, campaigns={"crm": crm})
    async with ami_driver.events("UserEvent") as events, running_daemon(settings):
        for operator, count in counts.items():
            for _ in range(count):
                request_id = await add_request(db, fresh_number(), campaign_name="crm")
                await assign(db, request_id, f"Local/{operator}@lab-operators")
        heard: dict[str, AmiMessage] = {}
        while len(heard) < len(counts):
            event = await events.next(
                "UserEvent", lambda e: e.get("UserEvent") == contract.REMINDER_EVENT, timeout=30
            )
            heard[str(event.get("Channel")).split("@", 1)[0].removeprefix("Local/")] = event
    for operator, count in counts.items():
        event = heard[operator]
        assert event.get("Count") == str(count)
        assert event.get("Language") == "ru"
        # The operator's display: a reminder, no client's number.
        assert event.get("CallerIDName") == f"Callback reminder ({count})"
        assert event.get("CallerIDNum") in ("", "<unknown>")
    form = {"op1": "one", "op2": "few", "op3": "many"}
    for operator, count in counts.items():
        sounds = played(pbx, f"Local/{operator}@lab-operators-")
        assert sounds[-3:] == [
            (contract.prompt("reminder-you-have"), "ru"),
            (f"digits/{count}", "ru"),
            (contract.prompt(f"reminder-waiting-{form[operator]}"), "ru"),
        ], operator


async def test_client_first_russian_client_hears_press_1_in_russian(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    pbx.set_operator("default", "away")
    number = fresh_number()
    pbx.set_client(number, "confirm", 2)
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"hotline": hotline(language="ru", client_confirm=True)},
    )
    async with running_daemon(settings):
        request_id = await add_request(db, number, campaign_name="hotline")
        await wait_status(db, request_id, "completed", timeout=30)
    [attempt] = await attempts_of(db, request_id)
    assert attempt["stage"] == "queued"  # the client pressed 1 after the prompt
    await wait_until(
        lambda: bool(played(pbx, f"Local/{number}@lab-clients-")),
        timeout=5,
        what="the client's prompt in the log",
    )
    assert played(pbx, f"Local/{number}@lab-clients-")[0] == (
        contract.DEFAULT_CLIENT_PROMPT,
        "ru",
    )


OFFER_SAMPLE = Path(__file__).resolve().parents[1] / "dialplan" / "queues.d" / "callbackd.conf"


def _add_sample_offer_queue(pbx: LabAsterisk, queue: str) -> None:
    """This module's lab gets a queue made from the shipped queues.conf sample, as a site
    would use it (``[<queue>](callbackd-offer)``)."""
    shutil.copyfile(OFFER_SAMPLE, pbx.etc_dir / "callbackd-offer.conf")
    with (pbx.etc_dir / "queues.conf").open("a", encoding="utf-8") as queues:
        queues.write(
            f'\n#include "callbackd-offer.conf"\n[{queue}](callbackd-offer)\n'
            "strategy = ringall\njoinempty = yes\nleavewhenempty = no\nmusicclass = lab-silence\n"
        )
    pbx.cli("module reload app_queue")


async def test_inbound_caller_waits_in_the_campaigns_language_and_hears_the_shipped_offer(
    pbx: LabAsterisk, ami_driver: LabDriver, database: str, db: Any
) -> None:
    queue = "lab-offer-sample"
    _add_sample_offer_queue(pbx, queue)
    port = free_port()
    settings = lab_settings(
        database,
        pbx.ami_callbackd,
        campaigns={"offer": crm_campaign(queue=queue, language="ru")},
        agi={"listen_port": port},
    )
    async with running_daemon(settings), ami_driver.events("QueueCallerJoin") as events:
        channel_id = await originate(
            ami_driver,
            "lab-inbound-callers",
            fresh_number(),
            variables={**agi_address(port), "LAB_QUEUE": queue},
        )
        join = await events.next("QueueCallerJoin", on_channel(f"{channel_id};2"))
        # callbackd-inbound's lookup set the campaign's language before the caller joined.
        assert join.get("Language") == "ru"
        channel = str(join["Channel"])
        # The sample's first offer comes periodic-announce-startdelay (10 s) after joining.
        await wait_until(lambda: bool(played(pbx, channel)), timeout=20, what="the queue's offer")
    assert played(pbx, channel)[0] == (contract.prompt("queue-offer"), "ru")
