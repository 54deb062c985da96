"""Apply the archive schema (``sql/archive/NNNN_*.sql``) in order, each once, atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every archiver-db process.
_MIGRATION_LOCK = 0x61726368  # "arch"

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS archive_schema_migrations (
    version     TEXT PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def archive_dir() -> Path:
    from listener.schema import sqlfiles

    return sqlfiles.sql_path("archive")


def migration_files(directory: Path | None = None) -> list[Path]:
    directory = directory or archive_dir()
    return sorted(p for p in directory.glob("[0-9][0-9][0-9][0-9]_*.sql") if p.is_file())


async def pending(conn: asyncpg.Connection) -> list[str]:
    """Migration versions not applied yet (all of them on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('archive_schema_migrations') IS NOT NULL")
    applied: set[str] = set()
    if exists:
        applied = {
            r["version"] for r in await conn.fetch("SELECT version FROM archive_schema_migrations")
        }
    return [p.stem for p in migration_files() if p.stem not in applied]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every pending migration; return the versions applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(_CREATE_LEDGER)
        done = {
            r["version"] for r in await conn.fetch("SELECT version FROM archive_schema_migrations")
        }
        for path in migration_files():
            if path.stem in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO archive_schema_migrations (version) VALUES ($1)", path.stem
                )
            logger.info("applied %s", path.stem, extra={"action": "migration_applied"})
            applied_now.append(path.stem)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
