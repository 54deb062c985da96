"""Pytest fixtures around a real Synapse (one per session) and throwaway source databases.

Registered as a plugin from tests/conftest.py (``pytest_plugins = ["tests.synapse_fixtures"]``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from listener.sim import bridge, synapse_writer
from tests import pg
from tests.synapse_server import SynapseServer, template_name


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A real Synapse for the whole session (its schema is migrated once into a template)."""
    server = SynapseServer(
        tmp_path_factory.mktemp("synapse"), pg.unique_name("synapse_test"), use_template=True
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.drop_database()


@pytest.fixture
async def synapse_db(synapse_server: SynapseServer) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the running Synapse's database (read it; Synapse owns the writes)."""
    conn = await asyncpg.connect(synapse_server.db_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def http_writer(
    synapse_server: SynapseServer,
) -> AsyncIterator[synapse_writer.HttpSynapseWriter]:
    writer = synapse_writer.HttpSynapseWriter(
        synapse_server.base_url,
        as_token=synapse_server.as_token,
        server_name=synapse_server.server_name,
    )
    async with writer:
        yield writer


@pytest.fixture(scope="session")
async def bridge_template() -> AsyncIterator[str]:
    async def setup(conn: asyncpg.Connection) -> None:
        await conn.execute(bridge.fixture_sql("bridge_v29.sql"))

    name = await pg.build_template(pg.unique_name("bridge_tpl"), setup)
    yield name
    await pg.drop_database(name)


@pytest.fixture
async def bridge_pool(bridge_template: str) -> AsyncIterator[asyncpg.Pool]:
    """A fresh bridge database (bridgev2 schema v29) per test."""
    name = pg.unique_name("bridge")
    url = await pg.create_database(name, template=bridge_template)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
        await pg.drop_database(name)


@pytest.fixture
async def synapse_subset_pool() -> AsyncIterator[asyncpg.Pool]:
    """A fresh database with only listener/sim/fixtures/synapse_subset.sql (no Synapse)."""
    name = pg.unique_name("synapse_subset")
    url = await pg.create_database(name, collate_c=True)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await pool.execute(bridge.fixture_sql("synapse_subset.sql"))
        yield pool
    finally:
        await pool.close()
        await pg.drop_database(name)


@pytest.fixture
async def synapse_real_schema_pool(synapse_server: SynapseServer) -> AsyncIterator[asyncpg.Pool]:
    """A clone of Synapse's migrated schema with no Synapse attached (for the SQL writer)."""
    name = pg.unique_name("synapse_clone")
    url = await pg.create_database(name, template=template_name())
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
        await pg.drop_database(name)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261127)


def sql_writer(
    pool: asyncpg.Pool, media_store: Path, rng: random.Random
) -> synapse_writer.SqlSynapseWriter:
    return synapse_writer.SqlSynapseWriter(
        pool, server_name="localhost", media_store_path=media_store, rng=rng
    )
