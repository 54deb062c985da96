"""Shared fixtures: template databases built once per session from the shipped SQL files."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from listener import service, settings
from listener.schema import migrate
from listener.sim import bridge as simulator
from listener.sim import synapse_writer
from tests import pg

pytest_plugins = ["tests.synapse_fixtures"]

SESSION = uuid.uuid4().hex[:8]


def psql_file(url: str, path: Path, *variables: str) -> None:
    """Run a SQL file exactly as an operator would."""
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)]
    for variable in variables:
        args[1:1] = ["-v", variable]
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
async def bridge_template() -> AsyncIterator[str]:
    """A bridge database (real bridgev2 v29 shapes) with the trigger installed by psql."""
    name = f"tpl_bridge_{SESSION}"

    async def setup(conn: asyncpg.Connection) -> None:
        await conn.execute(simulator.fixture_sql("bridge_v29.sql"))
        # What mautrix-go adds when encryption.allow is on (its crypto store, same database).
        await conn.execute(simulator.fixture_sql("crypto_store_v21.sql"))

    await pg.build_template(name, setup)
    psql_file(pg.url_for(name), pg.REPO / "sql" / "triggers.sql")
    yield name
    await pg.drop_database(name)


@pytest.fixture(scope="session")
async def synapse_template() -> AsyncIterator[str]:
    """Synapse's tables that the archiver reads (columns as Synapse 1.163 creates them)."""
    name = f"tpl_synapse_{SESSION}"

    async def setup(conn: asyncpg.Connection) -> None:
        await conn.execute(simulator.fixture_sql("synapse_subset.sql"))

    await pg.build_template(name, setup)
    yield name
    await pg.drop_database(name)


@pytest.fixture(scope="session")
async def archive_template() -> AsyncIterator[str]:
    name = f"tpl_archive_{SESSION}"

    async def setup(conn: asyncpg.Connection) -> None:
        await migrate.migrate(conn)

    await pg.build_template(name, setup)
    yield name
    await pg.drop_database(name)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class World:
    """A bridge, a Synapse (schema subset, written directly) and an archive, per test."""

    bridge_url: str
    synapse_url: str
    archive_url: str
    media_store: Path
    bridge: asyncpg.Pool
    synapse: asyncpg.Pool
    archive: asyncpg.Pool
    sim: simulator.BridgeSimulator
    writer: synapse_writer.SqlSynapseWriter
    services: list[service.Service] = field(default_factory=list)

    def settings(self, **overrides: Any) -> settings.Settings:
        values: dict[str, Any] = {
            "whatsapp_db_url": self.bridge_url,
            "synapse_db_url": self.synapse_url,
            "archive_db_url": self.archive_url,
            "poll_interval_ms": 200,
            "missing_event_timeout_s": 2.0,
            "missing_event_retry_s": 0.1,
            "listener_probe_interval_s": 1.0,
            "listener_probe_timeout_s": 1.0,
            "reconnect_max_backoff_s": 0.5,
            "shutdown_grace_s": 5.0,
            "media_store_path": self.media_store,
        }
        values.update(overrides)
        return settings.Settings(**values)

    @contextlib.asynccontextmanager
    async def running(self, **overrides: Any) -> AsyncIterator[service.Service]:
        """An archiver service running in this event loop; stopped (drained) on exit."""
        svc = service.Service(self.settings(**overrides))
        await svc.open()
        task = asyncio.create_task(svc.run(), name="service-under-test")
        await asyncio.wait_for(svc.ready.wait(), 10)
        self.services.append(svc)
        try:
            yield svc
        finally:
            svc.stop_event.set()
            await asyncio.wait_for(task, 30)
            await svc.close()
            assert svc.crashed is None, f"service task crashed: {svc.crashed!r}"

    async def archived_count(self) -> int:
        return int(await self.archive.fetchval("SELECT count(*) FROM messages"))

    async def archived_ids(self) -> set[str]:
        return {r["event_id"] for r in await self.archive.fetch("SELECT event_id FROM messages")}

    async def wait_archived(self, event_ids: set[str], *, timeout_s: float = 10.0) -> None:
        async def present() -> bool:
            rows = await self.archive.fetch(
                "SELECT event_id FROM messages WHERE event_id = ANY($1::text[])", list(event_ids)
            )
            return len(rows) == len(event_ids)

        await wait_until(present, timeout_s=timeout_s, what=f"{len(event_ids)} archived messages")


@pytest.fixture
async def world(
    bridge_template: str, synapse_template: str, archive_template: str, tmp_path: Path
) -> AsyncIterator[World]:
    suffix = uuid.uuid4().hex[:8]
    names = [f"t_bridge_{suffix}", f"t_synapse_{suffix}", f"t_archive_{suffix}"]
    urls = [
        await pg.create_database(names[0], template=bridge_template),
        await pg.create_database(names[1], template=synapse_template),
        await pg.create_database(names[2], template=archive_template),
    ]
    pools = [await asyncpg.create_pool(url, min_size=1, max_size=4) for url in urls]
    media_store = tmp_path / "media_store"
    media_store.mkdir()
    rng = random.Random(1234)
    writer = synapse_writer.SqlSynapseWriter(
        pools[1], server_name="example.org", media_store_path=media_store, rng=rng
    )
    sim = simulator.BridgeSimulator(pools[0], writer, rng=rng)
    await sim.setup()
    w = World(*urls, media_store, *pools, sim=sim, writer=writer)  # type: ignore[call-arg]
    try:
        yield w
    finally:
        for pool in pools:
            await pool.close()
        for name in names:
            await pg.drop_database(name)
