"""Backends terminated under the archiver (``pg_terminate_backend``, as an admin, a restart or a
failover does): a dead connection is discarded and the work retried, never a dead task.

asyncpg may read the server's FATAL message before it sees the socket close, hand the
connection out again and fail the next query with ``InternalClientError`` (asyncpg#1069); the
archiver's connections discard themselves instead (``listener.db.connect.DiscardingConnection``).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time

import asyncpg

from listener.core import errors
from listener.db import connect
from tests import pg
from tests.conftest import World, wait_until


async def _terminate_loop(
    application_like: str, database: str | None, stop: asyncio.Event, rng: random.Random
) -> int:
    admin = await asyncpg.connect(pg.ADMIN_URL)
    killed = 0
    try:
        while not stop.is_set():
            killed += await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE $1 AND ($2::text IS NULL OR datname = $2) "
                "AND pid <> pg_backend_pid()) t",
                application_like,
                database,
            )
            await asyncio.sleep(rng.uniform(0.005, 0.05))
    finally:
        await admin.close()
    return killed


async def test_pool__terminated_connections_fail_as_connection_errors_and_are_replaced() -> None:
    name = f"archiver-db:test-{random.randrange(10**9)}"
    pool = await connect.create_pool(pg.ADMIN_URL, application_name=name, max_size=4)
    outcomes: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            try:
                await connect.fetch(pool, "SELECT $1::int", 1, label="q", error=errors.SourceError)
                outcomes["ok"] += 1
            except errors.SourceError:
                outcomes["source_error"] += 1
            await asyncio.sleep(0)

    try:
        killer = asyncio.create_task(_terminate_loop(name, None, stop, random.Random(3)))
        workers = [asyncio.create_task(worker()) for _ in range(3)]
        await asyncio.sleep(2.0)
        stop.set()
        # Any other exception (InternalClientError before the fix) fails the gather.
        killed, *_ = await asyncio.gather(killer, *workers)
        assert killed > 20
        assert outcomes["source_error"] > 0
        # The pool heals: fresh connections answer once the terminations stop.
        assert await pool.fetchval("SELECT 42") == 42
    finally:
        await pool.close()


async def test_service__backends_terminated_in_a_loop_never_stop_it(world: World) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    rng = random.Random(5)
    sent = []
    async with world.running(reconcile_interval_s=0.5, reconcile_grace_s=0.2) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        stop = asyncio.Event()
        killers = [
            asyncio.create_task(
                _terminate_loop("archiver-db%", url.rsplit("/", 1)[1], stop, random.Random(i))
            )
            for i, url in enumerate((world.bridge_url, world.synapse_url, world.archive_url))
        ]
        started = time.monotonic()
        while time.monotonic() - started < 8.0:
            chat = rng.choice(world.sim.chats)
            sent.append(await world.sim.send_text(chat, chat.members[0], f"under fire {len(sent)}"))
            await asyncio.sleep(0.02)
        stop.set()
        killed = sum(await asyncio.gather(*killers))
        await world.wait_archived({s.event_id for s in sent}, timeout_s=30)

        async def cursor_caught_up() -> bool:
            return svc.tracker.cursor >= max(s.rowid for s in sent)

        await wait_until(cursor_caught_up, timeout_s=30, what="the cursor past every row")
        assert svc.crashed is None
        assert not svc.stop_event.is_set()
    assert killed > 30
    rows = await world.archive.fetch("SELECT event_id, bridge_rowid FROM messages")
    assert len(rows) == len({r["event_id"] for r in rows}) == len(sent)
