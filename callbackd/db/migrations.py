"""Plain-SQL numbered migrations, applied in order under a Postgres advisory lock.

Files are ``NNNN_name.sql``. Each one runs in its own transaction and is recorded in
``schema_migrations`` with the SHA-256 of its text, so a second run is a no-op and an
already-applied file that was edited afterwards stops the run instead of being ignored.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from callbackd.db.sql import load_queries

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

# Any two callbackd processes migrating one database serialise on this key.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"callbackd.migrate").digest()[:8], "big", signed=True
)


class MigrationError(RuntimeError):
    """The migrations on disk and the ones recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    applied: tuple[Migration, ...]
    already_applied: int

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def default_migrations_dir() -> Path:
    """The shipped migrations: inside the wheel, or ``migrations/`` of a source checkout."""
    shipped = Path(str(resources.files("callbackd"))) / "_shipped" / "migrations"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[2] / "migrations"


def discover(directory: Path) -> list[Migration]:
    """Read every migration file in version order; anything that is not one is an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {found[version].file_name}"
            )
        found[version] = Migration(version, match["name"], path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(
    conn: Any, migrations: list[Migration], *, lock_timeout_seconds: float = 60.0
) -> MigrationReport:
    """Bring the database up to the given migrations; safe to run from several processes.

    ``conn`` is an asyncpg connection (not in a transaction).
    """
    queries = load_queries("migrations")
    await conn.execute(queries["set_lock_timeout"], f"{int(lock_timeout_seconds * 1000)}ms")
    await conn.execute(queries["lock"], ADVISORY_LOCK_KEY)
    try:
        await conn.execute(queries["create_migrations_table"])
        recorded = {row["version"]: row for row in await conn.fetch(queries["applied"])}
        on_disk = {m.version: m for m in migrations}
        for version, row in recorded.items():
            migration = on_disk.get(version)
            if migration is None:
                raise MigrationError(
                    f"the database has migration {version:04d}_{row['name']} applied, "
                    "which this callbackd does not know: is the database newer than the code?"
                )
            if migration.checksum != row["checksum"]:
                raise MigrationError(
                    f"{migration.file_name} was changed after it was applied on "
                    f"{row['applied_at']:%Y-%m-%d %H:%M}: recorded checksum "
                    f"{row['checksum'][:12]}, file now {migration.checksum[:12]}. Put schema "
                    "changes in a new migration file instead."
                )
        applied: list[Migration] = []
        for migration in migrations:
            if migration.version in recorded:
                continue
            started = time.monotonic()
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    queries["record"],
                    migration.version,
                    migration.name,
                    migration.checksum,
                    int((time.monotonic() - started) * 1000),
                )
            applied.append(migration)
        return MigrationReport(applied=tuple(applied), already_applied=len(recorded))
    finally:
        await conn.execute(queries["unlock"], ADVISORY_LOCK_KEY)


async def pending_versions(conn: Any, migrations: list[Migration]) -> list[int]:
    """Versions on disk that the database has not applied (the daemon refuses to run then)."""
    queries = load_queries("migrations")
    applied: set[int] = set()
    if await conn.fetchval(queries["table_exists"]):
        applied = {row["version"] for row in await conn.fetch(queries["applied"])}
    return sorted(m.version for m in migrations if m.version not in applied)
