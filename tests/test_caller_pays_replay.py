"""Caller-pays calls in queue_log: the line the shipped dialplan writes (pure parsing, hostile
lines included) and its replay through the caller-pays service on the real Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callbackd.domain.capture import CampaignRef
from callbackd.domain.modes import CallerPaysSkip, CallerPaysStore, judge_caller_pays
from callbackd.services.caller_pays import CallerPaysCapture, CallerPaysOutcome
from callbackd.services.capture import AbandonCapture
from callbackd.services.queue_log import (
    CallerPaysLine,
    LineRefusal,
    QueueLogReplayer,
    parse_caller_pays_line,
    parse_caller_pays_log,
)
from tests.caller_pays_refs import HOTLINE, POLICY

WRITTEN_BY_ASTERISK = (
    "1795432685|lab-did-79161234567;2|callbackd|NONE|CALLBACKD_CALLERPAYS|hotline|79161234567\n"
)
"""A line as the lab's Asterisk 22 wrote it for a call to its caller-pays DID."""


def _line(uniqueid: str, campaign: str, number: str, *, stamp: int = 1795432685) -> str:
    return f"{stamp}|{uniqueid}|callbackd|NONE|CALLBACKD_CALLERPAYS|{campaign}|{number}\n"


# ----------------------------------------------------------------- the line format (pure)


def test_the_line_asterisk_writes_is_a_call() -> None:
    assert parse_caller_pays_line(WRITTEN_BY_ASTERISK) == CallerPaysLine(
        uniqueid="lab-did-79161234567;2",
        campaign="hotline",
        raw_number="79161234567",
        called_at=datetime.fromtimestamp(1795432685, UTC),
    )


def test_values_the_dialplan_blanked_are_a_call_the_live_verdict_refuses() -> None:
    # The routine empties an invalid campaign or caller id; the line still records the
    # call, and the verdict is the one the live UserEvent with the same empty headers gets.
    campaigns = {"hotline": HOTLINE}
    blank = parse_caller_pays_line(_line("1.1", "", ""))
    assert isinstance(blank, CallerPaysLine)
    verdict = judge_caller_pays("pbx", blank.campaign, blank.raw_number, campaigns, POLICY)
    assert verdict == CallerPaysSkip("no_client_first_campaign")
    no_number = parse_caller_pays_line(_line("1.2", "hotline", ""))
    assert isinstance(no_number, CallerPaysLine)
    verdict = judge_caller_pays("pbx", "hotline", no_number.raw_number, campaigns, POLICY)
    assert verdict == CallerPaysSkip("withheld")


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        # Numbers that would change a dial string: extra legs, another context, options.
        (_line("1.1", "hotline", "7916&1234567"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "79161234567@evil"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "PJSIP/79161234567"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "7916,1234567"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "7916 1234567"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "79161234567\x00"), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "7" * 33), LineRefusal.NUMBER),
        (_line("1.1", "hotline", "٧٩١٦١٢٣٤٥٦٧"), LineRefusal.NUMBER),  # not ASCII digits
        # Campaign names the routine would have blanked.
        (_line("1.1", "Hotline", "79161234567"), LineRefusal.CAMPAIGN),
        (_line("1.1", "../hotline", "79161234567"), LineRefusal.CAMPAIGN),
        (_line("1.1", "h" * 65, "79161234567"), LineRefusal.CAMPAIGN),
        # A "|" smuggled into a value makes another field: the line is refused whole.
        (_line("1.1", "hotline", "79161234567|79160000000"), LineRefusal.FIELD_COUNT),
        ("1795432685|1.1|callbackd|NONE|CALLBACKD_CALLERPAYS|hotline\n", LineRefusal.FIELD_COUNT),
        (_line("1.1", "hotline", "79161234567").replace("1795432685", "soon"), LineRefusal.TIME),
        (_line("1.1", "hotline", "79161234567", stamp=10**12), LineRefusal.TIME),
        (_line("", "hotline", "79161234567"), LineRefusal.UNIQUEID),
        (_line("1.1 2", "hotline", "79161234567"), LineRefusal.UNIQUEID),
        (_line("u" * 151, "hotline", "79161234567"), LineRefusal.UNIQUEID),
        (_line("1.1", "hotline", "7").replace("|callbackd|", "|sales|"), LineRefusal.MARKER),
        (_line("1.1", "hotline", "7").replace("|NONE|", "|PJSIP/1|"), LineRefusal.AGENT),
    ],
)
def test_hostile_lines_are_refused_whole(line: str, refusal: LineRefusal) -> None:
    assert parse_caller_pays_line(line) is refusal


@pytest.mark.parametrize(
    "line",
    [
        "1795432685|NONE|NONE|NONE|QUEUESTART|\n",
        "1763812800|1763812790.5|sales|NONE|ENTERQUEUE||79161234567|1\n",
        "1763812830|1763812790.5|sales|NONE|ABANDON|1|1|30\n",
        "garbage line\n",
        "\n",
        # Our event name in another field is not our line.
        "1795432685|1.1|callbackd|CALLBACKD_CALLERPAYS|NONE|hotline|79161234567\n",
    ],
)
def test_other_lines_are_not_caller_pays_lines(line: str) -> None:
    assert parse_caller_pays_line(line) is None


def test_an_unknown_campaign_is_refused_by_the_same_verdict_as_the_live_event() -> None:
    line = parse_caller_pays_line(_line("1.1", "nosuchline", "79161234567"))
    assert isinstance(line, CallerPaysLine)
    campaigns = {"hotline": HOTLINE}
    assert judge_caller_pays("pbx", line.campaign, line.raw_number, campaigns, POLICY) == (
        CallerPaysSkip("no_client_first_campaign")
    )
    known = parse_caller_pays_line(WRITTEN_BY_ASTERISK)
    assert isinstance(known, CallerPaysLine)
    # The number that reaches a request (and later an Originate) is the policy's E.164.
    assert judge_caller_pays("pbx", known.campaign, known.raw_number, campaigns, POLICY) == (
        CallerPaysStore(campaign=HOTLINE, number="+79161234567")
    )


def test_log_parsing_keeps_to_the_horizon_and_refuses_lines_from_the_future() -> None:
    lines = [
        _line("old.1", "hotline", "79161234567", stamp=1795432000),
        _line("old.2", "hotline", "7916&1234567", stamp=1795432001),  # old: not even counted
        "1795432600|1795432600.1|sales|NONE|ENTERQUEUE||79161234567|1\n",
        _line("new.1", "hotline", "79161234567", stamp=1795432685),
        _line("new.2", "hotline", "7916&1234567", stamp=1795432686),
        _line("future.1", "hotline", "79161234567", stamp=1795439999),
    ]
    since = datetime.fromtimestamp(1795432600, UTC)
    until = datetime.fromtimestamp(1795432700, UTC)
    parsed = list(parse_caller_pays_log(lines, since=since, until=until))
    assert [p.uniqueid if isinstance(p, CallerPaysLine) else p for p in parsed] == [
        "new.1",
        LineRefusal.NUMBER,
        LineRefusal.TIME,
    ]


# ----------------------------------------------------------------- replay (real Postgres)


async def _hotline(pool: Any) -> CampaignRef:
    campaign_id = await pool.fetchval(
        "INSERT INTO campaigns (name, pbx, queue, mode) "
        "VALUES ('hotline', 'pbx', 'help', 'client_first') RETURNING id"
    )
    return CampaignRef(
        id=campaign_id,
        name="hotline",
        pbx="pbx",
        queue="help",
        min_hold_seconds=0,
        priority=0,
        initial_delay=timedelta(0),
        expiry=timedelta(days=1),
    )


def _services(
    pool: Any, campaign: CampaignRef, log_file: Path
) -> tuple[CallerPaysCapture, QueueLogReplayer]:
    caller_pays = CallerPaysCapture(pool, {campaign.name: campaign}, POLICY)
    replayer = QueueLogReplayer(
        AbandonCapture(pool, {}, POLICY),
        pbx="pbx",
        path=log_file,
        caller_pays=caller_pays,
    )
    return caller_pays, replayer


def _recent() -> int:
    return int(datetime.now(UTC).timestamp()) - 60


@pytest.mark.postgres
async def test_replay_stores_a_missed_call_once_and_refuses_the_rest(
    pool: Any, tmp_path: Path
) -> None:
    campaign = await _hotline(pool)
    stamp = _recent()
    log_file = tmp_path / "queue_log"
    log_file.write_text(
        _line("missed.1", "hotline", "79161234567", stamp=stamp)
        + _line("unknown.1", "nosuchline", "79161230000", stamp=stamp)
        + _line("hostile.1", "hotline", "7916&1234567", stamp=stamp)
        + _line("hostile.2", "hotline", "79161234567@evil", stamp=stamp)
        + _line("ancient.1", "hotline", "79160000001", stamp=stamp - 3 * 86400)
        # A caller id with a "\r" inside Asterisk's own ENTERQUEUE line (written unescaped):
        # one line, not the start of a caller-pays line of the caller's making.
        + f"{stamp}|{stamp}.9|sales|NONE|ENTERQUEUE||7916\r"
        + _line("forged.1", "hotline", "79160000002", stamp=stamp).rstrip("\n")
        + "|1\n"
    )
    _, replayer = _services(pool, campaign, log_file)
    first = (await replayer.replay()).caller_pays
    second = (await replayer.replay()).caller_pays
    assert (first.read, first.created, first.skipped, first.refused) == (2, 1, 1, 2)
    assert (second.read, second.created, second.already_known, second.refused) == (2, 0, 2, 2)
    [request] = await pool.fetch("SELECT * FROM callback_requests")
    assert request["number"] == "+79161234567"
    assert request["source"] == "caller_pays"
    assert request["uniqueid"] == "missed.1"
    assert request["first_joined_at"] == datetime.fromtimestamp(stamp, UTC)  # the call's time
    assert request["due_at"] <= datetime.now(UTC)
    calls = dict(await pool.fetch("SELECT uniqueid, outcome FROM caller_pays_calls"))
    assert calls == {"missed.1": "stored", "unknown.1": "no_client_first_campaign"}


@pytest.mark.postgres
async def test_a_live_event_and_its_replay_make_one_request_in_either_order(
    pool: Any, tmp_path: Path
) -> None:
    campaign = await _hotline(pool)
    stamp = _recent()
    log_file = tmp_path / "queue_log"
    log_file.write_text(
        _line("live-first", "hotline", "79161234567", stamp=stamp)
        + _line("replay-first", "hotline", "79161239999", stamp=stamp)
    )
    caller_pays, replayer = _services(pool, campaign, log_file)

    async def live(uniqueid: str, number: str) -> CallerPaysOutcome:
        return await caller_pays.record(
            pbx="pbx", uniqueid=uniqueid, campaign_name="hotline", raw_number=number
        )

    assert await live("live-first", "79161234567") is CallerPaysOutcome.CREATED
    report = (await replayer.replay()).caller_pays
    assert (report.created, report.already_known) == (1, 1)
    assert await live("replay-first", "79161239999") is CallerPaysOutcome.DUPLICATE
    rows = await pool.fetch("SELECT number, uniqueid FROM callback_requests ORDER BY number")
    assert [(r["number"], r["uniqueid"]) for r in rows] == [
        ("+79161234567", "live-first"),
        ("+79161239999", "replay-first"),
    ]


@pytest.mark.postgres
async def test_a_live_event_racing_its_replay_makes_one_request(pool: Any, tmp_path: Path) -> None:
    campaign = await _hotline(pool)
    stamp = _recent()
    calls = {f"race.{n}": f"791612300{n:02d}" for n in range(20)}
    log_file = tmp_path / "queue_log"
    log_file.write_text("".join(_line(u, "hotline", n, stamp=stamp) for u, n in calls.items()))
    caller_pays, replayer = _services(pool, campaign, log_file)

    async def live(uniqueid: str, number: str, delay: float) -> CallerPaysOutcome:
        await asyncio.sleep(delay)  # spread over the replay: before, during and after it
        return await caller_pays.record(
            pbx="pbx", uniqueid=uniqueid, campaign_name="hotline", raw_number=number
        )

    replay = asyncio.create_task(replayer.replay())
    outcomes = await asyncio.gather(
        *(live(u, n, i * 0.01) for i, (u, n) in enumerate(calls.items()))
    )
    report = (await replay).caller_pays
    assert report.created + outcomes.count(CallerPaysOutcome.CREATED) == 20
    assert report.already_known + outcomes.count(CallerPaysOutcome.DUPLICATE) == 20
    assert await pool.fetchval("SELECT count(*) FROM callback_requests") == 20
    assert await pool.fetchval("SELECT count(*) FROM caller_pays_calls") == 20
