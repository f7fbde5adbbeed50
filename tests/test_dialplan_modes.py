"""The dialer-mode contexts of the shipped dialplan keep the contract's promises."""

from __future__ import annotations

import re

import pytest

from callbackd import dialplan_contract as contract
from callbackd.dialplan_contract import ClientFirstStage
from tests.test_dialplan_contract import _USER_EVENT, CODE, HEADER, SHIPPED, _context, _lines

MODES_HEADER = HEADER.split("; Dialer modes", 1)[1]


@pytest.mark.parametrize(
    ("event", "headers"),
    [
        (contract.CLIENT_FIRST_EVENT, contract.CLIENT_FIRST_HEADERS),
        (contract.CLIENT_FIRST_RESULT_EVENT, contract.CLIENT_FIRST_HEADERS),
        (contract.CALLER_PAYS_EVENT, contract.CALLER_PAYS_HEADERS),
        (contract.REMINDER_EVENT, contract.REMINDER_HEADERS),
    ],
)
def test_mode_events_send_the_contract_headers(event: str, headers: tuple[str, ...]) -> None:
    sent = [body for name, body in _USER_EVENT.findall(CODE) if name == event]
    assert sent
    for body in sent:
        assert tuple(item.split(":", 1)[0] for item in body.split(",")[1:]) == headers
    assert event in MODES_HEADER


def test_mode_contexts_and_variables_are_documented_in_their_section() -> None:
    documented = set(re.findall(r"^;   (callbackd-[a-z-]+) ", MODES_HEADER, re.MULTILINE))
    assert documented == set(contract.MODE_CONTEXTS)
    for variable in contract.MODE_VARIABLES:
        assert variable in MODES_HEADER, variable


def test_client_first_reports_first_and_always() -> None:
    lines = _lines(_context(contract.CLIENT_FIRST_CONTEXT))
    assert lines[0] == (
        f"exten => s,1,Set(CHANNEL(hangup_handler_push)={contract.CLIENT_FIRST_REPORT_CONTEXT},s,1)"
    )
    assert lines[1] == (
        f"same => n,Set({contract.VAR_CLIENT_STAGE}={ClientFirstStage.CLIENT_ANSWERED})"
    )
    assert _lines(_context(contract.CLIENT_FIRST_REPORT_CONTEXT))[-1] == "same => n,Return()"


def test_client_first_stages_match_the_contract() -> None:
    context = _context(contract.CLIENT_FIRST_CONTEXT)
    reached = set(re.findall(rf"Set\({contract.VAR_CLIENT_STAGE}=([a-z_]+)\)", context))
    assert reached == {stage.value for stage in ClientFirstStage}
    documented = MODES_HEADER.split("; Client-first stages:", 1)[1]
    for stage in ClientFirstStage:
        assert re.search(rf"^;   {stage.value} ", documented, re.MULTILINE), stage


def test_client_first_checks_every_input_before_the_queue_or_the_landing() -> None:
    context = _context(contract.CLIENT_FIRST_CONTEXT)
    assert context.index(f"REPLACE({contract.VAR_NUMBER},") < context.index("CALLERID(num)=")
    checks = context.index(f"REPLACE({contract.VAR_TARGET_QUEUE},")
    assert checks < context.index("Gosub(callbackd-queue,s,1(")
    assert context.index(f"REPLACE({contract.VAR_LANDING},") < context.index("Goto(${")
    assert f"Set(QUEUE_PRIO=${{{contract.VAR_QUEUE_PRIO}}})" in context
    assert context.index(f"REPLACE({contract.VAR_QUEUE_PRIO},") < context.index("QUEUE_PRIO=")


def test_caller_pays_never_answers() -> None:
    context = _context(contract.CALLER_PAYS_CONTEXT)
    # Anything that answers a channel (or plays media on it) would make the caller pay.
    for app in ("Answer(", "Playback(", "Background(", "Read(", "Say", "Wait(", "Progress("):
        assert app not in context, app
    lines = _lines(context)
    assert lines[-1] == f"same => n,Hangup(${{{contract.VAR_REJECT_CAUSE}}})"
    assert any(
        f"Set({contract.VAR_REJECT_CAUSE}={contract.DEFAULT_REJECT_CAUSE})" in line
        for line in lines
    )


def test_reminder_says_the_checked_count() -> None:
    context = _context(contract.REMINDER_CONTEXT)
    assert context.index(f"REPLACE({contract.VAR_REMINDER_COUNT},") < context.index("SayNumber(")
    assert context.index("SayNumber(") < context.index(f"UserEvent({contract.REMINDER_EVENT}")


def test_caller_pays_writes_its_queue_log_line_from_checked_values_before_reporting() -> None:
    context = _context(contract.CALLER_PAYS_CONTEXT)
    # The line carries exactly the values the UserEvent reports, in the contract's order.
    [body] = [
        body for name, body in _USER_EVENT.findall(CODE) if name == contract.CALLER_PAYS_EVENT
    ]
    reported = dict(item.split(": ", 1) for item in body.split(",")[1:])
    data = "|".join(reported[name] for name in contract.CALLER_PAYS_QUEUE_LOG_DATA)
    queue_log = (
        f"TryExec(QueueLog({contract.CALLER_PAYS_QUEUE_LOG_QUEUE},${{UNIQUEID}},"
        f"{contract.CALLER_PAYS_QUEUE_LOG_AGENT},{contract.CALLER_PAYS_QUEUE_LOG_EVENT},{data}))"
    )
    assert context.count("QueueLog(") == 1
    assert queue_log in context
    # Both values were counted against the contract's characters and limits first ...
    for variable, characters, longest in (
        (
            contract.VAR_CAMPAIGN,
            contract.CAMPAIGN_NAME_CHARACTERS,
            contract.MAX_CAMPAIGN_NAME_LENGTH,
        ),
        (contract.VAR_CALLER, contract.CALLER_CHARACTERS, contract.MAX_CALLER_LENGTH),
    ):
        check = f"REPLACE({variable},{characters})"
        assert check in context, check
        assert f"{{{variable}}})}} > {longest}" in context, variable
        assert context.index(check) < context.index(queue_log)
    # ... and the durable line is written before the live report and the rejection.
    assert context.index(queue_log) < context.index(f"UserEvent({contract.CALLER_PAYS_EVENT},")
    assert context.index(queue_log) < context.index("Hangup(")


def test_queue_log_events_match_and_are_documented() -> None:
    written = set(re.findall(r"QueueLog\([^,]*,[^,]*,[^,]*,([A-Z_]+),", CODE))
    assert written == set(contract.QUEUE_LOG_EVENTS)
    assert len(re.findall(r"QueueLog\(", CODE)) == len(contract.QUEUE_LOG_EVENTS)
    line = (
        f"<epoch>|<Uniqueid>|{contract.CALLER_PAYS_QUEUE_LOG_QUEUE}|"
        f"{contract.CALLER_PAYS_QUEUE_LOG_AGENT}|{contract.CALLER_PAYS_QUEUE_LOG_EVENT}|"
        "<campaign>|<number>"
    )
    assert line in MODES_HEADER


def _language_check() -> str:
    return (
        f"${{LEN(${{{contract.VAR_LANGUAGE}}})}} < {contract.MIN_LANGUAGE_LENGTH} | "
        f"${{LEN(${{{contract.VAR_LANGUAGE}}})}} > {contract.MAX_LANGUAGE_LENGTH} | "
        f"${{LEN(${{REPLACE({contract.VAR_LANGUAGE},{contract.LANGUAGE_CHARACTERS})}})}} != 0"
    )


@pytest.mark.parametrize("name", [contract.CLIENT_FIRST_CONTEXT, contract.REMINDER_CONTEXT])
def test_the_language_is_checked_then_applied_before_anything_is_played(name: str) -> None:
    context = _context(name)
    check = (
        f"ExecIf($[{_language_check()}]?Set({contract.VAR_LANGUAGE}={contract.DEFAULT_LANGUAGE}))"
    )
    applied = f"Set(CHANNEL(language)=${{{contract.VAR_LANGUAGE}}})"
    assert context.count(check) == 1
    assert context.index(check) < context.index(applied)
    # The value's first use is the check, counting characters.
    first_use = context.index("${" + contract.VAR_LANGUAGE + "}")
    assert context[first_use - 4 : first_use] == "LEN("
    for app in ("Playback(", "Read(", "SayNumber("):
        if app in context:
            assert context.index(applied) < context.index(app), app


def test_client_first_applies_the_language_first_thing_and_asks_with_the_shipped_prompt() -> None:
    lines = _lines(_context(contract.CLIENT_FIRST_CONTEXT))
    # After the hangup handler and the first stage (the report must always be possible).
    assert lines[2].startswith(f"same => n,ExecIf($[{_language_check()}]")
    assert lines[3] == f"same => n,Set(CHANNEL(language)=${{{contract.VAR_LANGUAGE}}})"
    assert contract.DEFAULT_CLIENT_PROMPT == "callbackd/client-press-1"
    context = _context(contract.CLIENT_FIRST_CONTEXT)
    assert f"Set({contract.VAR_CLIENT_PROMPT}={contract.DEFAULT_CLIENT_PROMPT})" in context
    assert contract.VAR_LANGUAGE in contract.CLIENT_FIRST_VARIABLES


def test_reminder_plays_the_shipped_prompts_with_a_checked_plural_form() -> None:
    context = _context(contract.REMINDER_CONTEXT)
    form = contract.VAR_REMINDER_FORM
    letters = "".join(sorted(set("".join(contract.REMINDER_FORMS))))
    counted = f"${{LEN(${{REPLACE({form},{letters})}})}} != 0"
    compared = " & ".join(f'"${{{form}}}" != "{f}"' for f in contract.REMINDER_FORMS)
    assert counted in context
    assert f"ExecIf($[{compared}]?Set({form}={contract.DEFAULT_REMINDER_FORM}))" in context
    # Counted (only those letters, 3-4 of them) before it is compared or played.
    assert context.index(counted) < context.index(compared)
    shortest = min(len(f) for f in contract.REMINDER_FORMS)
    longest = max(len(f) for f in contract.REMINDER_FORMS)
    assert f"${{LEN(${{{form}}})}} < {shortest} | ${{LEN(${{{form}}})}} > {longest}" in context
    you_have = f"Playback({contract.prompt('reminder-you-have')})"
    waiting = f"Playback({contract.PROMPT_DIR}/reminder-waiting-${{{form}}})"
    assert context.index(you_have) < context.index("SayNumber(") < context.index(waiting)
    assert context.index(compared) < context.index(waiting)
    for each in contract.REMINDER_FORMS:  # every form names a shipped prompt
        assert contract.prompt(f"reminder-waiting-{each}")
    assert contract.DEFAULT_REMINDER_FORM in contract.REMINDER_FORMS
    assert {form, contract.VAR_LANGUAGE} <= contract.REMINDER_VARIABLES


def test_queue_offer_sample_plays_the_shipped_offer_to_the_caller() -> None:
    sample = (SHIPPED.parent / "queues.d" / "callbackd.conf").read_text(encoding="utf-8")
    options = dict(
        (key.strip(), value.strip())
        for key, value in (
            line.split("=", 1) for line in sample.splitlines() if "=" in line and line[0] != ";"
        )
    )
    assert options["periodic-announce"] == contract.prompt("queue-offer")
    assert options["context"] == contract.QUEUE_EXIT_CONTEXT
    assert int(options["periodic-announce-frequency"]) > 0
    # "announce" would be played to the operator who answers, not to the waiting caller.
    assert "announce" not in options
