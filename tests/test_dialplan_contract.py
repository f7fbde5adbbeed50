"""callbackd/dialplan_contract.py and the shipped dialplan/callbackd.conf name the same things."""

from __future__ import annotations

import re
from pathlib import Path

from callbackd import dialplan_contract

SHIPPED = Path(__file__).resolve().parents[1] / "dialplan" / dialplan_contract.SHIPPED_DIALPLAN_FILE
TEXT = SHIPPED.read_text(encoding="utf-8")
CODE = "\n".join(line.split(";", 1)[0] for line in TEXT.splitlines())
"""The dialplan without comments (no ';' appears inside the shipped code)."""


def test_contexts_match():
    defined = set(re.findall(r"^\s*\[([^\]]+)\]", CODE, re.MULTILINE))
    assert defined == set(dialplan_contract.CONTEXTS)


def test_callbackd_variables_match_in_code_and_documentation():
    assert set(re.findall(r"\bCALLBACKD_[A-Z0-9_]+", CODE)) == set(dialplan_contract.VARIABLES)
    assert set(re.findall(r"\bCALLBACKD_[A-Z0-9_]+", TEXT)) == set(dialplan_contract.VARIABLES)


def test_queue_routine_entry_and_defaults():
    context = CODE.split(f"[{dialplan_contract.QUEUE_CONTEXT}]", 1)[1].split("\n[", 1)[0]
    assert re.search(rf"^exten => {dialplan_contract.QUEUE_ENTRY_EXTENSION},1,", context, re.M)
    assert f"Set({dialplan_contract.VAR_PRIORITY}={dialplan_contract.DEFAULT_PRIORITY})" in context
    digits = len(str(dialplan_contract.MAX_PRIORITY))
    assert f'REGEX("^[0-9]{{1,{digits}}}$" ${{{dialplan_contract.VAR_PRIORITY}}})' in context
    assert f"Set({dialplan_contract.VAR_QUEUE}=${{ARG1}})" in context
    assert "Queue(${ARG1},${ARG2})" in context
    assert context.rstrip().endswith("Return()")


def test_header_documents_manager_channelvars():
    assert f"channelvars = {dialplan_contract.MANAGER_CHANNELVARS}" in TEXT
