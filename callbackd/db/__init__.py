"""Postgres access: named SQL, migrations, connection pool, rows as frozen models."""
