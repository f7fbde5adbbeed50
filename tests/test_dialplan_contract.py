"""callbackd/dialplan_contract.py and the shipped dialplan/callbackd.conf name the same things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callbackd import dialplan_contract
from callbackd.dialplan_contract import Stage

SHIPPED = Path(__file__).resolve().parents[1] / "dialplan" / dialplan_contract.SHIPPED_DIALPLAN_FILE
TEXT = SHIPPED.read_text(encoding="utf-8")
CODE = "\n".join(line.split(";", 1)[0] for line in TEXT.splitlines())
"""The dialplan without comments (no ';' appears inside the shipped code)."""
HEADER = TEXT.split("\n[", 1)[0]
"""The documentation at the top of the file."""

# A variable name, also when written with the inheritance prefix (__CALLBACKD_ATTEMPT_ID).
_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])_{0,2}(CALLBACKD_[A-Z0-9_]+)")
_USER_EVENT = re.compile(r"UserEvent\(([A-Za-z]+)((?:,[^,\n]*)*)\)$", re.MULTILINE)
_STAGE_SET = re.compile(r"CALLBACKD_STAGE\)?=([a-z_]+)\)")
_STAGE_HEADER = re.compile(r"Stage: ([a-z_]+)")


def _context(name: str) -> str:
    """The code of context ``name``, up to the next context."""
    return CODE.split(f"[{name}]", 1)[1].split("\n[", 1)[0]


def _lines(context: str) -> list[str]:
    return [line.strip() for line in context.splitlines() if line.strip()]


def test_contexts_match():
    defined = set(re.findall(r"^\s*\[([^\]]+)\]", CODE, re.MULTILINE))
    assert defined == set(dialplan_contract.CONTEXTS)


def test_every_context_is_documented_in_the_header():
    documented = set(re.findall(r"^;   ((?:from-)?callbackd[a-z-]*) ", HEADER, re.MULTILINE))
    assert documented == set(dialplan_contract.CONTEXTS)


def _variables(text: str) -> set[str]:
    """The CALLBACKD_* names in ``text`` that are channel variables (queue_log event names
    are spelt the same way)."""
    return set(_VARIABLE.findall(text)) - dialplan_contract.QUEUE_LOG_EVENTS


def test_callbackd_variables_match_in_code_and_documentation():
    assert not dialplan_contract.QUEUE_LOG_EVENTS & dialplan_contract.VARIABLES
    assert _variables(CODE) == set(dialplan_contract.VARIABLES)
    assert _variables(TEXT) == set(dialplan_contract.VARIABLES)
    assert _variables(HEADER) == set(dialplan_contract.VARIABLES)


def test_queue_routine_entry_and_defaults():
    context = _context(dialplan_contract.QUEUE_CONTEXT)
    assert re.search(rf"^exten => {dialplan_contract.QUEUE_ENTRY_EXTENSION},1,", context, re.M)
    assert f"Set({dialplan_contract.VAR_PRIORITY}={dialplan_contract.DEFAULT_PRIORITY})" in context
    digits = len(str(dialplan_contract.MAX_PRIORITY))
    assert f'REGEX("^[0-9]{{1,{digits}}}$" ${{{dialplan_contract.VAR_PRIORITY}}})' in context
    assert f"Set({dialplan_contract.VAR_QUEUE}=${{ARG1}})" in context
    assert "Queue(${ARG1},${ARG2})" in context
    assert context.rstrip().endswith("Return()")


def test_header_documents_manager_channelvars():
    assert f"channelvars = {dialplan_contract.MANAGER_CHANNELVARS}" in TEXT


def test_user_events_match():
    assert {name for name, _ in _USER_EVENT.findall(CODE)} == set(dialplan_contract.EVENTS)
    assert len(_USER_EVENT.findall(CODE)) == CODE.count("UserEvent(")


@pytest.mark.parametrize(
    ("event", "headers"),
    [
        (dialplan_contract.ATTEMPT_EVENT, dialplan_contract.ATTEMPT_HEADERS),
        (dialplan_contract.RESULT_EVENT, dialplan_contract.RESULT_HEADERS),
        (dialplan_contract.INBOUND_CONNECTED_EVENT, dialplan_contract.INBOUND_CONNECTED_HEADERS),
    ],
)
def test_event_headers_match(event: str, headers: tuple[str, ...]):
    sent = [body for name, body in _USER_EVENT.findall(CODE) if name == event]
    assert sent
    for body in sent:
        names = tuple(item.split(":", 1)[0] for item in body.split(",")[1:])
        assert names == headers
    for header in headers:
        assert re.search(rf"^;\s+{header}\b", HEADER, re.MULTILINE), f"{header} undocumented"


def test_stages_match_in_code_and_documentation():
    reached = set(_STAGE_SET.findall(CODE)) | set(_STAGE_HEADER.findall(CODE))
    assert reached == {stage.value for stage in Stage}
    documented = set(re.findall(r"^;   ([a-z_]+) +\S", HEADER.split("; Stages:", 1)[1], re.M))
    assert {stage.value for stage in Stage} <= documented


def test_operator_leg_reports_first_and_always():
    lines = _lines(_context(dialplan_contract.OPERATOR_CONTEXT))
    entry = f"exten => {dialplan_contract.OPERATOR_ENTRY_EXTENSION},"
    entry += f"{dialplan_contract.OPERATOR_ENTRY_PRIORITY},"
    assert lines[0] == (
        f"{entry}Set(CHANNEL(hangup_handler_push)={dialplan_contract.REPORT_CONTEXT},s,1)"
    )
    assert lines[1] == f"same => n,Set({dialplan_contract.VAR_STAGE}={Stage.OPERATOR_ANSWERED})"
    report = _lines(_context(dialplan_contract.REPORT_CONTEXT))
    assert report[-1] == "same => n,Return()"


def _first_sound(context: str) -> int:
    """Where the operator leg first plays anything (Read or, without confirmation, Playback)."""
    return min(context.index("Read("), context.index("Playback("))


def test_operator_leg_sets_every_default_before_use():
    context = _context(dialplan_contract.OPERATOR_CONTEXT)
    contract = dialplan_contract
    for variable, default in [
        (contract.VAR_LANGUAGE, contract.DEFAULT_LANGUAGE),
        (contract.VAR_OPERATOR_CONFIRM, contract.DEFAULT_OPERATOR_CONFIRM),
        (contract.VAR_CLIENT_CONFIRM, contract.DEFAULT_CLIENT_CONFIRM),
        (contract.VAR_CONFIRM_TIMEOUT, contract.DEFAULT_CONFIRM_TIMEOUT),
        (contract.VAR_CLIENT_RING, contract.DEFAULT_CLIENT_RING),
        (contract.VAR_ANNOUNCE_NUMBER, contract.DEFAULT_ANNOUNCE_NUMBER),
        (contract.VAR_ANNOUNCE, contract.DEFAULT_ANNOUNCE),
        (contract.VAR_OPERATOR_PROMPT, contract.DEFAULT_OPERATOR_PROMPT),
        (contract.VAR_OPERATOR_PROMPT, contract.DEFAULT_OPERATOR_PROMPT_ON_REQUEST),
        (contract.VAR_CLIENT_PROMPT, contract.DEFAULT_CLIENT_PROMPT),
        (contract.VAR_CLIENT_CALLERID, ""),
        (contract.VAR_CLIENT_CALLERNAME, ""),
    ]:
        setting = f"Set({variable}={default})"
        assert setting in context, setting
        assert context.index(setting) < _first_sound(context), variable
        # Its first use is the check, which counts characters (LEN) of the variable.
        first_use = context.index("${" + variable + "}")
        assert context[first_use - 4 : first_use] == "LEN(", variable
    # The language is set on the channel only after its check, before anything is played.
    language = f"Set(CHANNEL(language)=${{{contract.VAR_LANGUAGE}}})"
    assert f"REPLACE({contract.VAR_LANGUAGE},{contract.LANGUAGE_CHARACTERS})" in context
    assert f"{{{contract.VAR_LANGUAGE}}})}} < {contract.MIN_LANGUAGE_LENGTH} |" in context
    assert f"{{{contract.VAR_LANGUAGE}}})}} > {contract.MAX_LANGUAGE_LENGTH}" in context
    assert context.index(f"REPLACE({contract.VAR_LANGUAGE},") < context.index(language)
    assert context.index(language) < _first_sound(context)
    # The documented limits are the ones checked.
    assert f"{{{contract.VAR_CONFIRM_TIMEOUT}}})}} > {len(str(contract.MAX_CONFIRM_TIMEOUT))}" in (
        context
    )
    assert f"{{{contract.VAR_CLIENT_RING}}})}} > {len(str(contract.MAX_CLIENT_RING))}" in context
    for variable in (
        contract.VAR_ANNOUNCE,
        contract.VAR_OPERATOR_PROMPT,
        contract.VAR_CLIENT_PROMPT,
    ):
        assert f"REPLACE({variable},{contract.SOUND_CHARACTERS})" in context
        assert f"{{{variable}}})}} > {contract.MAX_SOUND_LENGTH}" in context
    for value in contract.ANNOUNCE_NUMBER_VALUES:
        assert f'"{value}"' in context, value


def test_operator_hears_one_interruptible_read():
    """Whisper, number and prompt are one Read(): no key is lost to a Playback or SayDigits."""
    contract = dialplan_contract
    context = _context(contract.OPERATOR_CONTEXT)
    read = (
        f"Read({contract.VAR_OPERATOR_KEY},${{{contract.VAR_OPERATOR_SOUNDS}}}"
        f"&${{{contract.VAR_OPERATOR_PROMPT}}},1,,1,${{{contract.VAR_CONFIRM_TIMEOUT}}})"
    )
    assert context.count("Read(") == 1
    assert read in context
    assert "SayDigits(" not in context
    # Playback only where no key is read (operator confirmation off), never before the Read.
    lines = _lines(context)
    (playback,) = [i for i, line in enumerate(lines) if "Playback(" in line]
    assert lines[playback - 1].endswith(f"GotoIf($[${{{contract.VAR_OPERATOR_CONFIRM}}} = 1]?ask)")
    assert lines[playback + 1] == "same => n,Goto(dial)"
    # The number is spoken from the checked digits, in the channel's language.
    assert f"digits/${{{contract.VAR_NUMBER}:0:1}}" in context
    assert f'"${{{contract.VAR_OPERATOR_KEY}}}" = "{contract.OPERATOR_KEY_CONNECT}"' in context
    assert f'"${{{contract.VAR_OPERATOR_KEY}}}" = "{contract.OPERATOR_KEY_NUMBER}"' in context


def test_the_client_sees_the_campaigns_caller_id_never_their_own_number():
    contract = dialplan_contract
    context = _context(contract.OPERATOR_CONTEXT)
    dial = context.index("Dial(")
    for part, variable in (
        ("num", contract.VAR_CLIENT_CALLERID),
        ("name", contract.VAR_CLIENT_CALLERNAME),
    ):
        setting = f"Set(CALLERID({part})=${{{variable}}})"
        assert context.count(setting) == 1
        assert context.index(setting) < dial
    assert f"REPLACE({contract.VAR_CLIENT_CALLERID},{contract.CALLERID_NUMBER_CHARACTERS})" in (
        context
    )
    assert (
        f"REPLACE({contract.VAR_CLIENT_CALLERNAME},{contract.CALLERID_NAME_CHARACTERS})" in context
    )
    assert f"{{{contract.VAR_CLIENT_CALLERNAME}}})}} > {contract.MAX_CALLERID_NAME_LENGTH}" in (
        context
    )
    assert f"CALLERID(num)=${{{contract.VAR_NUMBER}}}" not in context
    assert ")f(" not in context  # no Dial option f(): the caller id is the channel's


def test_outbound_context_checks_the_site_settings_before_use():
    contract = dialplan_contract
    context = _context(contract.OUTBOUND_CONTEXT)
    goto = f"Goto(${{{contract.VAR_OUTBOUND_CONTEXT}}},${{EXTEN}},1)"
    dial = f"Dial(PJSIP/${{EXTEN}}@${{{contract.VAR_TRUNK}}})"
    checks = {
        goto: f"REPLACE({contract.VAR_OUTBOUND_CONTEXT},{contract.CONTEXT_NAME_CHARACTERS})",
        dial: f"REPLACE({contract.VAR_TRUNK},{contract.TRUNK_CHARACTERS})",
    }
    for use, check in checks.items():
        assert context.count(use) == 1, use
        assert context.index(check) < context.index(use), check
    assert context.index("REPLACE(EXTEN,0123456789)") < context.index(goto)
    for application in ("Log(ERROR,", "Congestion(", "Busy("):
        assert application in context, application
    for variable in (contract.VAR_OUTBOUND_CONTEXT, contract.VAR_TRUNK):
        assert variable in context.split("Log(ERROR,", 1)[1]


def test_nothing_is_dialled_before_every_input_passed_its_check():
    context = _context(dialplan_contract.OPERATOR_CONTEXT)
    contract = dialplan_contract
    dial_string = "".join(
        f"${{{variable}}}"
        for variable in (contract.VAR_DIAL_PREFIX, contract.VAR_NUMBER, contract.VAR_DIAL_SUFFIX)
    )
    dial = f"Dial({dial_string},"
    assert CODE.count(dial) == 1
    assert context.count(dial) == 1
    checks = [
        f"REPLACE({contract.VAR_ATTEMPT_ID},{contract.ATTEMPT_ID_CHARACTERS})",
        f"{{{contract.VAR_ATTEMPT_ID}}})}} < {contract.MAX_ATTEMPT_ID_LENGTH + 1}",
        f"REPLACE({contract.VAR_NUMBER},0123456789)",
        f"{{{contract.VAR_NUMBER}}})}} > {contract.MAX_NUMBER_DIGITS}",
        f"REPLACE({contract.VAR_DIAL_PREFIX},{contract.DIAL_AFFIX_CHARACTERS})",
        f"{{{contract.VAR_DIAL_PREFIX}}})}} > {contract.MAX_DIAL_AFFIX_LENGTH}",
        f"REPLACE({contract.VAR_DIAL_PREFIX},/)",
        f"REPLACE({contract.VAR_DIAL_SUFFIX},{contract.DIAL_AFFIX_CHARACTERS})",
        f"{{{contract.VAR_DIAL_SUFFIX}}})}} > {contract.MAX_DIAL_AFFIX_LENGTH}",
        f"REPLACE({contract.VAR_CLIENT_CALLERID},{contract.CALLERID_NUMBER_CHARACTERS})",
        f"{{{contract.VAR_CLIENT_CALLERID}}})}} > {contract.MAX_CALLERID_NUMBER_LENGTH}",
    ]
    first_sound = _first_sound(context)
    for check in checks:
        assert check in context, check
        assert context.index(check) < first_sound, check
    # The number is spoken and dialled only after the checks; no value is ever spliced into
    # an expression before it passed (the checks read variables by name: REPLACE, LEN).
    assert first_sound < context.index(dial)
    before = context[:first_sound]
    number_sounds = before.index(f"Set({contract.VAR_NUMBER_SOUNDS}=")
    for variable in (contract.VAR_NUMBER, contract.VAR_DIAL_PREFIX, contract.VAR_DIAL_SUFFIX):
        uses = re.findall(rf"(.{{0,5}})\$\{{{variable}\}}", before[:number_sounds])
        assert uses, variable
        assert all(use.endswith("LEN(") for use in uses), (variable, uses)


def test_client_leg_is_the_dial_gosub():
    context = _context(dialplan_contract.OPERATOR_CONTEXT)
    assert f"U({dialplan_contract.CLIENT_CONFIRM_CONTEXT}^${{CHANNEL(uniqueid)}}^" in context
    client = _lines(_context(dialplan_contract.CLIENT_CONFIRM_CONTEXT))
    assert client[0].startswith("exten => s,1,")
    # The client hears the campaign's language: ARG5, checked before it is set.
    assert client[1] == (
        f"same => n,ExecIf($[${{LEN(${{ARG5}})}} > {dialplan_contract.MIN_LANGUAGE_LENGTH - 1} & "
        "${LEN(${ARG5})} < "
        f"{dialplan_contract.MAX_LANGUAGE_LENGTH + 1} & ${{LEN(${{REPLACE(ARG5,"
        f"{dialplan_contract.LANGUAGE_CHARACTERS})}})}} = 0]?Set(CHANNEL(language)=${{ARG5}}))"
    )
    assert "Set(GOSUB_RESULT=ABORT)" in "\n".join(client)
    assert client[-1] == "same => n,Return()"


def test_originate_spelling_of_the_attempt_id_inherits():
    assert dialplan_contract.ORIGINATE_VAR_ATTEMPT_ID == "__" + dialplan_contract.VAR_ATTEMPT_ID
    assert f"Set({dialplan_contract.ORIGINATE_VAR_ATTEMPT_ID}=" in CODE


def test_callback_and_dialplan_variables_are_disjoint_and_documented():
    contract = dialplan_contract
    assert not contract.CALLBACK_VARIABLES & contract.DIALPLAN_VARIABLES
    callbackd_sets, dialplan_sets = HEADER.split("; Set by the dialplan", 1)
    assert set(_VARIABLE.findall(dialplan_sets.split("; Stages:", 1)[0])) == set(
        contract.DIALPLAN_VARIABLES
    )
    callbacks = callbackd_sets.split("; Channel variables of a callback", 1)[1]
    assert set(_VARIABLE.findall(callbacks)) == set(contract.CALLBACK_VARIABLES)


# --------------------------------------------------------------------- AGI routes


def test_every_agi_call_uses_the_site_address_and_a_known_route():
    calls = re.findall(r"AGI\(\$\{([A-Z_]+)\},([a-z]+),", CODE)
    assert calls
    assert {variable for variable, _ in calls} == {dialplan_contract.AGI_ADDRESS_VARIABLE}
    assert {route for _, route in calls} == set(dialplan_contract.ROUTES)
    assert CODE.count("AGI(") == len(calls)


@pytest.mark.parametrize(
    ("context", "route"),
    [
        (dialplan_contract.INBOUND_CONTEXT, dialplan_contract.ROUTE_INBOUND),
        (dialplan_contract.REQUEST_CONTEXT, dialplan_contract.ROUTE_REQUEST),
    ],
)
def test_defaults_before_and_a_fallback_after_every_agi_call(context: str, route: str):
    code = _context(context)
    agi = code.index(f",{route},")
    check = f"REPLACE({dialplan_contract.AGI_ADDRESS_VARIABLE},"
    check += f"{dialplan_contract.AGI_ADDRESS_CHARACTERS})"
    assert check in code[:agi]
    after = code[agi:].splitlines()[1]
    assert '"${AGISTATUS}"' in after
    assert "SUCCESS" in after


def test_inbound_defaults_cover_every_variable_the_route_sets():
    code = _context(dialplan_contract.INBOUND_CONTEXT)
    defaults = code.split("exten => defaults,", 1)[1]
    for variable in (*dialplan_contract.INBOUND_VARIABLES, dialplan_contract.VAR_PRIORITY):
        assert f"Set({variable}=" in defaults, variable
    assert f"Set({dialplan_contract.VAR_STICKY_RING}={dialplan_contract.DEFAULT_STICKY_RING})" in (
        defaults
    )
    # Defaults first, and again when the AGI call failed.
    assert code.count("Gosub(callbackd-inbound,defaults,1)") == 2
    # Every value the route set is counted (LEN/REPLACE) before Dial or Queue uses it.
    first_dial = code.index("Dial(")
    for variable in (
        dialplan_contract.VAR_STICKY_MEMBER,
        dialplan_contract.VAR_VIP_TARGET,
        dialplan_contract.VAR_STICKY_RING,
        dialplan_contract.VAR_PRIORITY,
    ):
        assert code.index(f"REPLACE({variable},") < first_dial, variable
    assert "Set(QUEUE_PRIO=${CALLBACKD_PRIORITY})" in code


def test_every_direct_dial_of_the_lookup_reports_the_connection():
    code = _context(dialplan_contract.INBOUND_CONTEXT)
    dials = re.findall(r"Dial\((\$\{[A-Z_]+\}),[^\n]*\)$", code, re.MULTILINE)
    assert dials == ["${CALLBACKD_VIP_TARGET}", "${CALLBACKD_STICKY_MEMBER}"]
    for target in dials:
        gosub = (
            f"U({dialplan_contract.INBOUND_CONNECTED_CONTEXT}^${{{dialplan_contract.VAR_QUEUE}}}"
        )
        gosub += f"^${{{dialplan_contract.VAR_CALLER}}}^{target})"
        assert gosub in code
    # Both values are counted before the first Dial uses them.
    first_dial = code.index("Dial(")
    for variable in (dialplan_contract.VAR_QUEUE, dialplan_contract.VAR_CALLER):
        assert code.index(f"REPLACE({variable},") < first_dial, variable
    connected = _lines(_context(dialplan_contract.INBOUND_CONNECTED_CONTEXT))
    assert connected[0].startswith(
        f"exten => s,1,UserEvent({dialplan_contract.INBOUND_CONNECTED_EVENT},"
    )
    assert connected[-1] == "same => n,Return()"


def test_the_sticky_member_check_is_the_operator_interface_rule():
    code = _context(dialplan_contract.INBOUND_CONTEXT)
    member = dialplan_contract.VAR_STICKY_MEMBER
    limit = f"${{LEN(${{{member}}})}} > {dialplan_contract.MAX_INTERFACE_LENGTH} |"
    assert limit in code
    assert f"REPLACE({member},{dialplan_contract.INTERFACE_CHARACTERS})" in code
    assert f"REPLACE({member},/)" in code  # at least one "/"


def test_queue_exit_key_leads_to_the_request_ivr():
    code = _context(dialplan_contract.QUEUE_EXIT_CONTEXT)
    exit_key = dialplan_contract.QUEUE_EXIT_KEY
    assert f"exten => {exit_key},1,Goto({dialplan_contract.REQUEST_CONTEXT},s,1)" in code
    sample = SHIPPED.parent / "queues.d" / "callbackd.conf"
    assert f"context = {dialplan_contract.QUEUE_EXIT_CONTEXT}" in sample.read_text()


def test_request_status_values_are_the_documented_ones():
    code = _context(dialplan_contract.REQUEST_CONTEXT)
    assert f'"${{{dialplan_contract.VAR_REQUEST_STATUS}}}" = "stored"' in code
    for status in dialplan_contract.RequestStatus:
        assert status.value in HEADER, status
