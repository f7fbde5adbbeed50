"""The lab PBX itself: what later tests build on must hold against the real Asterisk."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from callbackd import dialplan_contract
from callbackd.lab.asterisk import SHIPPED_DIALPLAN_DIR, LabAsterisk, LabError
from callbackd.lab.driver import LabDriver

pytestmark = pytest.mark.asterisk

CALLER = "79161234567"


def _uniqueid_is(uniqueid: str):
    return lambda event: event.get("Uniqueid") == uniqueid


async def test_caller_hanging_up_in_queue_is_reported_as_abandoned(ami_driver: LabDriver):
    async with ami_driver.events("QueueCallerJoin", "QueueCallerAbandon") as events:
        channel_id = await ami_driver.originate_caller(CALLER, "Иван Петров", wait_seconds=2)
        in_queue = f"{channel_id};2"
        await events.next("QueueCallerJoin", _uniqueid_is(in_queue), timeout=5)
        abandon = await events.next("QueueCallerAbandon", _uniqueid_is(in_queue), timeout=10)

    assert abandon["Queue"] == "lab-sales"
    assert abandon["CallerIDNum"] == CALLER
    assert abandon["CallerIDName"] == "Иван Петров"
    assert int(abandon["HoldTime"]) >= 1
    assert abandon["Uniqueid"] == in_queue
    # The shipped routine gave the caller its safe defaults.
    assert abandon.chan_variables() == {
        dialplan_contract.VAR_PRIORITY: str(dialplan_contract.DEFAULT_PRIORITY),
        dialplan_contract.VAR_QUEUE: "lab-sales",
    }


async def test_abandon_is_written_to_the_queue_log(pbx: LabAsterisk, ami_driver: LabDriver):
    async with ami_driver.events("QueueCallerAbandon") as events:
        channel_id = await ami_driver.originate_caller(CALLER, wait_seconds=1)
        await events.next("QueueCallerAbandon", _uniqueid_is(f"{channel_id};2"), timeout=10)

    # epoch|uniqueid|queue|agent|ABANDON|position|original position|wait seconds
    line = await _queue_log_line(pbx, f"|{channel_id};2|lab-sales|NONE|ABANDON|")
    position, original_position, waited = line.split("|")[5:8]
    assert (position, original_position) == ("1", "1")
    # Whole seconds between join and abandon: the caller's 1 s wait starts a moment before
    # it joins, so 0 is possible.
    assert int(waited) in (0, 1)


async def test_shipped_dialplan_is_loaded_and_sets_safe_defaults(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    shown = pbx.cli(f"dialplan show {dialplan_contract.QUEUE_CONTEXT}")
    assert f"[ Context '{dialplan_contract.QUEUE_CONTEXT}' created by 'pbx_config' ]" in shown
    assert f"[{dialplan_contract.SHIPPED_DIALPLAN_FILE}:" in shown
    assert "Queue(${ARG1},${ARG2})" in shown

    # A site's valid priority is kept; garbage becomes the default.
    async with ami_driver.events("QueueCallerJoin") as events:
        kept = await ami_driver.originate_caller(
            "79160000001", wait_seconds=5, variables={dialplan_contract.VAR_PRIORITY: "7"}
        )
        fixed = await ami_driver.originate_caller(
            "79160000002", wait_seconds=5, variables={dialplan_contract.VAR_PRIORITY: "1e9"}
        )
        joined_kept = await events.next("QueueCallerJoin", _uniqueid_is(f"{kept};2"))
        joined_fixed = await events.next("QueueCallerJoin", _uniqueid_is(f"{fixed};2"))
    assert joined_kept.chan_variables()[dialplan_contract.VAR_PRIORITY] == "7"
    assert joined_fixed.chan_variables()[dialplan_contract.VAR_PRIORITY] == "0"


async def test_callbackd_account_has_least_privilege(pbx: LabAsterisk, ami_driver: LabDriver):
    user = pbx.cli("manager show user callbackd")
    assert _perm_line(user, "read") == {"call", "agent", "user"}
    assert _perm_line(user, "write") == {"originate", "call"}

    callbackd = await LabDriver.connect(pbx.ami_callbackd)
    try:
        async with callbackd.events("UserEvent") as events:
            sent = await ami_driver.action(
                {
                    "Action": "UserEvent",
                    "UserEvent": "CallbackdLabProbe",
                    "Probe": "least-privilege",
                }
            )
            assert sent.success
            delivered = await events.next("UserEvent", timeout=5)
        assert delivered["Probe"] == "least-privilege"
        refused = await callbackd.action({"Action": "Command", "Command": "core show uptime"})
        assert not refused.success
        assert refused.get("Message") == "Permission denied"
    finally:
        await callbackd.close()


async def test_reset_leaves_a_clean_pbx(pbx: LabAsterisk, ami_driver: LabDriver):
    pbx.set_operator("default", "talk")
    pbx.set_client("79160000003", "busy")
    pbx.cli("queue add member Local/talk9@lab-operators to lab-support")
    pbx.cli("queue pause member Local/op2@lab-operators queue lab-sales reason test")
    async with ami_driver.events("AgentConnect") as events:
        await ami_driver.originate_caller(CALLER, wait_seconds=60)
        await events.next("AgentConnect", timeout=10)
    assert pbx.active_channels() > 0

    await asyncio.to_thread(pbx.reset)

    assert pbx.active_channels() == 0
    for queue in ("lab-sales", "lab-support"):
        members = pbx.queue_members(queue)
        assert not any(m.dynamic or m.paused or m.penalty for m in members)
    assert "talk9" not in pbx.cli("queue show lab-support")
    assert "lab-operator" not in pbx.cli("database show")
    assert "lab-client" not in pbx.cli("database show")


async def test_client_and_operator_modes_behave_as_documented(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    pbx.set_client("79160000011", "answer", 1)
    pbx.set_client("79160000012", "busy")
    pbx.set_client("79160000013", "noanswer")
    pbx.set_client("79160000014", "congestion")
    pbx.set_operator("op7", "accept", seconds=0)
    # OriginateResponse Reason: 4 answered, 5 busy, 3 rang until the timeout, 8 congestion.
    expected = {
        "Local/79160000011@lab-clients": "4",
        "Local/79160000012@lab-clients": "5",
        "Local/79160000013@lab-clients": "3",
        "Local/79160000014@lab-clients": "8",
        "Local/79160000015@lab-clients": "4",  # unset numbers answer
        "Local/op7@lab-operators": "4",
        "Local/op8@lab-operators": "3",  # unset operators ring forever
        "Local/talk1@lab-operators": "4",
        "Local/busy1@lab-operators": "5",
        "Local/away1@lab-operators": "3",
    }
    async with ami_driver.events("DTMFEnd", "Hangup") as events:
        reasons = await asyncio.gather(*(_originate(ami_driver, c) for c in expected))
        pressed = await events.next("DTMFEnd", lambda e: e["Channel"].startswith("Local/op7@"))
        # The ;2 half runs lab-clients; the ;1 half (Wait) may hang up first, with the
        # originate's own Exten.
        hung_up = await events.next(
            "Hangup",
            lambda e: (
                e["Channel"].startswith("Local/79160000011@lab-clients")
                and e["Channel"].endswith(";2")
            ),
        )
    assert dict(zip(expected, reasons, strict=True)) == expected
    assert pressed["Digit"] == "1"
    assert hung_up["Exten"] == "answer"


async def _originate(driver: LabDriver, channel: str) -> str:
    messages = await driver.action_list(
        {
            "Action": "Originate",
            "Channel": channel,
            "Application": "Wait",
            "Data": "5",
            "Async": "true",
            "Timeout": "1500",
        },
        timeout=5,
    )
    (outcome,) = [m for m in messages if m.event == "OriginateResponse"]
    return outcome["Reason"]


def test_start_fails_loudly_and_cleans_up_when_the_shipped_dialplan_is_broken(
    tmp_path: Path, lab_asterisk: LabAsterisk
):
    shipped = SHIPPED_DIALPLAN_DIR / dialplan_contract.SHIPPED_DIALPLAN_FILE
    context = f"[{dialplan_contract.QUEUE_CONTEXT}]"
    (tmp_path / shipped.name).write_text(shipped.read_text().replace(context, "[typo]"))
    (tmp_path / "manager.d").mkdir()
    shutil.copy(SHIPPED_DIALPLAN_DIR / "manager.d" / "callbackd.conf", tmp_path / "manager.d")
    instances = lab_asterisk.instance_dir.parent
    before = set(instances.iterdir())
    lab = LabAsterisk(dialplan_dir=tmp_path)

    with pytest.raises(LabError, match=r"(?s)callbackd-queue.*is not loaded.*messages\.log"):
        lab.start()

    assert not lab.running
    # Its instance dir is gone again (dirs are named <pid>-<random>; other processes' labs
    # may come and go meanwhile).
    left = {p.name for p in set(instances.iterdir()) - before}
    assert not {name for name in left if name.startswith(f"{os.getpid()}-")}


def test_start_without_an_asterisk_root_says_how_to_build_one(tmp_path: Path):
    with pytest.raises(LabError, match="scripts/asterisk-root"):
        LabAsterisk(root=tmp_path).start()


def _perm_line(output: str, kind: str) -> set[str]:
    for line in output.splitlines():
        label, _, value = line.partition(":")
        if label.strip() == f"{kind} perm":
            return set(value.strip().split(","))
    raise AssertionError(f"no '{kind} perm' in:\n{output}")


async def _queue_log_line(pbx: LabAsterisk, fragment: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in pbx.queue_log_path.read_text(encoding="utf-8").splitlines():
            if fragment in line:
                return line
        if time.monotonic() >= deadline:
            raise AssertionError(f"no queue_log line with {fragment!r} in {pbx.queue_log_path}")
        await asyncio.sleep(0.05)
