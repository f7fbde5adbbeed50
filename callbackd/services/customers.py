"""Customers: number -> category, priority, queue bypass; set by the CRM (API) or the CLI.

Capture and the API add a customer's priority to new requests; the inbound lookup (FastAGI)
reads the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from callbackd.db.models import Customer
from callbackd.db.sql import load_queries
from callbackd.domain.numbers import NumberPolicy
from callbackd.services.requests import MAX_PAGE, Invalid, NotFound, RequestService


@dataclass(frozen=True)
class CustomerFields:
    category: str = "regular"
    priority: int = 0
    skip_queue: bool = False
    note: str | None = None


@dataclass
class CustomerService:
    pool: Any
    policy: NumberPolicy
    timeout: float = 10.0
    _queries: Any = field(default_factory=lambda: load_queries("customers"))

    def normalise(self, raw: str) -> str:
        return RequestService(self.pool, self.policy, {}).normalise(raw)

    def lookup_number(self, raw: str) -> str:
        return RequestService(self.pool, self.policy, {}).lookup_number(raw)

    async def upsert(self, number: str, fields: CustomerFields) -> tuple[Customer, bool]:
        """Create or replace the customer; True when it was created."""
        e164 = self.normalise(number)
        if not fields.category or len(fields.category) > 64:
            raise Invalid("category must be 1-64 characters")
        async with self.pool.acquire(timeout=self.timeout) as conn:
            row = await conn.fetchrow(
                self._queries["upsert_customer"],
                e164,
                fields.category,
                fields.priority,
                fields.skip_queue,
                fields.note,
            )
        created = bool(row["created"])
        customer = Customer.from_record({k: v for k, v in row.items() if k != "created"})
        structlog.get_logger("callbackd.customers").info(
            "customer created" if created else "customer updated",
            number=customer.number,
            category=customer.category,
            priority=customer.priority,
            skip_queue=customer.skip_queue,
        )
        return customer, created

    async def get(self, number: str) -> Customer:
        e164 = self.lookup_number(number)
        async with self.pool.acquire(timeout=self.timeout) as conn:
            row = await conn.fetchrow(self._queries["get_customer"], e164)
        if row is None:
            raise NotFound("no such customer")
        return Customer.from_record(row)

    async def list_customers(
        self, *, after: str | None = None, category: str | None = None, limit: int = 50
    ) -> list[Customer]:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(
                self._queries["list_customers"], after, category, max(1, min(limit, MAX_PAGE))
            )
        return [Customer.from_record(r) for r in rows]

    async def delete(self, number: str) -> None:
        e164 = self.lookup_number(number)
        async with self.pool.acquire(timeout=self.timeout) as conn:
            deleted = await conn.fetchval(self._queries["delete_customer"], e164)
        if deleted is None:
            raise NotFound("no such customer")
        structlog.get_logger("callbackd.customers").info("customer deleted", number=e164)
