"""Faults at the archiver's edges: a silently dead LISTEN connection, a full queue, and each of
the Synapse and archive databases going away for a while. Nothing may be lost or doubled.

The archiver runs in-process (``World.running``) so its metrics can be read directly; the
faults are made by a tiny TCP proxy put between the archiver and PostgreSQL, the way production
loses connections: without a FIN or RST (black hole), or with refused connections (outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from listener import service
from listener.flow import listen
from listener.sim import bridge as simulator
from listener.sim import synapse_writer, tcp_proxy
from tests.conftest import World, wait_until

LISTENER_HELLO = listen.APPLICATION_NAME.encode()
NS = 1_000_000_000


def _value(metric: Any) -> float:
    return float(metric._value.get())


def _at_least(read: Callable[[], float], threshold: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return read() >= threshold

    return check


async def _cursor(world: World) -> int:
    value = await world.archive.fetchval(
        "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
    )
    return int(value) if value is not None else 0


async def _assert_complete(world: World, sent: list[simulator.SentMessage]) -> None:
    """Every message archived exactly once, and nothing else."""
    counts = await world.archive.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT bridge_rowid) AS rowids FROM messages"
    )
    assert await world.archived_ids() == {s.event_id for s in sent}
    assert dict(counts) == {"n": len(sent), "rowids": len(sent)}


async def test_listener__black_holed_connection_detected_reconnected_and_nothing_lost(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    group, dm = world.sim.chats[:2]
    async with (
        tcp_proxy.proxy_to(world.bridge_url) as (proxy, url),
        # The timed sweep is far away: rows can only come through NOTIFY or the catch-up
        # sweep that a (re)connect requests.
        world.running(
            metrics_addr="off",
            whatsapp_db_url=url,
            poll_interval_ms=600_000,
            listener_probe_interval_s=0.5,
            listener_probe_timeout_s=0.5,
        ) as svc,
    ):
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = [await world.sim.send_text(group, group.members[0], "before")]
        await world.wait_archived({sent[0].event_id}, timeout_s=5)
        reconnects = svc.metrics.reconnects.labels("listener")

        assert proxy.black_hole(LISTENER_HELLO) == 1
        frozen_at = time.monotonic()
        while _value(reconnects) < 1:
            assert time.monotonic() - frozen_at < 10, "the dead listener was never detected"
            chat = (group, dm)[len(sent) % 2]
            sent.append(await world.sim.send_text(chat, chat.members[0], f"dark {len(sent)}"))
            await asyncio.sleep(0.05)  # pacing the traffic, not waiting for a result
        detected_s = time.monotonic() - frozen_at
        queued_before = _value(svc.metrics.notifications.labels("queued"))
        after = [await world.sim.send_text(group, group.members[1], f"after {i}") for i in range(5)]
        await world.wait_archived({s.event_id for s in [*sent, *after]}, timeout_s=10)
        await wait_until(
            _at_least(
                lambda: _value(svc.metrics.notifications.labels("queued")), queued_before + 1
            ),
            what="notifications arriving on the new connection",
        )
        errors = _value(svc.metrics.source_errors.labels("listener", "SourceError"))

    lost = [r for r in caplog.records if getattr(r, "action", None) == "listener_disconnected"]
    assert lost
    assert "did not answer a probe" in lost[0].getMessage()
    assert len(sent) > 2, "messages should have been inserted while the listener was dark"
    assert detected_s < 5  # probe every 0.5 s, answer within 0.5 s
    assert errors >= 1
    await _assert_complete(world, [*sent, *after])


async def test_queue_full__burst_of_single_row_inserts_waits_in_hints_not_the_sweep(
    world: World,
) -> None:
    """A one-item queue under a burst: notifications coalesce into pending ranges (bounded) and
    are read as the workers free up; none is dropped and nothing is lost or doubled."""
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    port = _free_port()
    async with world.running(
        queue_size=1, workers=1, poll_interval_ms=600_000, metrics_addr=f"127.0.0.1:{port}"
    ) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = await _burst(world, chat, 300)
        await world.wait_archived(set(sent), timeout_s=20)
        recovered = _value(svc.metrics.sweep_recovered)
        async with httpx.AsyncClient(timeout=5.0) as client:
            exposition = (await client.get(f"http://127.0.0.1:{port}/metrics")).text

    # One autocommit INSERT, one notification: every one was taken, none dropped.
    assert _sample(exposition, 'archiver_notifications_total{result="queued"}') == 300
    assert _sample(exposition, 'archiver_notifications_total{result="queue_full"}') == 0
    assert recovered < 300  # the start-up sweeps may take a few; the rest came from hints
    assert await world.archived_count() == 300
    assert await world.archive.fetchval("SELECT count(DISTINCT bridge_rowid) FROM messages") == 300


def _sample(exposition: str, name: str) -> float:
    """One sample's value from Prometheus text exposition (0 when absent)."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _burst(world: World, chat: simulator.Chat, count: int) -> list[str]:
    """``count`` events in Synapse first, then ``count`` autocommit single-row bridge INSERTs
    from four connections at once (one NOTIFY each)."""
    now_s = int(time.time())
    members = chat.members
    specs = [
        synapse_writer.EventSpec(
            chat.room_id,
            members[i % len(members)].mxid,
            "m.room.message",
            {"msgtype": "m.text", "body": f"burst {i}"},
            now_s * 1000,
        )
        for i in range(count)
    ]
    event_ids = await world.writer.send_events_bulk(specs)
    rows = [
        (
            simulator.BRIDGE_ID,
            f"{chat.portal_id}:{members[i % len(members)].jid}:3EB0BURST{i:05d}",
            event_id,
            chat.portal_id,
            chat.receiver,
            members[i % len(members)].ghost_id,
            members[i % len(members)].mxid,
            now_s * NS,
            None,
            None,
            "{}",
        )
        for i, event_id in enumerate(event_ids)
    ]

    async def insert(share: list[tuple[Any, ...]]) -> None:
        async with world.bridge.acquire() as conn:
            for row in share:
                await conn.execute(simulator.INSERT_MESSAGE, *row)

    await asyncio.gather(*(insert(rows[i::4]) for i in range(4)))
    return event_ids


async def test_synapse_outage__messages_flowing_meanwhile_all_archived_after_return(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    group = world.sim.chats[0]
    async with (
        tcp_proxy.proxy_to(world.synapse_url) as (proxy, url),
        # Shorter than the outage: an unreachable Synapse must not look like a missing event.
        world.running(synapse_db_url=url, missing_event_timeout_s=0.5, metrics_addr="off") as svc,
    ):
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        before = [await world.sim.send_text(group, group.members[0], f"b{i}") for i in range(5)]
        await world.wait_archived({s.event_id for s in before})

        await proxy.stop()
        down_at = time.monotonic()
        during = await _traffic_until(
            world, _at_least(lambda: _synapse_errors(svc), 5), minimum_s=1.5
        )
        outage_s = time.monotonic() - down_at
        archived_during = await world.archived_ids() & {s.event_id for s in during}
        await proxy.start()

        after = [await world.sim.send_text(group, group.members[1], f"a{i}") for i in range(5)]
        await world.wait_archived({s.event_id for s in [*during, *after]}, timeout_s=15)
        assert svc.crashed is None

    assert outage_s >= 1.5
    assert archived_during == set()
    await _assert_complete(world, [*before, *during, *after])
    assert await world.archive.fetchval("SELECT count(*) FROM archive_failures") == 0


def _synapse_errors(svc: service.Service) -> float:
    total = 0.0
    for metric in svc.metrics.source_errors.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("source") == "synapse":
                total += sample.value
    return total


async def _traffic_until(
    world: World, done: Callable[[], Awaitable[bool]], *, minimum_s: float, timeout_s: float = 15
) -> list[simulator.SentMessage]:
    """Keep the bridge sending (a message every ~50 ms) until ``done`` and ``minimum_s``."""
    sent: list[simulator.SentMessage] = []
    began = time.monotonic()
    while time.monotonic() - began < minimum_s or not await done():
        assert time.monotonic() - began < timeout_s, "the fault was never noticed"
        chat = world.sim.chats[len(sent) % len(world.sim.chats)]
        sent.append(await world.sim.send_text(chat, chat.members[0], f"during {len(sent)}"))
        await asyncio.sleep(0.05)  # pacing the traffic, not waiting for a result
    return sent


async def test_archive_outage__cursor_never_passes_unarchived_rows_and_all_arrive(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    group = world.sim.chats[0]
    violations: list[str] = []
    async with (
        tcp_proxy.proxy_to(world.archive_url) as (proxy, url),
        world.running(archive_db_url=url, metrics_addr="off") as svc,
        _watch_cursor(world, violations),
    ):
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        before = [await world.sim.send_text(group, group.members[0], f"b{i}") for i in range(5)]
        await world.wait_archived({s.event_id for s in before})
        await wait_until(
            lambda: _cursor_is(world, max(s.rowid for s in before)), what="cursor saved"
        )
        cursor_before = await _cursor(world)

        await proxy.stop()
        during = await _traffic_until(world, _at_least(lambda: _sink_errors(svc), 5), minimum_s=1.5)
        cursor_during = await _cursor(world)
        archived_during = await world.archived_ids() & {s.event_id for s in during}
        await proxy.start()

        after = [await world.sim.send_text(group, group.members[1], f"a{i}") for i in range(5)]
        everything = [*before, *during, *after]
        await world.wait_archived({s.event_id for s in everything}, timeout_s=20)
        await wait_until(
            lambda: _cursor_is(world, max(s.rowid for s in everything)),
            timeout_s=10,
            what="cursor past every row",
        )
        assert svc.crashed is None

    assert cursor_during == cursor_before
    assert archived_during == set()
    assert violations == []
    await _assert_complete(world, everything)


def _sink_errors(svc: service.Service) -> float:
    total = 0.0
    for metric in svc.metrics.sink_errors.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def _cursor_is(world: World, rowid: int) -> bool:
    return await _cursor(world) == rowid


@contextlib.asynccontextmanager
async def _watch_cursor(world: World, violations: list[str]) -> AsyncIterator[None]:
    """Sample the saved cursor all along: every bridge row at or below it must be archived."""

    async def watch() -> None:
        while True:
            cursor = await _cursor(world)
            bridge = await world.bridge.fetch("SELECT rowid FROM message WHERE rowid <= $1", cursor)
            archived = await world.archive.fetch(
                "SELECT bridge_rowid FROM messages WHERE bridge_rowid <= $1", cursor
            )
            missing = {r["rowid"] for r in bridge} - {r["bridge_rowid"] for r in archived}
            if missing:
                violations.append(f"cursor {cursor} passed unarchived rowids {sorted(missing)}")
            await asyncio.sleep(0.02)

    task = asyncio.create_task(watch(), name="cursor-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_archive_outage__longer_than_room_refresh_does_not_crash_the_service(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refresh period is a module constant (30 s); shortened so the outage outlasts it.
    monkeypatch.setattr(service, "ROOM_REFRESH_INTERVAL_S", 0.3)
    await world.sim.ensure_world(groups=1, dms=0)
    async with (
        tcp_proxy.proxy_to(world.archive_url) as (proxy, url),
        world.running(archive_db_url=url, poll_interval_ms=200, metrics_addr="off") as svc,
    ):
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        await proxy.stop()
        during = await _traffic_until(world, _at_least(lambda: _sink_errors(svc), 3), minimum_s=1.5)
        await proxy.start()
        wanted = {s.event_id for s in during}

        async def archived_or_stopped() -> bool:
            return svc.stop_event.is_set() or wanted <= await world.archived_ids()

        await wait_until(archived_or_stopped, timeout_s=15, what="archived after the outage")
        assert svc.crashed is None
        assert not svc.stop_event.is_set()


async def test_startup__waits_for_a_database_that_refuses_then_archives_at_once(
    world: World,
) -> None:
    """A database down at start-up is an outage like any other: the process stays up, /readyz
    names the database it waits for, and archiving starts as soon as the database answers."""
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    before = await world.sim.send_text(chat, chat.members[0], "sent while the archiver waits")
    port = _free_port()
    async with tcp_proxy.proxy_to(world.synapse_url) as (proxy, url):
        await proxy.stop()  # Synapse's database refuses connections
        svc = service.Service(world.settings(synapse_db_url=url, metrics_addr=f"127.0.0.1:{port}"))
        starting = asyncio.create_task(svc.open_when_reachable())
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:

                async def waiting_for_synapse() -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                        return answer.status_code == 503 and (
                            answer.json().get("waiting_for") == "synapse"
                        )
                    return False

                await wait_until(waiting_for_synapse, what="/readyz naming the synapse database")
                assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            assert not starting.done()
            await asyncio.sleep(1.0)  # a few refused attempts: still waiting, still alive
            assert not starting.done()
            await proxy.start()  # the database answers again (same port)
            assert await asyncio.wait_for(starting, 10) is True
            running = asyncio.create_task(svc.run())
            try:
                await world.wait_archived({before.event_id}, timeout_s=10)
            finally:
                svc.stop_event.set()
                await asyncio.wait_for(running, 30)
        finally:
            svc.stop_event.set()
            if not starting.done():
                await asyncio.wait_for(starting, 10)
            await svc.close()
            await svc.http.stop()
    assert svc.crashed is None
