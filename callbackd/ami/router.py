"""One AMI event handler per event name (UserEvents by their own name), for every PBX link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from panoramisk.message import Message

from callbackd.ami.link import AmiLink

Handler = Callable[[AmiLink, Message], Awaitable[None]]


def route_key(message: Message) -> str:
    """``queuecallerabandon``; for UserEvents ``userevent:<their name>``."""
    name = str(message.get("event", "")).lower()
    if name == "userevent":
        return f"userevent:{str(message.get('userevent', '')).lower()}"
    return name


class EventRouter:
    """Dispatches each event to the handler registered for it; others are not ours."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = {key.lower(): handler for key, handler in handlers.items()}

    @property
    def event_names(self) -> frozenset[str]:
        """AMI event names to accept on the link (UserEvent once for all its kinds)."""
        return frozenset(key.split(":", 1)[0] for key in self._handlers)

    async def __call__(self, link: AmiLink, message: Message) -> None:
        handler = self._handlers.get(route_key(message))
        if handler is not None:
            await handler(link, message)
