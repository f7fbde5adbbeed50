"""The benchmarks' own AMI links (watchers, callers, background traffic) to the lab Asterisk."""

from __future__ import annotations

from typing import Any

from panoramisk.message import Message

from callbackd.ami.link import AmiLink, AmiLinkConfig
from callbackd.lab.asterisk import AmiAccount


def bench_link(name: str, account: AmiAccount, handler: Any, events: set[str] | None) -> AmiLink:
    """A link whose ActionIDs are not callbackd's: the daemon's eventfilter lets the
    OriginateResponses of callbackd-prefixed actions in, and these are not the daemon's."""
    return AmiLink(
        AmiLinkConfig(
            name,
            account.host,
            account.port,
            account.username,
            account.secret,
            action_id_prefix=f"bench-{name}",
        ),
        handler=handler,
        events=events,
    )


async def ignore_events(_link: AmiLink, _event: Message) -> None:
    """The handler of a link that only sends actions."""
    return
