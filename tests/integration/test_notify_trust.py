"""NOTIFY is a hint: what any connecting role sends on our channel neither stops nor bloats the
service, and costs nothing but reads of rows that exist (issue: the trust boundary).

The attacker is a role with nothing but CONNECT on the bridge database (PostgreSQL needs no
privilege for NOTIFY). The service runs with the sweep slowed to 10 minutes, so every live
message in these tests reaches the archive through the notification path under attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.db import queries
from listener.sim import bridge as simulator
from tests import pg
from tests.conftest import World, wait_until

MAX = 2**63 - 1
# The service and the test share this process: the bound is on growth, and generous. Before the
# fix, one [[0, 50000000]] notification grew the process by about 5 GB.
RSS_GROWTH_LIMIT_BYTES = 150 * 2**20
PROMPT_S = 3.0  # generous for a loaded CI machine; bench/notify_attack.py measures the latency


def _note(op: str, ranges: list[list[int]], table: str = "message") -> str:
    return json.dumps({"v": 1, "table": table, "op": op, "ranges": ranges})


def _hostile_payloads(rng: random.Random) -> dict[str, list[str]]:
    # As many wide ranges as fit in one payload (PostgreSQL refuses 8000 bytes or more).
    wide = [[i * 10**15, i * 10**15 + 10**14] for i in range(1, 160)]
    return {
        "insert_everything": [_note("INSERT", [[0, MAX]])],
        "insert_50_million": [_note("INSERT", [[0, 50_000_000]])],
        "update_everything": [_note("UPDATE", [[0, MAX]])],
        "update_50_million": [_note("UPDATE", [[0, 50_000_000]])],
        "many_wide_ranges": [_note(rng.choice(["INSERT", "UPDATE"]), wide) for _ in range(300)],
        "malformed_flood": [
            rng.choice(
                [
                    "{",
                    "null",
                    '{"v":1}',
                    '{"v":2,"table":"message","op":"INSERT","ranges":[[1,2]]}',
                    '{"v":1,"table":"message","op":"INSERT","ranges":[[5,1]]}',
                    '{"v":1,"table":"message","op":"INSERT","ranges":[[-1,1]]}',
                    '{"v":1,"table":"message","op":"INSERT","ranges":[[0,9223372036854775808]]}',
                    '{"v":1,"table":"message","op":"DROP","ranges":[]}',
                    "[" * 3000 + "]" * 3000,
                    "x" * 7000,
                ]
            )
            for _ in range(2000)
        ],
    }


@contextlib.asynccontextmanager
async def _attacker(world: World) -> AsyncIterator[asyncpg.Connection]:
    """A connection as a role that may only CONNECT to the bridge database."""
    role = pg.unique_name("notify_attacker")
    database = world.bridge_url.rsplit("/", 1)[1]
    await pg.admin_execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    await pg.admin_execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
    url = world.bridge_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT NOT rolsuper FROM pg_roles WHERE rolname = $1", role)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM message")  # truly unprivileged
        yield conn
    finally:
        await conn.close()
        await pg.admin_execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM "{role}"')
        await pg.admin_execute(f'DROP ROLE "{role}"')


class RssSampler:
    """Peak resident memory of this process (service included) while running."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self._process.memory_info().rss)


async def _steady_traffic(world: World, sent: list[simulator.Sent], stop: asyncio.Event) -> None:
    """The bridge keeps sending while the attack runs (about 20 messages a second)."""
    i = 0
    while not stop.is_set():
        chat = world.sim.chats[i % len(world.sim.chats)]
        sent.append(await world.sim.send_text(chat, chat.members[0], f"steady {i}"))
        i += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def test_notify__hostile_payloads_from_an_unprivileged_role_neither_stop_nor_bloat(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    chat = world.sim.chats[0]
    sent: list[simulator.Sent] = []
    prompt: dict[str, float] = {}
    caplog.set_level(logging.WARNING)
    async with (
        world.running(poll_interval_ms=600_000, reconcile_interval_s=600.0) as svc,
        _attacker(world) as attacker,
    ):
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        attacker_pid = attacker.get_server_pid()
        stop_traffic = asyncio.Event()
        traffic = asyncio.create_task(_steady_traffic(world, sent, stop_traffic))
        try:
            with RssSampler() as rss:
                for name, payloads in _hostile_payloads(random.Random(13)).items():
                    for text in payloads:
                        await attacker.execute("SELECT pg_notify('archiver_db', $1)", text)
                    started = time.monotonic()
                    probe = await world.sim.send_text(chat, chat.members[1], f"after {name}")
                    sent.append(probe)
                    await world.wait_archived({probe.event_id}, timeout_s=PROMPT_S)
                    prompt[name] = time.monotonic() - started
        finally:
            stop_traffic.set()
            await traffic
        await world.wait_archived({s.event_id for s in sent}, timeout_s=30)
        assert svc.crashed is None
        assert not svc.stop_event.is_set()
        assert svc.queue.qsize() <= svc.config.queue_size
        malformed = svc.metrics.notifications.labels("malformed")._value.get()
        clamped = svc.metrics.notifications.labels("clamped")._value.get()

    assert set(prompt) == set(_hostile_payloads(random.Random(13)))
    assert rss.peak - rss.baseline < RSS_GROWTH_LIMIT_BYTES, (rss.baseline, rss.peak)
    # Nothing lost, nothing doubled: every bridge row is in the archive exactly once.
    bridge_rows = await world.bridge.fetch("SELECT rowid, mxid FROM message")
    archived = await world.archive.fetch("SELECT event_id, bridge_rowid FROM messages")
    assert sorted(r["mxid"] for r in bridge_rows) == sorted(r["event_id"] for r in archived)
    assert len({r["bridge_rowid"] for r in archived}) == len(archived) == len(bridge_rows)
    assert {s.event_id for s in sent} <= {r["event_id"] for r in archived}
    assert malformed == 2000
    assert clamped >= 1
    # The operator can find the culprit: the warnings name the sending backend.
    named = [r for r in caplog.records if str(attacker_pid) in r.getMessage()]
    assert {r.action for r in named} >= {"notification_malformed", "notification_clamped"}  # type: ignore[attr-defined]


async def test_notify__update_of_everything_rearchives_idempotently_at_a_bounded_pace(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    before = [await world.sim.send_text(chat, chat.members[0], f"old {i}") for i in range(50)]
    async with world.running(poll_interval_ms=200) as svc:
        await world.wait_archived({s.event_id for s in before})
        first = {r["event_id"]: r["updated_at"] for r in await world.archive.fetch(
            "SELECT event_id, updated_at FROM messages")}  # fmt: skip
        async with _attacker(world) as attacker:
            for _ in range(200):
                await attacker.execute(
                    "SELECT pg_notify('archiver_db', $1)", _note("UPDATE", [[0, MAX]])
                )

        async def backlog_empty() -> bool:
            return svc.hint_reader.backlog_ranges == 0 and svc.queue.qsize() == 0

        await wait_until(backlog_empty, timeout_s=20, what="the UPDATE backlog read")
        after = await world.sim.send_text(chat, chat.members[0], "after the storm")
        await world.wait_archived({after.event_id}, timeout_s=PROMPT_S)
    rows = await world.archive.fetch("SELECT event_id, updated_at FROM messages")
    assert len(rows) == 51
    # Re-archiving an unchanged row writes no new row version (the archive's merge rules).
    assert all(first[r["event_id"]] == r["updated_at"] for r in rows if r["event_id"] in first)


# --- the SQL that reads a range -------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    existing=st.sets(st.integers(0, 5000), max_size=200),
    other_bridge=st.sets(st.integers(5001, 6000), max_size=20),
    lo=st.integers(0, 6000),
    width=st.one_of(st.integers(0, 6000), st.just(MAX)),
    limit=st.integers(1, 64),
)
def test_rowids_between__pages_read_exactly_the_existing_rows_inside(
    existing: set[int], other_bridge: set[int], lo: int, width: int, limit: int
) -> None:
    hi = min(MAX, lo + width)
    sql = queries.load("bridge_rowids_between")

    async def scenario() -> list[int]:
        conn = await asyncpg.connect(pg.ADMIN_URL)
        try:
            # A temporary ``message`` shadows any real one for this connection only.
            await conn.execute(
                "CREATE TEMP TABLE message (rowid bigint PRIMARY KEY, bridge_id text)"
            )
            await conn.executemany(
                "INSERT INTO message VALUES ($1, $2)",
                [(r, "") for r in existing] + [(r, "other") for r in other_bridge],
            )
            read: list[int] = []
            cursor = lo
            while cursor <= hi:
                page = [r["rowid"] for r in await conn.fetch(sql, cursor, hi, "", limit)]
                assert len(page) <= limit
                read += page
                if len(page) < limit:
                    break
                cursor = page[-1] + 1
            return read
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == sorted(r for r in existing if lo <= r <= hi)
