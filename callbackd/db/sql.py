"""Named SQL: every query lives in a ``.sql`` file under ``callbackd/db/queries``.

A file holds one or more queries, each introduced by a ``-- name: <identifier>`` line; the
text up to the next such line is the query. Keeping SQL out of Python strings lets it be
read, reviewed and tested as SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$")


class SqlFileError(ValueError):
    """A named-SQL file is malformed (duplicate name, empty query, text before the first name)."""


@dataclass(frozen=True)
class Queries:
    """The queries of one ``.sql`` file, looked up by name."""

    source: str
    by_name: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.source}") from None


def parse_named_sql(text: str, *, source: str) -> Queries:
    """Split a named-SQL text into its queries."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _NAME_LINE.match(line.strip())
        if match:
            name = match["name"]
            if name in queries:
                raise SqlFileError(f"{source}:{lineno}: query {name!r} is defined twice")
            current = queries[name] = []
            continue
        if current is None:
            if line.strip() and not line.strip().startswith("--"):
                raise SqlFileError(f"{source}:{lineno}: SQL before the first '-- name:' line")
            continue
        current.append(line)
    result: dict[str, str] = {}
    for name, lines in queries.items():
        body = "\n".join(lines).strip()
        if not _has_statement(body):
            raise SqlFileError(f"{source}: query {name!r} is empty")
        result[name] = body
    return Queries(source=source, by_name=result)


def load_queries(name: str) -> Queries:
    """Load ``callbackd/db/queries/<name>.sql`` from the installed package."""
    path = resources.files("callbackd.db") / "queries" / f"{name}.sql"
    return parse_named_sql(path.read_text(encoding="utf-8"), source=f"queries/{name}.sql")


def load_queries_file(path: Path) -> Queries:
    """Load named SQL from an arbitrary file (tests, tools)."""
    return parse_named_sql(path.read_text(encoding="utf-8"), source=str(path))


def _has_statement(body: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in body.splitlines())
