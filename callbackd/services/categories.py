"""Customer-category rules follow the configuration: the table is the [categories] tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbackd.db.sql import load_queries
from callbackd.settings import CategoryRule


async def sync_categories(conn: Any, categories: Mapping[str, CategoryRule]) -> None:
    """Make customer_categories hold exactly the configured rules (migration 0019), for the
    statements that give requests their priority and for the caller lookup."""
    names = list(categories)
    await conn.execute(
        load_queries("agi")["sync_categories"],
        names,
        [categories[name].priority for name in names],
        [categories[name].skip_queue for name in names],
        [categories[name].sticky_ring_seconds for name in names],
    )
