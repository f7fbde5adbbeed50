"""The request route's dialogue against a scripted caller and the real Postgres: another
number keyed in, bad keys asked again a bounded number of times, the safe defaults."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callbackd.agi.routes import RouteDeps, SingleConnection, inbound_route, request_route
from callbackd.agi.session import AgiCall
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.inbound import InboundService, Presence
from callbackd.settings import AgiSettings, Campaign
from tests.agi_lab import crm_campaign

CALLER = "79161234567"


class ScriptedCaller:
    """An AgiChannel whose caller answers each GET DATA with the next keys."""

    def __init__(
        self, keys: list[str], caller: str = CALLER, *, interrupt: dict[str, str] | None = None
    ) -> None:
        self._keys = list(keys)
        self._interrupt = dict(interrupt or {})
        """Sound -> the key the caller presses while it plays (once)."""
        self.env: Mapping[str, str] = {
            "agi_channel": "Local/x;2",
            "agi_callerid": caller,
            "agi_uniqueid": "1.2",
            "agi_arg_1": "request",
            "agi_arg_2": "lab-sales",
        }
        self.hung_up = False
        self.commands: list[str] = []

    async def exchange(self, command: str, timeout: float) -> tuple[str, list[str]]:
        self.commands.append(command)
        if command.startswith("GET DATA"):
            keys = self._keys.pop(0) if self._keys else ""
            return f"200 result={keys}{' (timeout)' if not keys else ''}", []
        if command.startswith("STREAM FILE") or command.startswith("SAY"):
            sound = command.split()[2]
            key = self._interrupt.pop(sound, "") if command.startswith("STREAM FILE") else ""
            if key and key in command.split('"')[1]:
                return f"200 result={ord(key)} endpos=50", []
            return "200 result=0 endpos=100", []
        if command.startswith("ANSWER") or command.startswith("EXEC"):
            return "200 result=0", []
        return "200 result=1", []

    def variable(self, name: str) -> str | None:
        prefix = f"SET VARIABLE {name} "
        found = [c[len(prefix) :].strip('"') for c in self.commands if c.startswith(prefix)]
        return found[-1] if found else None


class _NoPresence:
    async def available(self, queue: str, interface: str) -> bool:
        return False


async def _run(
    db: Any, caller: ScriptedCaller, *, campaign_values: Mapping[str, Any] | None = None, **agi: Any
) -> None:
    await db.execute(
        "INSERT INTO campaigns (name, pbx, queue, mode) VALUES ('sales', 'lab', 'lab-sales', "
        "'crm_task') ON CONFLICT DO NOTHING"
    )
    campaign = Campaign.model_validate(crm_campaign(**(campaign_values or {})))
    settings = AgiSettings.model_validate({"ivr_read_back": False, "prompt_invalid": "beep", **agi})

    def presence(_call: AgiCall) -> Presence:
        return _NoPresence()

    deps = RouteDeps(
        database=SingleConnection(db),
        inbound=InboundService(policy=NumberPolicy.build("RU"), pbx="lab", sticky_days=30),
        agi=settings,
        campaigns={"lab-sales": ("sales", campaign)},
        presence=presence,
    )
    await request_route(AgiCall(caller), deps)


async def _requests(db: Any) -> list[Any]:
    rows: list[Any] = await db.fetch("SELECT * FROM callback_requests ORDER BY id")
    return rows


async def test_another_number_keyed_in_and_confirmed(db: Any) -> None:
    caller = ScriptedCaller(["79031112233", "1", "0"])
    await _run(db, caller)
    [row] = await _requests(db)
    assert row["number"] == "+79031112233"
    assert caller.variable("CALLBACKD_REQUEST_STATUS") == "stored"
    assert caller.variable("CALLBACKD_REQUEST_ID") == str(row["id"])


async def test_no_keys_at_all_gives_the_safe_defaults_after_bounded_prompts(db: Any) -> None:
    caller = ScriptedCaller([])
    before = datetime.now(UTC)
    await _run(db, caller, ivr_attempts=2)
    [row] = await _requests(db)
    # The caller's own number (they asked for the callback), as soon as possible.
    assert row["number"] == f"+{CALLER}"
    assert row["preferred_at"] is None
    assert row["due_at"] >= before
    asked = [c for c in caller.commands if c.startswith("GET DATA")]
    assert len(asked) == 4  # 2 for the number, 2 for the time: bounded
    # "Invalid" before each question asked again (keys may interrupt it), not after the
    # last attempt: the default is taken then, nobody is asked to try again.
    assert caller.commands.count('STREAM FILE beep "0123456789*#"') == 2


async def test_withheld_caller_without_keys_stores_nothing(db: Any) -> None:
    caller = ScriptedCaller(["12", "", "*"], caller="anonymous")
    await _run(db, caller)
    assert await _requests(db) == []
    assert caller.variable("CALLBACKD_REQUEST_STATUS") == "no_number"


async def test_a_second_request_re_times_the_open_one(db: Any) -> None:
    await _run(db, ScriptedCaller(["1", "0"]))
    await _run(db, ScriptedCaller(["1", "360"]))
    [row] = await _requests(db)
    assert row["preferred_at"] is not None
    assert row["due_at"] == row["preferred_at"]


async def test_unknown_queue_writes_nothing(db: Any) -> None:
    caller = ScriptedCaller(["1"])
    caller.env = {**caller.env, "agi_arg_2": "no-such-queue"}
    await _run(db, caller)
    assert await _requests(db) == []
    assert caller.variable("CALLBACKD_REQUEST_STATUS") == "no_campaign"
    assert not any(c.startswith("GET DATA") for c in caller.commands)


async def test_the_campaigns_language_is_set_before_anything_is_played(db: Any) -> None:
    caller = ScriptedCaller(["1", "0"])
    await _run(db, caller, campaign_values={"language": "ru"})
    assert caller.commands[0] == 'SET VARIABLE CHANNEL(language) "ru"'
    assert caller.commands[1] == "ANSWER"


async def _inbound(db: Any, campaign_values: Mapping[str, Any]) -> ScriptedCaller:
    caller = ScriptedCaller([])
    caller.env = {**caller.env, "agi_arg_1": "inbound"}
    campaign = Campaign.model_validate(crm_campaign(**campaign_values))
    deps = RouteDeps(
        database=SingleConnection(db),
        inbound=InboundService(policy=NumberPolicy.build("RU"), pbx="lab", sticky_days=30),
        agi=AgiSettings(),
        campaigns={"lab-sales": ("sales", campaign)},
        presence=lambda _call: _NoPresence(),
    )
    await inbound_route(AgiCall(caller), deps)
    return caller


async def test_inbound_sets_the_language_only_when_the_campaign_chose_one(db: Any) -> None:
    chosen = await _inbound(db, {"language": "ru"})
    assert chosen.commands[0] == 'SET VARIABLE CHANNEL(language) "ru"'
    # No language in the campaign: the channel keeps what the site's inbound route set.
    kept = await _inbound(db, {})
    assert not any("CHANNEL(language)" in command for command in kept.commands)
    # The lookup's answers still go out, in one round trip.
    assert [c for c in kept.commands if c.startswith("EXEC MSet")] != []


async def test_a_key_during_the_number_read_back_starts_the_answer(db: Any) -> None:
    # The caller presses 1 while their number is announced: confirmed, no prompt waited for.
    caller = ScriptedCaller(["", "0"], interrupt={"callbackd/ivr-your-number": "1"})
    await _run(db, caller, ivr_read_back=True)
    [row] = await _requests(db)
    assert row["number"] == f"+{CALLER}"
    assert 'STREAM FILE callbackd/ivr-your-number "0123456789*#"' in caller.commands
    # The rest of the answer is read after a silence; the confirm prompt never played.
    assert "GET DATA silence/1 6000 15" in caller.commands
    assert not any("ivr-confirm-number" in c for c in caller.commands)


async def test_a_key_during_the_invalid_prompt_starts_the_next_answer(db: Any) -> None:
    # A bad time, then "3" pressed during "invalid" and "30" after: in 30 minutes.
    caller = ScriptedCaller(["1", "7", "30"], interrupt={"beep": "3"})
    before = datetime.now(UTC)
    await _run(db, caller)
    [row] = await _requests(db)
    assert row["preferred_at"] is not None
    assert 29 * 60 <= (row["preferred_at"] - before).total_seconds() <= 31 * 60


async def test_russian_read_back_is_24_hour_after_the_request_is_stored(db: Any) -> None:
    caller = ScriptedCaller(["1", "21430"])
    await _run(db, caller, campaign_values={"language": "ru"}, ivr_read_back=True)
    [row] = await _requests(db)
    assert row["preferred_at"] is not None
    said = [c for c in caller.commands if c.startswith(("STREAM FILE", "SAY"))]
    stored = caller.commands.index('SET VARIABLE CALLBACKD_REQUEST_STATUS "stored"')
    assert said[-5:] == [
        'STREAM FILE callbackd/ivr-booked-for ""',
        'STREAM FILE callbackd/ivr-tomorrow ""',
        'SAY NUMBER 14 ""',
        'SAY NUMBER 30 ""',
        'STREAM FILE callbackd/ivr-thank-you ""',
    ]
    assert caller.commands.index('STREAM FILE callbackd/ivr-booked-for ""') > stored


async def test_english_read_back_uses_asterisks_12_hour_clock(db: Any) -> None:
    caller = ScriptedCaller(["1", "0"])
    await _run(db, caller, ivr_read_back=True)
    said = [c for c in caller.commands if c.startswith(("STREAM FILE", "SAY"))]
    assert said[-2:] == [
        'STREAM FILE callbackd/ivr-booked-soonest ""',
        'STREAM FILE callbackd/ivr-thank-you ""',
    ]
    caller = ScriptedCaller(["1", "21430"])
    await _run(db, caller, ivr_read_back=True)
    [clock] = [c for c in caller.commands if c.startswith("SAY DATETIME")]
    assert '"IMp"' in clock
