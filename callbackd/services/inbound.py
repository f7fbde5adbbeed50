"""The ``inbound`` lookup: who is calling, and where the shipped dialplan should send them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from callbackd.db.sql import load_queries
from callbackd.domain.inbound import (
    CallerFacts,
    InboundDecision,
    decide_inbound,
    safe_interface,
    sticky_available,
)
from callbackd.domain.numbers import Accepted, NumberPolicy, classify_caller
from callbackd.domain.operators import OperatorBoard

__all__ = ["BoardPresence", "InboundService", "Presence"]

_QUERIES = load_queries("agi")


class Presence(Protocol):
    """Whether an operator can take a call now, per whatever the transport can see."""

    async def available(self, queue: str, interface: str) -> bool: ...


class BoardPresence:
    """The daemon's live operator board (kept from AMI queue events)."""

    def __init__(self, boards: Mapping[str, OperatorBoard], pbx: str) -> None:
        self._boards = boards
        self._pbx = pbx

    async def available(self, queue: str, interface: str) -> bool:
        board = self._boards.get(self._pbx)
        if board is None:
            return False
        member = next((m for m in board.members(queue) if m.interface == interface), None)
        return sticky_available(member)


class InboundService:
    def __init__(self, *, policy: NumberPolicy, pbx: str, sticky_days: int) -> None:
        self.policy = policy
        self.pbx = pbx
        self.sticky_days = sticky_days

    def caller(self, raw_number: str, presentation: str | None = None) -> str | None:
        """The caller's E.164 number, or None (withheld, invalid, refused by policy)."""
        verdict = classify_caller(raw_number, self.policy, presentation=presentation)
        return verdict.e164 if isinstance(verdict, Accepted) else None

    async def facts(self, conn: Any, number: str) -> CallerFacts:
        row = await conn.fetchrow(_QUERIES["caller_facts"], number, self.pbx, self.sticky_days)
        return CallerFacts(
            category=row["category"],
            priority=int(row["priority"]),
            skip_queue=bool(row["skip_queue"]),
            last_operator=row["last_operator"] if self.sticky_days > 0 else None,
            pending=bool(row["pending"]),
            category_priority=row["category_priority"],
            category_skip_queue=row["category_skip_queue"],
            category_sticky_ring_seconds=row["category_sticky_ring_seconds"],
        )

    async def decide(
        self, conn: Any, raw_number: str, queue: str, presence: Presence
    ) -> InboundDecision:
        number = self.caller(raw_number)
        if number is None:
            return InboundDecision()
        facts = await self.facts(conn, number)
        interface = safe_interface(facts.last_operator)
        sticky_ok = bool(interface) and await presence.available(queue, interface)
        return decide_inbound(facts, sticky_ok=sticky_ok)
