"""Does the AMI account have what callbackd needs? Checked on every (re)connect.

Write permissions show in ``ListCommands`` (it lists only the actions the account may
send). Read classes do not show anywhere, so callbackd proves them: it originates a probe
call into the shipped ``callbackd-probe`` context and expects its ``OriginateResponse``
(read class ``call``) and the ``UserEvent CallbackdProbe`` it sends (read class ``user``).
The ``agent`` class cannot be probed without touching a real queue; it is named in the
report as unverified until the first queue event arrives.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import structlog
from panoramisk.message import Message

from callbackd import dialplan_contract as contract
from callbackd.ami.errors import AmiActionFailed, AmiTimeout
from callbackd.ami.link import AmiLink

PROBE_ROUTE = f"userevent:{contract.PROBE_EVENT.lower()}"


@dataclass(frozen=True)
class AccountCheck:
    pbx: str
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


class AccountVerifier:
    """Runs the checks as a link's on-up hook and receives the probe's UserEvent."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self.results: dict[str, AccountCheck] = {}
        self._log = structlog.get_logger("callbackd.ami.verify")

    async def on_probe_event(self, _link: AmiLink, message: Message) -> None:
        waiter = self._waiting.get(str(message.get("token", "")))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def verify(self, link: AmiLink) -> AccountCheck:
        missing: list[str] = []
        commands = await link.action({"Action": "ListCommands"}, timeout=self._timeout)
        allowed = {str(key).lower() for key in commands}
        if "originate" not in allowed:
            missing.append("write class 'originate' (Originate is not allowed)")
        if "hangup" not in allowed:
            missing.append("write class 'call' (Hangup is not allowed)")
        try:
            await link.action({"Action": "QueueStatus"}, as_list=True, timeout=self._timeout)
        except (AmiActionFailed, AmiTimeout) as err:
            missing.append(f"QueueStatus does not work: {err}")
        if "originate" in allowed:
            missing += await self._probe_read_classes(link)
        check = AccountCheck(pbx=link.name, missing=tuple(missing))
        self.results[link.name] = check
        log = self._log.bind(pbx=link.name)
        if check.ok:
            log.info("ami account verified", unverified=["read class 'agent'"])
        else:
            log.error("ami account lacks what callbackd needs", missing=list(check.missing))
        return check

    async def _probe_read_classes(self, link: AmiLink) -> list[str]:
        token = secrets.token_hex(8)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[token] = waiter
        missing: list[str] = []
        try:
            try:
                result = await link.action(
                    {
                        "Action": "Originate",
                        "Channel": f"Local/s@{contract.PROBE_CONTEXT}",
                        "Application": "Wait",
                        "Data": "1",
                        "Async": "true",
                        "Timeout": str(int(self._timeout * 1000)),
                        "ChannelId": f"callbackd-probe-{token}",
                        "Variable": f"{contract.VAR_PROBE_TOKEN}={token}",
                    },
                    timeout=self._timeout + 1,
                )
                outcome = result[-1] if isinstance(result, list) else result
                if str(outcome.get("response", "")).lower() != "success":
                    missing.append(
                        f"the probe call failed (reason {outcome.get('reason', '?')}): is "
                        f"{contract.SHIPPED_DIALPLAN_FILE} included in the dialplan?"
                    )
                    return missing
            except AmiTimeout:
                missing.append("read class 'call' (no OriginateResponse for the probe call)")
            except AmiActionFailed as err:
                missing.append(f"the probe call was refused: {err.message}")
                return missing
            try:
                async with asyncio.timeout(self._timeout):
                    await waiter
            except TimeoutError:
                missing.append(
                    f"read class 'user' (UserEvent {contract.PROBE_EVENT} not delivered; "
                    "check read= and eventfilter)"
                )
        finally:
            self._waiting.pop(token, None)
        return missing
