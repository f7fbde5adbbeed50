"""``callbackd migrate``: bring the database schema up to date."""

from __future__ import annotations

import asyncio

import asyncpg

from callbackd.db.migrations import (
    MigrationError,
    apply_migrations,
    default_migrations_dir,
    discover,
)
from callbackd.db.pool import connect
from callbackd.logs import configure_logging, get_logger
from callbackd.settings import Settings, redact_dsn

EXIT_OK = 0
EXIT_FAILED = 1


async def run_migrate(settings: Settings, *, lock_timeout: float) -> int:
    configure_logging(settings.logging, secrets=settings.secret_values())
    dsn = settings.database.dsn.get_secret_value()
    log = get_logger("callbackd.migrate", database=redact_dsn(dsn))
    try:
        migrations = discover(default_migrations_dir())
        conn = await connect(
            dsn,
            timeout=settings.database.connect_timeout_seconds,
            command_timeout=max(settings.database.command_timeout_seconds, lock_timeout + 5),
        )
    except MigrationError as err:
        log.error("migrations unreadable", reason=str(err))
        return EXIT_FAILED
    except (OSError, asyncpg.PostgresError, TimeoutError) as err:
        log.error("database unreachable", reason=_reason(err))
        return EXIT_FAILED
    try:
        report = await apply_migrations(conn, migrations, lock_timeout_seconds=lock_timeout)
    except MigrationError as err:
        log.error("migration refused", reason=str(err))
        return EXIT_FAILED
    except asyncpg.LockNotAvailableError:
        log.error("another process holds the migration lock", waited_seconds=lock_timeout)
        return EXIT_FAILED
    except asyncpg.PostgresError as err:
        log.error("migration failed", reason=_reason(err))
        return EXIT_FAILED
    finally:
        await asyncio.wait_for(conn.close(), timeout=5)
    for migration in report.applied:
        log.info("migration applied", migration=migration.file_name)
    log.info(
        "schema up to date",
        applied_now=len(report.applied),
        applied_before=report.already_applied,
    )
    return EXIT_OK


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
