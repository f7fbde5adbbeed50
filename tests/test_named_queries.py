"""Every named query of callbackd/db/queries prepares against the migrated schema.

A statement is otherwise first parsed by the server when its code path runs; a schema change
(a column's type, migration 0015's domains) can make a parameter's type ambiguous in a query
no other test happens to run.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import asyncpg
import pytest

from callbackd.db.sql import load_queries

pytestmark = pytest.mark.postgres

QUERIES = {
    entry.name.removesuffix(".sql"): load_queries(entry.name.removesuffix(".sql"))
    for entry in (resources.files("callbackd.db") / "queries").iterdir()
    if entry.name.endswith(".sql")
}


def test_every_query_file_is_covered() -> None:
    assert "capture" in QUERIES
    assert "dialer" in QUERIES
    assert sum(len(queries.by_name) for queries in QUERIES.values()) > 50


async def test_every_query_prepares(db: Any) -> None:
    refused = []
    for source, queries in sorted(QUERIES.items()):
        for name, text in queries.by_name.items():
            try:
                statement = await db.prepare(text)
            except asyncpg.PostgresError as err:
                refused.append(f"{source}:{name}: {type(err).__name__}: {err}")
                continue
            assert statement.get_query() == text
    assert refused == []
