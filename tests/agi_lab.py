"""Helpers for the AGI end-to-end tests and the AGI benchmark: lab callers through the
shipped callbackd-inbound / callbackd-request contexts, and keys sent to them."""

from __future__ import annotations

import secrets
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from callbackd.lab.driver import AmiMessage, EventCollector, LabDriver

AGI_EVENTS = ("AGIExecStart", "AGIExecEnd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fresh_number() -> str:
    return f"7916{secrets.randbelow(10**7):07d}"


def noon_zone() -> str:
    """A fixed-offset zone where it is around midday now (an 08:00-20:00 window is open)."""
    offset = (12 - datetime.now(UTC).hour) % 24
    if offset > 12:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def crm_campaign(**overrides: Any) -> dict[str, Any]:
    """A campaign on lab-sales that only records (the dialer leaves its requests alone)."""
    values: dict[str, Any] = {
        "queue": "lab-sales",
        "mode": "crm_task",
        "dial_template": "Local/{number}@lab-clients",
        "min_hold_seconds": 1,
        "window": {
            "timezone": noon_zone(),
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "08:00",
            "end": "20:00",
        },
    }
    values.update(overrides)
    return values


def fast_agi(port: int, **overrides: Any) -> dict[str, Any]:
    """AGI settings for tests: short prompts (a beep), short key timeouts."""
    values: dict[str, Any] = {
        "listen_port": port,
        "sticky_ring_seconds": 3,
        "ivr_digit_timeout_seconds": 3,
        "prompt_number": "beep",
        "prompt_confirm_number": "beep",
        "prompt_time": "beep",
        "prompt_invalid": "beep",
        "prompt_booked_for": "beep",
        "prompt_today": "beep",
        "prompt_tomorrow": "beep",
        "prompt_booked_soonest": "beep",
        "prompt_done": "beep",
    }
    values.update(overrides)
    return values


async def originate(
    driver: LabDriver,
    context: str,
    number: str,
    *,
    variables: Mapping[str, str],
    wait_seconds: int = 60,
) -> str:
    """A lab caller ``number`` into ``context``; returns the ChannelId of the ;1 half
    (the half running the dialplan is ``<id>;2``)."""
    channel_id = f"lab-agi-{uuid.uuid4().hex}"
    reply = await driver.action(
        {
            "Action": "Originate",
            "Channel": f"Local/{number}@{context}",
            # The ;1 half streams (silent) audio to the caller's half, as a phone does:
            # Asterisk times DTMF on the frames it reads, and a Local channel with no
            # media holds a key back until something else arrives.
            "Application": "MusicOnHold",
            "Data": f"lab-silence,{wait_seconds}",
            "Async": "true",
            "Timeout": "10000",
            "ChannelId": channel_id,
            "OtherChannelId": f"{channel_id};2",
            "Variable": [f"{key}={value}" for key, value in variables.items()],
        }
    )
    assert reply.success, reply
    return channel_id


def on_channel(uniqueid: str) -> Callable[[AmiMessage], bool]:
    def match(event: AmiMessage) -> bool:
        return event.get("Uniqueid") == uniqueid

    return match


async def asked(events: EventCollector, uniqueid: str, *, timeout: float = 20.0) -> str:
    """Wait until the AGI on ``uniqueid`` starts reading keys (GET DATA); its channel name."""
    start = await events.next(
        "AGIExecStart",
        lambda e: (
            e.get("Uniqueid") == uniqueid
            and str(e.get("Command", "")).upper().startswith("GET DATA")
        ),
        timeout=timeout,
    )
    return start["Channel"]


async def press(driver: LabDriver, channel: str, keys: str) -> None:
    """Keys as the caller's phone would send them (AMI PlayDTMF, received by the channel)."""
    for key in keys:
        reply = await driver.action(
            # "Async: false": panoramisk 1.4 reads the "DTMF successfully queued" reply as
            # the start of an async list unless the action says it is not one.
            {
                "Action": "PlayDTMF",
                "Channel": channel,
                "Digit": key,
                "Duration": "120",
                "Receive": "true",
                "Async": "false",
            }
        )
        assert reply.success, reply


async def keys_when_asked(
    driver: LabDriver, events: EventCollector, uniqueid: str, keys: str
) -> str:
    """Wait for the next GET DATA on ``uniqueid``, then send ``keys``; the channel name."""
    channel = await asked(events, uniqueid)
    await press(driver, channel, keys)
    return channel


async def hang_up(driver: LabDriver, channel_uniqueid: str, channel_name: str) -> None:
    reply = await driver.action({"Action": "Hangup", "Channel": channel_name})
    assert reply.success, (channel_uniqueid, reply)
