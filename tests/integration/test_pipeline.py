"""The archiver end to end on real PostgreSQL: trigger → NOTIFY → listener → workers → archive.

Synapse here is the schema subset written directly (fast); tests/e2e runs against a real Synapse.
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest

from listener.core import models
from listener.flow import listen
from listener.sim import bridge as simulator
from tests import pg
from tests.conftest import World, wait_until


async def _bridge_rows(world: World) -> int:
    return int(await world.bridge.fetchval("SELECT count(*) FROM message"))


async def test_pipeline__single_message_archived_well_within_a_second(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    async with world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        await svc.sweeper.sweep_once()  # let the start-up sweep settle first
        chat = world.sim.chats[0]
        sent = await world.sim.send_text(chat, chat.members[0], "hello archive")
        await world.wait_archived({sent.event_id}, timeout_s=1.0)
        elapsed = time.time() - sent.committed_at_s
    row = await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = $1", sent.event_id)
    assert row is not None
    assert elapsed < 1.0
    assert row["body"] == "hello archive"
    assert row["message_type"] == "m.text"
    assert row["room_id"] == chat.room_id
    assert row["whatsapp_chat_id"] == chat.portal_id
    assert row["whatsapp_message_id"] == sent.wa_message_id
    assert row["bridge_rowid"] == sent.rowid
    assert row["timestamp"].timestamp() == pytest.approx(sent.timestamp_ns / 1e9)
    assert json.loads(row["content"])["body"] == "hello archive"


async def test_pipeline__ten_thousand_rows_in_one_transaction_all_arrive(world: World) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    async with world.running(batch_size=500) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = await world.sim.insert_many_in_one_transaction(world.sim.chats[0], 10_000)
        await world.wait_archived({s.event_id for s in sent}, timeout_s=60)
    assert await world.archived_count() == 10_000
    notified = svc.metrics.notifications.labels("queued")._value.get()
    assert notified >= 1


async def test_pipeline__listener_killed_while_messages_flow_loses_nothing(world: World) -> None:
    await world.sim.ensure_world(groups=2, dms=2)
    async with world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = []
        for i in range(60):
            chat = world.sim.chats[i % len(world.sim.chats)]
            sent.append(await world.sim.send_text(chat, chat.members[0], f"message {i}"))
            if i in (15, 35):
                await pg.admin_execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = '{listen.APPLICATION_NAME}' "
                    f"AND datname = '{world.bridge_url.rsplit('/', 1)[1]}'"
                )
        await world.wait_archived({s.event_id for s in sent}, timeout_s=15)

        # The sweep may archive everything before the listener is back: wait for the
        # reconnect itself (a bounded wait, not a race with the service).
        async def reconnected() -> bool:
            return svc.metrics.reconnects.labels("listener")._value.get() >= 1

        await wait_until(reconnected, timeout_s=15, what="the listener's reconnect")
    assert await world.archived_count() == 60


async def test_pipeline__restart_neither_loses_nor_doubles_nor_reprocesses(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    chat = world.sim.chats[0]
    first = [await world.sim.send_text(chat, chat.members[0], f"a{i}") for i in range(20)]
    async with world.running():
        await world.wait_archived({s.event_id for s in first})
    # While the archiver is down.
    second = [await world.sim.send_text(chat, chat.members[0], f"b{i}") for i in range(20)]
    async with world.running() as svc:
        await world.wait_archived({s.event_id for s in second})
        await wait_until(
            lambda: _cursor_at_least(world, max(s.rowid for s in second)), what="cursor saved"
        )
        processed_second_run = svc.processor.rows_done
    assert await world.archived_count() == 40
    # Only the 20 new rows were read again, not the history.
    assert processed_second_run == 20


async def _cursor_at_least(world: World, rowid: int) -> bool:
    value = await world.archive.fetchval(
        "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
    )
    return value is not None and value >= rowid


async def test_pipeline__out_of_order_commits_are_both_archived(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    async with world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sender = chat.members[0]
        low_event = await world.writer.send_event(
            chat.room_id, sender.mxid, "m.room.message", {"msgtype": "m.text", "body": "low"}
        )
        slow = await world.bridge.acquire()
        try:
            # Transaction A takes the lower rowid but commits after transaction B.
            tx = slow.transaction()
            await tx.start()
            low_rowid = await _insert_row(slow, chat, sender, low_event, "3EB0LOW")
            high = await world.sim.send_text(chat, chat.members[1], "high rowid")
            assert low_rowid < high.rowid
            await world.wait_archived({high.event_id})
            assert svc.tracker.cursor < low_rowid
            await tx.commit()
        finally:
            await world.bridge.release(slow)
        await world.wait_archived({low_event})
        await wait_until(lambda: _cursor_at_least(world, high.rowid), what="cursor past both")


async def _insert_row(
    conn: asyncpg.Connection, chat: simulator.Chat, sender: simulator.Contact, mxid: str, wa: str
) -> int:
    rowid: int = await conn.fetchval(
        "INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id,"
        " sender_mxid, timestamp, edit_count, metadata)"
        " VALUES ('', $1, '', $2, $3, $4, $5, $6, $7, 0, '{}') RETURNING rowid",
        f"{chat.portal_id}:{sender.jid}:{wa}",
        mxid,
        chat.portal_id,
        chat.receiver,
        sender.ghost_id,
        sender.mxid,
        int(time.time()) * 10**9,
    )
    return rowid


async def test_pipeline__history_sync_old_timestamps_archived(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    chat = world.sim.chats[1]
    async with world.running():
        old = await world.sim.history_sync(chat, 25, start_ts_ns=1_600_000_000 * 10**9)
        await world.wait_archived({s.event_id for s in old})
    oldest = await world.archive.fetchval(
        'SELECT min("timestamp") FROM messages WHERE whatsapp_chat_id = $1', chat.portal_id
    )
    assert oldest.timestamp() == pytest.approx(1_600_000_000, abs=1)


async def test_pipeline__sweep_alone_archives_everything_without_trigger(world: World) -> None:
    await world.bridge.execute(
        (pg.REPO / "sql" / "uninstall_triggers.sql").read_text().replace("\\", "--\\")
    )
    await world.sim.ensure_world(groups=1, dms=1)
    async with world.running(poll_interval_ms=100) as svc:
        assert await svc.check_trigger() is False
        chat = world.sim.chats[0]
        sent = [await world.sim.send_text(chat, chat.members[0], f"m{i}") for i in range(10)]
        await world.wait_archived({s.event_id for s in sent}, timeout_s=5)
        assert svc.metrics.trigger_present._value.get() == 0
        assert svc.metrics.sweep_recovered._value.get() >= 10


async def test_pipeline__ghost_without_name_gets_synapse_display_name(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    stranger = await world.sim.add_contact("Unsynced Ursula", synced=False)
    chat = await world.sim.create_group("strangers", [stranger, *world.sim.contacts[:1]])
    async with world.running():
        sent = await world.sim.send_text(chat, stranger, "who am I")
        await world.wait_archived({sent.event_id})
    ghost_name = await world.bridge.fetchval(
        "SELECT name FROM ghost WHERE id = $1", stranger.ghost_id
    )
    name = await world.archive.fetchval(
        "SELECT sender_display_name FROM messages WHERE event_id = $1", sent.event_id
    )
    assert ghost_name == ""
    assert name == "Unsynced Ursula"


async def test_pipeline__row_deleted_before_read_is_not_an_error(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    gone = await world.sim.send_text(chat, chat.members[0], "revoked at once")
    await world.bridge.execute("DELETE FROM message WHERE rowid = $1", gone.rowid)
    kept = await world.sim.send_text(chat, chat.members[0], "kept")
    async with world.running() as svc:
        await world.wait_archived({kept.event_id})
        failures = await world.archive.fetchval("SELECT count(*) FROM archive_failures")
        assert failures == 0
        assert svc.crashed is None
    assert gone.event_id not in await world.archived_ids()


async def test_pipeline__missing_synapse_event_retried_then_recorded(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    sent = await world.sim.send_text(chat, chat.members[0], "event vanishes")
    await world.synapse.execute("DELETE FROM event_json WHERE event_id = $1", sent.event_id)
    async with world.running(missing_event_timeout_s=0.5) as svc:

        async def recorded() -> bool:
            n = await world.archive.fetchval(
                "SELECT count(*) FROM archive_failures WHERE kind = 'missing_event' "
                "AND event_id = $1 AND resolved_at IS NULL",
                sent.event_id,
            )
            return bool(n)

        await wait_until(recorded, timeout_s=10, what="missing_event failure")
        await wait_until(lambda: _cursor_at_least(world, sent.rowid), what="cursor moved on")
        assert svc.metrics.failures_recorded.labels("missing_event")._value.get() == 1


async def test_pipeline__malformed_event_json_kept_raw_and_recorded(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    sent = await world.sim.send_text(chat, chat.members[0], "will be mangled")
    await world.synapse.execute(
        "UPDATE event_json SET json = '{\"content\": [broken' WHERE event_id = $1", sent.event_id
    )
    async with world.running():
        await world.wait_archived({sent.event_id})
    row = await world.archive.fetchrow(
        "SELECT content, content_raw FROM messages WHERE event_id = $1", sent.event_id
    )
    kind = await world.archive.fetchval(
        "SELECT kind FROM archive_failures WHERE event_id = $1", sent.event_id
    )
    assert row["content"] is None
    assert row["content_raw"] == '{"content": [broken'
    assert kind == "malformed_event"


async def test_pipeline__foreign_payload_on_channel_is_logged_and_nothing_lost(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    async with world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        await world.bridge.execute("SELECT pg_notify('archiver_db', 'not ours at all')")
        sent = await world.sim.send_text(chat, chat.members[0], "after the noise")
        await world.wait_archived({sent.event_id})
        await wait_until(
            _metric_positive(lambda: svc.metrics.notifications.labels("malformed")._value.get()),
            what="malformed counter",
        )


def _metric_positive(read: object) -> object:
    async def check() -> bool:
        return bool(read())  # type: ignore[operator]

    return check


async def test_pipeline__nul_character_in_body_stored_losslessly(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    async with world.running():
        sent = await world.sim.send_text(chat, chat.members[0], "before\x00after")
        await world.wait_archived({sent.event_id})
    row = await world.archive.fetchrow(
        "SELECT body, content, content_raw FROM messages WHERE event_id = $1", sent.event_id
    )
    assert row["body"] == "before\ufffdafter"
    assert json.loads(row["content_raw"])["body"] == "before\x00after"


async def test_pipeline__fake_rows_archived_from_bridge_data_without_retry(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    real = await world.sim.send_text(chat, chat.members[0], "real")
    fake_mxid = "~fake:abcdefg"
    await world.bridge.execute(
        "INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id,"
        " sender_mxid, timestamp, edit_count, metadata)"
        " SELECT bridge_id, id || ':fake', part_id, $1, room_id, room_receiver, sender_id,"
        " sender_mxid, timestamp, 0, '{}' FROM message WHERE rowid = $2",
        fake_mxid,
        real.rowid,
    )
    async with world.running():
        await world.wait_archived({real.event_id, fake_mxid})
    row = await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = $1", fake_mxid)
    assert row["has_matrix_event"] is False
    assert row["content"] is None
    assert await world.archive.fetchval("SELECT count(*) FROM archive_failures") == 0


async def test_pipeline__monitored_rooms_filter_by_room_and_chat_id(world: World) -> None:
    await world.sim.ensure_world(groups=3, dms=0)
    a, b, c = world.sim.chats[:3]
    await world.archive.execute(
        "INSERT INTO monitored_rooms (room_id, whatsapp_id, enabled) VALUES ($1, $2, true)",
        c.room_id,
        c.portal_id,
    )
    async with world.running(monitored_rooms=(a.room_id, b.portal_id)):
        sent = {
            chat.room_id: await world.sim.send_text(chat, chat.members[0], "x")
            for chat in (a, b, c)
        }
        await world.wait_archived({s.event_id for s in sent.values()})
        unmonitored = await world.sim.create_group("not monitored", world.sim.contacts[:2])
        skipped = await world.sim.send_text(unmonitored, unmonitored.members[0], "skip me")
        after = await world.sim.send_text(a, a.members[0], "after")
        await world.wait_archived({after.event_id})
    assert skipped.event_id not in await world.archived_ids()


async def test_pipeline__sigterm_drain_keeps_in_flight_batches(world: World) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    chat = world.sim.chats[0]
    async with world.running(workers=2, batch_size=50) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sent = await world.sim.insert_many_in_one_transaction(chat, 2_000)
        await wait_until(lambda: _some_archived(world), what="archiving under way", timeout_s=10)
    # Stopped mid-flow: whatever was not archived is replayed by the next start.
    async with world.running():
        await world.wait_archived({s.event_id for s in sent}, timeout_s=30)
    assert await world.archived_count() == 2_000


async def _some_archived(world: World) -> bool:
    return await world.archived_count() > 0


async def test_pipeline__auto_register_adds_portals_to_monitored_rooms(world: World) -> None:
    await world.sim.ensure_world(groups=2, dms=1)
    async with world.running(auto_register_rooms=True) as svc:
        await svc.refresh_rooms()
        chat = await world.sim.create_group("brand new", world.sim.contacts[:2])
        sent = await world.sim.send_text(chat, chat.members[0], "first in new chat")
        await world.wait_archived({sent.event_id})
    rooms = {r["room_id"] for r in await world.archive.fetch("SELECT room_id FROM monitored_rooms")}
    assert {c.room_id for c in world.sim.chats} <= rooms


async def test_pipeline__archive_not_migrated_fails_clearly(world: World) -> None:
    from listener import service
    from listener.core import errors

    name = pg.unique_name("t_empty")
    url = await pg.create_database(name)
    try:
        svc = service.Service(world.settings(archive_db_url=url))
        with pytest.raises(errors.SchemaError, match="archiver-db migrate"):
            await svc.open()
        await svc.close()
    finally:
        await pg.drop_database(name)


async def test_pipeline__upsert_is_idempotent(world: World) -> None:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    sent = [await world.sim.send_text(chat, chat.members[0], f"r{i}") for i in range(5)]
    async with world.running() as svc:
        await world.wait_archived({s.event_id for s in sent})
        archived_at = await world.archive.fetch("SELECT event_id, xmin::text FROM messages")
        # Replay every row again through the processor.
        await svc.processor.process([s.rowid for s in sent], owned=True)
    again = await world.archive.fetch("SELECT event_id, xmin::text FROM messages")
    assert sorted(map(tuple, archived_at)) == sorted(map(tuple, again))
    assert await world.archived_count() == 5


_ = (asyncpg, models)


async def test_pipeline__gap_of_an_open_transaction_holds_the_cursor_until_it_ends(
    world: World,
) -> None:
    """The gap timeout is far away (120 s): what moves the cursor past a gap is the database's
    word that every transaction that could fill it has ended."""
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    async with world.running(sweep_gap_timeout_s=120.0) as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 5)
        sender = chat.members[0]
        event = await world.writer.send_event(
            chat.room_id, sender.mxid, "m.room.message", {"msgtype": "m.text", "body": "aborted"}
        )
        slow = await world.bridge.acquire()
        try:
            tx = slow.transaction()
            await tx.start()
            gap = await _insert_row(slow, chat, sender, event, "3EB0ABORTED")
            after = await world.sim.send_text(chat, chat.members[1], "after the gap")
            await world.wait_archived({after.event_id})
            for _ in range(5):  # several sweeps' snapshots see the writer still running
                await asyncio.sleep(0.3)
                assert svc.tracker.cursor == gap - 1
            await tx.rollback()  # the row never exists
        finally:
            await world.bridge.release(slow)
        started = time.monotonic()
        await wait_until(lambda: _cursor_at_least(world, after.rowid), what="cursor past the gap")
        settled_s = time.monotonic() - started
        assert svc.tracker.settled >= 1
        assert svc.tracker.timed_out == 0
    assert settled_s < 60  # far from the 120 s timeout: settled by snapshot, not by clock


async def test_pipeline__restart_passes_a_deleted_row_at_once_not_after_the_timeout(
    world: World,
) -> None:
    """A row deleted before it was read (a revoke) leaves a gap. Before, each new process started
    the gap's clock again; now the first sweeps settle it."""
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    first = await world.sim.send_text(chat, chat.members[0], "kept")
    revoked = await world.sim.send_text(chat, chat.members[0], "revoked at once")
    await world.bridge.execute("DELETE FROM message WHERE rowid = $1", revoked.rowid)
    last = await world.sim.send_text(chat, chat.members[1], "after the revoke")
    for _ in range(2):  # a plain restart, twice
        async with world.running(sweep_gap_timeout_s=120.0) as svc:
            await world.wait_archived({first.event_id, last.event_id})
            await wait_until(lambda: _cursor_at_least(world, last.rowid), what="cursor at last")
            assert svc.tracker.timed_out == 0
