"""listener/sim/fixtures/synapse_subset.sql must keep matching what a real Synapse creates."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = pytest.mark.synapse

TABLES = [
    "events", "event_json", "event_relations", "redactions", "rejections", "rooms",
    "room_memberships", "current_state_events", "room_stats_state", "profiles",
    "local_media_repository", "local_media_repository_thumbnails", "remote_media_cache",
    "remote_media_cache_thumbnails",
]  # fmt: skip

COLUMNS = """
SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
       COALESCE(column_default, '') AS column_default
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = ANY($1::text[])
ORDER BY table_name, ordinal_position
"""
INDEXES = """
SELECT indexname, replace(indexdef, 'IF NOT EXISTS ', '') AS indexdef
FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1::text[])
"""
# Unique indexes Synapse only builds in a background update, seconds after first start.
BACKGROUND_UNIQUE = {"profiles_full_user_id_key"}


async def _columns(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await conn.fetch(COLUMNS, TABLES)]


async def _indexes(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["indexname"]: r["indexdef"] for r in await conn.fetch(INDEXES, TABLES)}


async def test_subset__columns_types_nullability_match_real_synapse(
    synapse_db: asyncpg.Connection, synapse_subset_pool: asyncpg.Pool
) -> None:
    async with synapse_subset_pool.acquire() as subset:
        assert await _columns(subset) == await _columns(synapse_db)


async def test_subset__has_every_real_index_and_the_same_unique_keys(
    synapse_db: asyncpg.Connection, synapse_subset_pool: asyncpg.Pool
) -> None:
    real = await _indexes(synapse_db)
    async with synapse_subset_pool.acquire() as subset:
        ours = await _indexes(subset)
    missing = {name: d for name, d in real.items() if ours.get(name) != d}
    assert missing == {}
    extra_unique = {n for n, d in ours.items() if "UNIQUE" in d and n not in real}
    assert extra_unique <= BACKGROUND_UNIQUE


async def test_subset__covers_every_table_synapse_has_under_these_names(
    synapse_db: asyncpg.Connection,
) -> None:
    present = await synapse_db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
        TABLES,
    )
    assert sorted(r["tablename"] for r in present) == sorted(TABLES)
