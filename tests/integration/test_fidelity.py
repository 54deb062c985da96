"""Edits, deletions and reactions kept on record, through the trigger, the listener and the
Synapse reconciliation pass, on real PostgreSQL. The bridge is simulated as it behaves
(source-schemas.md §2.3-2.5): an edit sends an m.replace event and UPDATEs the row in place; a
deletion redacts the event and DELETEs the row; a reaction sends m.reaction and upserts a row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from listener import service
from listener.flow import reconcile
from listener.sim import bridge as simulator
from tests.conftest import World, wait_until

FAST = {"reconcile_grace_s": 0.0, "reconcile_interval_s": 0.3}


async def _edit(world: World, sent: simulator.SentMessage, body: str, **new: Any) -> str:
    """What the bridge does for a WhatsApp edit: m.replace event first, then the row UPDATE."""
    new_content = {"msgtype": "m.text", "body": body, **new}
    edit_id = await world.writer.send_event(
        sent.chat.room_id,
        sent.sender.mxid,
        "m.room.message",
        {
            "msgtype": new_content["msgtype"],
            "body": f"* {body}",
            "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id},
        },
    )
    await world.bridge.execute(
        "UPDATE message SET metadata = jsonb_set(metadata, '{edits}',"
        " coalesce(metadata->'edits', '[]'::jsonb) || to_jsonb($2::text)) WHERE rowid = $1",
        sent.rowid,
        edit_id,
    )
    return edit_id


async def _delete(world: World, sent: simulator.SentMessage) -> str:
    """WhatsApp revoke: the bridge redacts the Matrix event, then deletes the row."""
    redaction = await world.writer.redact(sent.chat.room_id, sent.event_id, sent.sender.mxid)
    await world.bridge.execute("DELETE FROM message WHERE rowid = $1", sent.rowid)
    return redaction


async def _react(world: World, sent: simulator.SentMessage, by: simulator.Contact, key: str) -> str:
    return await world.writer.send_event(
        sent.chat.room_id,
        by.mxid,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent.event_id, "key": key}},
    )


async def _message(world: World, event_id: str) -> Any:
    return await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = $1", event_id)


async def _wait_row(world: World, sql: str, *args: object, what: str) -> None:
    async def holds() -> bool:
        return bool(await world.archive.fetchval(sql, *args))

    await wait_until(holds, timeout_s=10, what=what)


async def _one_chat(world: World) -> simulator.Chat:
    await world.sim.ensure_world(groups=1, dms=0)
    return world.sim.chats[0]


async def test_edit__latest_content_shown_original_kept(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        sent = await world.sim.send_text(chat, chat.members[0], "original text")
        await world.wait_archived({sent.event_id})
        edit_id = await _edit(world, sent, "edited text")
        await _wait_row(
            world,
            "SELECT edit_count = 1 FROM messages WHERE event_id = $1",
            sent.event_id,
            what="edit applied",
        )
    row = await _message(world, sent.event_id)
    assert row["body"] == "edited text"
    assert json.loads(row["content"])["body"] == "edited text"
    assert json.loads(row["original_content"])["body"] == "original text"
    assert row["latest_edit_event_id"] == edit_id
    assert row["edited_at"] is not None
    edits = await world.archive.fetch("SELECT * FROM message_edits")
    assert [(e["edit_event_id"], e["edit_number"], e["body"]) for e in edits] == [
        (edit_id, 1, "edited text")
    ]


async def test_edit__two_edits_in_order_and_replay_changes_nothing(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST) as svc:
        sent = await world.sim.send_text(chat, chat.members[0], "v0")
        await world.wait_archived({sent.event_id})
        first = await _edit(world, sent, "v1")
        second = await _edit(world, sent, "v2")
        await _wait_row(
            world,
            "SELECT edit_count = 2 FROM messages WHERE event_id = $1",
            sent.event_id,
            what="two edits",
        )
        before = await world.archive.fetch("SELECT xmin::text, * FROM message_edits ORDER BY 2")
        await svc.processor.process([sent.rowid], owned=True, track=False)
        await svc.processor.archive_events([sent.event_id])
        after = await world.archive.fetch("SELECT xmin::text, * FROM message_edits ORDER BY 2")
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
    row = await _message(world, sent.event_id)
    assert row["body"] == "v2"
    edits = await world.archive.fetch(
        "SELECT edit_event_id, edit_number, body FROM message_edits ORDER BY edit_number"
    )
    assert [tuple(e) for e in edits] == [(first, 1, "v1"), (second, 2, "v2")]


async def test_edit__while_archiver_down_found_by_reconciliation(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        sent = await world.sim.send_text(chat, chat.members[0], "before downtime")
        await world.wait_archived({sent.event_id})
    await _edit(world, sent, "edited while down")
    async with world.running(**FAST):
        await _wait_row(
            world,
            "SELECT body = 'edited while down' FROM messages WHERE event_id = $1",
            sent.event_id,
            what="edit recovered",
        )


async def test_edit__real_media_arriving_only_in_a_later_edit(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        placeholder = await world.sim.send_text(
            chat, chat.members[0], "Failed to bridge media: media not found"
        )
        await world.wait_archived({placeholder.event_id})
        mxc = await world.writer.upload_media(
            simulator.make_png(8, 8, world.sim._rng), "image/png", "late.png", chat.members[0].mxid
        )
        await _edit(
            world,
            placeholder,
            "late.png",
            msgtype="m.image",
            url=mxc,
            info={"mimetype": "image/png"},
        )
        await _wait_row(
            world,
            "SELECT message_type = 'm.image' FROM messages WHERE event_id = $1",
            placeholder.event_id,
            what="media from the edit",
        )
    row = await _message(world, placeholder.event_id)
    assert json.loads(row["content"])["url"] == mxc


async def test_deletion__archive_keeps_message_and_records_redaction(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        sent = await world.sim.send_text(chat, chat.members[0], "regret this")
        await world.wait_archived({sent.event_id})
        redaction = await _delete(world, sent)
        await _wait_row(
            world,
            "SELECT deleted_at IS NOT NULL FROM messages WHERE event_id = $1",
            sent.event_id,
            what="deletion recorded",
        )
    row = await _message(world, sent.event_id)
    assert row["body"] == "regret this"
    assert row["redaction_event_id"] == redaction


async def test_deletion__while_archiver_down_still_archived_and_marked(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        kept = await world.sim.send_text(chat, chat.members[0], "kept")
        await world.wait_archived({kept.event_id})
    # Sent and deleted while the archiver is down: only Synapse remembers it.
    lost = await world.sim.send_text(chat, chat.members[1], "sent and revoked while down")
    await _delete(world, lost)
    async with world.running(**FAST) as svc:
        await _wait_row(
            world,
            "SELECT deleted_at IS NOT NULL FROM messages WHERE event_id = $1",
            lost.event_id,
            what="deleted message archived from Synapse",
        )
        assert svc.metrics.reconcile_recovered._value.get() >= 1
    row = await _message(world, lost.event_id)
    assert row["body"] == "sent and revoked while down"
    assert row["bridge_rowid"] is None
    assert row["room_id"] == chat.room_id


async def test_deletion__whole_chat_deleted_while_down_archived_from_synapse(
    world: World,
) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        first = await world.sim.send_text(chat, chat.members[0], "first")
        await world.wait_archived({first.event_id})
    later = [await world.sim.send_text(chat, chat.members[i % 2], f"later {i}") for i in range(5)]
    await world.bridge.execute(
        "DELETE FROM portal WHERE id = $1 AND receiver = $2", chat.portal_id, chat.receiver
    )
    assert await world.bridge.fetchval("SELECT count(*) FROM message") == 0
    async with world.running(**FAST):
        await world.wait_archived({s.event_id for s in later})
    assert await world.archived_count() == 6


async def test_reaction__added_changed_and_removed(world: World) -> None:
    chat = await _one_chat(world)
    fan = chat.members[1]
    async with world.running(**FAST):
        sent = await world.sim.send_text(chat, chat.members[0], "react to me")
        await world.wait_archived({sent.event_id})
        first = await _react(world, sent, fan, "👍")
        await _wait_row(world, "SELECT count(*) = 1 FROM reactions", what="reaction added")
        # Changed on WhatsApp: the bridge redacts the old reaction and sends the new one.
        await world.writer.redact(chat.room_id, first, fan.mxid)
        second = await _react(world, sent, fan, "❤️")
        await _wait_row(
            world,
            "SELECT count(*) = 2 AND count(removed_at) = 1 FROM reactions",
            what="reaction changed",
        )
        await world.writer.redact(chat.room_id, second, fan.mxid)
        await _wait_row(
            world, "SELECT count(removed_at) = 2 FROM reactions", what="reaction removed"
        )
    rows = await world.archive.fetch(
        "SELECT reaction_event_id, message_event_id, sender, emoji, removed_at IS NOT NULL AS gone"
        " FROM reactions ORDER BY timestamp, reaction_event_id"
    )
    assert [tuple(r) for r in rows] == [
        (first, sent.event_id, fan.mxid, "👍", True),
        (second, sent.event_id, fan.mxid, "❤️", True),
    ]
    assert await world.archived_count() == 1  # reactions are never messages of their own


async def test_reply_and_thread_relations_kept(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST):
        root = await world.sim.send_text(chat, chat.members[0], "root")
        reply = await world.sim.send_text(chat, chat.members[1], "reply", reply_to=root)
        in_thread = await world.sim.send_text(chat, chat.members[2], "threaded", thread_root=root)
        await world.wait_archived({root.event_id, reply.event_id, in_thread.event_id})
    reply_row = await _message(world, reply.event_id)
    thread_row = await _message(world, in_thread.event_id)
    assert reply_row["reply_to_event_id"] == root.event_id
    assert thread_row["thread_root_event_id"] == root.event_id


@pytest.mark.parametrize("from_start", [False, True])
async def test_reconcile__replays_archive_nothing_twice(world: World, from_start: bool) -> None:
    chat = await _one_chat(world)
    async with world.running(**FAST) as svc:
        sent = [await world.sim.send_text(chat, chat.members[0], f"m{i}") for i in range(5)]
        await _edit(world, sent[0], "m0 edited")
        await _react(world, sent[1], chat.members[1], "😂")
        await _delete(world, sent[2])
        await _wait_row(
            world,
            "SELECT count(*) = 1 FROM messages WHERE deleted_at IS NOT NULL",
            what="all applied",
        )
        await _wait_row(world, "SELECT count(*) = 1 FROM reactions", what="reaction")
        counts = await _counts(world)
        await svc.reconciler.run_once(from_start=from_start)
        await svc.reconciler.run_once(from_start=from_start)
        assert await _counts(world) == counts
    assert counts == (5, 1, 1, 1)


async def _counts(world: World) -> tuple[int, ...]:
    row = await world.archive.fetchrow(
        "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM message_edits),"
        " (SELECT count(*) FROM reactions),"
        " (SELECT count(*) FROM messages WHERE deleted_at IS NOT NULL)"
    )
    return tuple(row)


async def test_reaction__recorded_at_once_despite_the_message_grace_period(world: World) -> None:
    chat = await _one_chat(world)
    async with world.running(reconcile_grace_s=60.0, reconcile_interval_s=0.3):
        sent = await world.sim.send_text(chat, chat.members[0], "quick")
        await world.wait_archived({sent.event_id})
        await _react(world, sent, chat.members[1], "🎉")
        await _wait_row(world, "SELECT count(*) = 1 FROM reactions", what="prompt reaction")


async def test_reconcile__a_pass_that_hits_the_page_limit_says_there_is_more(
    world: World,
) -> None:
    """After a backfill the first pass reads the whole history; the service reads on at once
    while a pass reports ``more`` instead of one page limit per interval."""
    chat = await _one_chat(world)
    for i in range(23):
        await world.sim.send_text(chat, chat.members[0], f"history {i}")
    svc = service.Service(world.settings(reconcile_grace_s=0.0))
    await svc.open()
    try:
        small = reconcile.Reconciler(
            bridge=svc.bridge,
            synapse=svc.synapse,
            sink=svc.sink,
            processor=svc.processor,
            metrics=svc.metrics,
            batch_size=10,
            page_size=5,
            max_pages=2,
            lookback_positions=0,
            grace_s=0.0,
        )
        passes = [await small.run_once()]
        while passes[-1].more:
            passes.append(await small.run_once())
    finally:
        await svc.close()
    assert len(passes) >= 3  # 23 messages and their room's state, 10 events a pass
    assert all(p.more for p in passes[:-1])
    assert not passes[-1].more
    assert sum(p.scanned for p in passes) >= 23
