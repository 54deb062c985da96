"""The archiver against a REAL Synapse, with the bridge simulated the way mautrix-whatsapp works.

Ghost users of the application service send every event through Synapse's client-server API
(``?user_id=`` impersonation, ``?ts=`` back-dating for history), and only then is the bridge's
``message`` row inserted. Synapse is the one session server (tests/synapse_fixtures.py): its
database is the archiver's Synapse source and its media_store is MEDIA_STORE_PATH. The bridge and
archive databases are cloned per module from the session templates of tests/conftest.py.

One scene is built and archived once per module; each test then checks one behaviour of the
archive against what Synapse itself stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from listener.sim import bridge as simulator
from listener.sim import synapse_writer
from tests import pg
from tests.conftest import World, wait_until
from tests.synapse_server import SynapseServer

pytestmark = pytest.mark.synapse

NS = 1_000_000_000
HISTORY_START_NS = 1_600_000_000 * NS  # 2020-09-13, a WhatsApp history sync
CAPTION = "Look at this view from the summit"

READ_EVENT = """
SELECT e.event_id, e.room_id, e.sender, e.type, e.origin_server_ts, e.stream_ordering,
       e.contains_url, j.json
FROM events e JOIN event_json j USING (event_id)
WHERE e.event_id = $1
"""
READ_ARCHIVED = "SELECT * FROM messages WHERE event_id = $1"


@dataclass
class Scene:
    """What was sent (by name) and where it ended up."""

    world: World
    synapse: SynapseServer
    sim: simulator.BridgeSimulator
    group: simulator.Chat
    dm: simulator.Chat
    known: simulator.Contact
    unsynced: simulator.Contact
    sent: dict[str, simulator.SentMessage]
    history: list[simulator.SentMessage]
    redactions: dict[str, str]  # message name -> redaction event ID

    async def synapse_event(self, event_id: str) -> dict[str, Any]:
        row = await self.world.synapse.fetchrow(READ_EVENT, event_id)
        assert row is not None, f"Synapse has no event {event_id}"
        record = dict(row)
        record["pdu"] = json.loads(record.pop("json"))
        return record

    async def archived(self, event_id: str) -> dict[str, Any]:
        row = await self.world.archive.fetchrow(READ_ARCHIVED, event_id)
        assert row is not None, f"archive has no message {event_id}"
        record = dict(row)
        record["content"] = json.loads(record["content"]) if record["content"] else None
        return record

    def all_sent(self) -> list[simulator.SentMessage]:
        return [*self.history, *self.sent.values()]


@contextlib.asynccontextmanager
async def real_synapse_world(
    synapse_server: SynapseServer, bridge_template: str, archive_template: str
) -> AsyncIterator[tuple[World, synapse_writer.HttpSynapseWriter]]:
    """Fresh bridge and archive databases around the session's real Synapse: its database is
    the Synapse source, its media_store the MEDIA_STORE_PATH; the bridge is simulated through
    the application service (HTTP) with a login and Matrix user of its own."""
    suffix = uuid.uuid4().hex[:8]
    names = [f"e2e_bridge_{suffix}", f"e2e_archive_{suffix}"]
    bridge_url = await pg.create_database(names[0], template=bridge_template)
    archive_url = await pg.create_database(names[1], template=archive_template)
    pools = [
        await asyncpg.create_pool(url, min_size=1, max_size=4)
        for url in (bridge_url, synapse_server.db_url, archive_url)
    ]
    writer = synapse_writer.HttpSynapseWriter(
        synapse_server.base_url,
        as_token=synapse_server.as_token,
        server_name=synapse_server.server_name,
    )
    rng = random.Random(suffix)
    login = "49151" + "".join(rng.choices("0123456789", k=8))
    sim = simulator.BridgeSimulator(
        pools[0], writer, rng=rng, login_phone=login, user_localpart="alice" + suffix
    )
    world = World(
        bridge_url=bridge_url,
        synapse_url=synapse_server.db_url,
        archive_url=archive_url,
        media_store=synapse_server.media_store_path,
        bridge=pools[0],
        synapse=pools[1],
        archive=pools[2],
        sim=sim,
        writer=writer,  # type: ignore[arg-type]  # World is typed for the SQL writer
    )
    try:
        yield world, writer
    finally:
        await writer.aclose()
        for pool in pools:
            await pool.close()
        for name in names:
            await pg.drop_database(name)


@pytest.fixture
async def real_world(
    synapse_server: SynapseServer, bridge_template: str, archive_template: str
) -> AsyncIterator[World]:
    """Per test: fresh bridge + archive databases, the session's real Synapse."""
    async with real_synapse_world(synapse_server, bridge_template, archive_template) as (w, _):
        yield w


@pytest.fixture(scope="module")
async def scene(
    synapse_server: SynapseServer, bridge_template: str, archive_template: str
) -> AsyncIterator[Scene]:
    """One scene per module (building it through HTTP is the slow part), archived once."""
    async with real_synapse_world(synapse_server, bridge_template, archive_template) as (
        world,
        writer,
    ):
        yield await _build_scene(world, synapse_server, world.sim, writer)


async def _build_scene(
    world: World,
    synapse: SynapseServer,
    sim: simulator.BridgeSimulator,
    writer: synapse_writer.HttpSynapseWriter,
) -> Scene:
    await sim.setup()
    known = await sim.add_contact("Lena Vogel")
    lid = await sim.add_contact("Chen Li", lid=True)
    unsynced = await sim.add_contact("Unsynced Ursula", synced=False)
    group = await sim.create_group("Climbing crew", [known, lid, unsynced])
    dm = await sim.create_dm(known)
    sent: dict[str, simulator.SentMessage] = {}
    redactions: dict[str, str] = {}

    # While the archiver is down: a history sync (old `ts`, new rowids) and a disappearing
    # message the bridge bot already redacted in Matrix (its bridge row stays).
    history = await sim.history_sync(group, 6, start_ts_ns=HISTORY_START_NS)
    sent["redacted_before"] = await sim.send_text(group, known, "disappears before archiving")
    redactions["redacted_before"] = await writer.redact(
        group.room_id, sent["redacted_before"].event_id, writer.bot_mxid
    )

    async with world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 10)
        sent["text"] = await sim.send_text(group, known, "Grüße aus dem Café 🙂")
        sent["reply"] = await sim.send_text(group, lid, "same here", reply_to=sent["text"])
        sent["thread"] = await sim.send_text(
            group, known, "in the thread", thread_root=sent["text"]
        )
        sent["thread_reply"] = await sim.send_text(
            group, lid, "answering in the thread", reply_to=sent["thread"], thread_root=sent["text"]
        )
        sent["unsynced"] = await sim.send_text(group, unsynced, "who am I")
        sent["matrix_user"] = await sim.send_from_matrix_user(group, "typed in Element")
        png = simulator.make_png(64, 48, random.Random(7))
        image = simulator.Media("image", png, "image/png", "IMG-20260101.png", CAPTION, 64, 48)
        sent["image"] = await sim.send_media(group, known, image)
        sent["dm"] = await sim.send_text(dm, known, "just between us")
        sent["redacted_later"] = await sim.send_text(group, known, "oops, wrong chat")
        every = [*history, *sent.values()]
        await world.wait_archived({s.event_id for s in every}, timeout_s=20)

        # Redacted after it was archived; then read again (at-least-once: a replay or a
        # re-run backfill) while Synapse still holds the original JSON.
        redactions["redacted_later"] = await writer.redact(
            group.room_id, sent["redacted_later"].event_id, writer.bot_mxid, reason="oops"
        )
        replay = [sent["redacted_later"].rowid, sent["redacted_before"].rowid]
        await svc.processor.process(replay, owned=True)
        assert svc.crashed is None

    return Scene(world, synapse, sim, group, dm, known, unsynced, sent, history, redactions)


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


async def test_real_synapse__every_message_matches_what_synapse_stored(scene: Scene) -> None:
    for message in scene.all_sent():
        event = await scene.synapse_event(message.event_id)
        row = await scene.archived(message.event_id)
        content = event["pdu"]["content"]
        expected = {
            "event_id": message.event_id,
            "room_id": event["room_id"],
            "sender": event["sender"],
            "content": content,
            "message_type": content["msgtype"],
            "body": content["body"],
            "timestamp_ns": message.timestamp_ns,
            "whatsapp_message_id": message.wa_message_id,
            "whatsapp_chat_id": message.chat.portal_id,
            "whatsapp_sender_id": message.sender.ghost_id,
            "bridge_rowid": message.rowid,
            "room_type": message.chat.room_type,
            "has_matrix_event": True,
        }
        actual = {key: row.get(key) for key in expected}
        actual["timestamp_ns"] = _ns(row["timestamp"])
        assert actual == expected, message.event_id
        assert event["room_id"] == message.chat.room_id
    assert await scene.world.archived_count() == len(scene.all_sent())
    assert await scene.world.archive.fetchval("SELECT count(*) FROM archive_failures") == 0


async def test_real_synapse__ghost_events_back_dated_to_whatsapp_time(scene: Scene) -> None:
    for name in ("text", "reply", "image", "dm"):
        message = scene.sent[name]
        event = await scene.synapse_event(message.event_id)
        assert event["sender"] == message.sender.mxid
        assert event["origin_server_ts"] == message.timestamp_ns // 1_000_000


async def test_real_synapse__reply_relation_archived_as_reply_to_event_id(scene: Scene) -> None:
    reply = await scene.archived(scene.sent["reply"].event_id)
    text = scene.sent["text"]
    assert reply["reply_to_event_id"] == text.event_id
    assert reply["thread_root_event_id"] is None
    assert reply["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": text.event_id}}
    # Synapse keeps no relation row for a plain reply: the archive got it from the content.
    relation = await scene.world.synapse.fetchval(
        "SELECT count(*) FROM event_relations WHERE event_id = $1", scene.sent["reply"].event_id
    )
    assert relation == 0
    plain = await scene.archived(text.event_id)
    assert (plain["reply_to_event_id"], plain["thread_root_event_id"]) == (None, None)


async def test_real_synapse__thread_root_archived_as_synapse_relates_it(scene: Scene) -> None:
    thread = scene.sent["thread"]
    row = await scene.archived(thread.event_id)
    relation = await scene.world.synapse.fetchrow(
        "SELECT relates_to_id, relation_type FROM event_relations WHERE event_id = $1",
        thread.event_id,
    )
    assert relation is not None
    assert dict(relation) == {
        "relates_to_id": scene.sent["text"].event_id,
        "relation_type": "m.thread",
    }
    assert row["thread_root_event_id"] == scene.sent["text"].event_id
    # Its m.in_reply_to is only the fallback for clients without threads (is_falling_back).
    assert row["content"]["m.relates_to"]["is_falling_back"] is True
    assert row["reply_to_event_id"] is None


async def test_real_synapse__reply_inside_a_thread_keeps_both_relations(scene: Scene) -> None:
    row = await scene.archived(scene.sent["thread_reply"].event_id)
    relation = await scene.world.synapse.fetchval(
        "SELECT relates_to_id FROM event_relations WHERE event_id = $1 AND relation_type = $2",
        scene.sent["thread_reply"].event_id,
        "m.thread",
    )
    assert relation == scene.sent["text"].event_id
    assert row["thread_root_event_id"] == scene.sent["text"].event_id
    assert row["reply_to_event_id"] == scene.sent["thread"].event_id


async def test_real_synapse__ghost_without_bridge_name_gets_synapse_display_name(
    scene: Scene,
) -> None:
    message = scene.sent["unsynced"]
    ghost = await scene.world.bridge.fetchrow(
        "SELECT name, name_set FROM ghost WHERE id = $1", scene.unsynced.ghost_id
    )
    membership_name = await scene.world.synapse.fetchval(
        "SELECT display_name FROM room_memberships WHERE room_id = $1 AND user_id = $2 "
        "AND membership = 'join' ORDER BY event_stream_ordering DESC LIMIT 1",
        scene.group.room_id,
        scene.unsynced.mxid,
    )
    row = await scene.archived(message.event_id)
    assert dict(ghost) == {"name": "", "name_set": False}
    assert membership_name == "Unsynced Ursula"
    assert row["sender_display_name"] == membership_name
    assert row["sender"] == scene.unsynced.mxid
    named = await scene.archived(scene.sent["text"].event_id)
    assert named["sender_display_name"] == "Lena Vogel"


async def test_real_synapse__message_typed_in_matrix_has_the_real_user_as_sender(
    scene: Scene,
) -> None:
    message = scene.sent["matrix_user"]
    event = await scene.synapse_event(message.event_id)
    row = await scene.archived(message.event_id)
    bridge_row = await scene.world.bridge.fetchrow(
        "SELECT sender_id, sender_mxid FROM message WHERE rowid = $1", message.rowid
    )
    assert event["sender"] == scene.sim.user_mxid
    assert bridge_row["sender_mxid"] == scene.sim.user_mxid
    assert row["sender"] == scene.sim.user_mxid
    assert not synapse_writer.is_ghost(row["sender"])
    assert row["whatsapp_sender_id"] == scene.sim.self_contact.ghost_id == bridge_row["sender_id"]
    assert row["body"] == "typed in Element"


async def test_real_synapse__captioned_image_keeps_mxc_url_and_caption_as_body(
    scene: Scene,
) -> None:
    message = scene.sent["image"]
    event = await scene.synapse_event(message.event_id)
    row = await scene.archived(message.event_id)
    url = row["content"]["url"]
    media_id = url.removeprefix(f"mxc://{scene.synapse.server_name}/")
    media = await scene.world.synapse.fetchrow(
        "SELECT media_type, upload_name, media_length FROM local_media_repository "
        "WHERE media_id = $1",
        media_id,
    )
    stored = scene.synapse.media_store_path / synapse_writer.media_content_path(media_id)
    assert url.startswith("mxc://")
    assert media_id != url
    assert event["contains_url"] is True
    assert row["message_type"] == "m.image"
    assert row["body"] == CAPTION
    assert row["content"]["filename"] == "IMG-20260101.png"
    assert row["content"]["info"]["mimetype"] == "image/png"
    assert dict(media) == {
        "media_type": "image/png",
        "upload_name": "IMG-20260101.png",
        "media_length": stored.stat().st_size,
    }


async def test_real_synapse__history_sync_archived_with_old_timestamps(scene: Scene) -> None:
    live = scene.sent["text"]
    live_event = await scene.synapse_event(live.event_id)
    for i, message in enumerate(scene.history):
        event = await scene.synapse_event(message.event_id)
        row = await scene.archived(message.event_id)
        assert message.timestamp_ns == HISTORY_START_NS + i * 37 * NS
        assert event["origin_server_ts"] == message.timestamp_ns // 1_000_000
        assert _ns(row["timestamp"]) == message.timestamp_ns
        assert row["timestamp"].year == 2020
        # Old WhatsApp time, yet new to Synapse: persisted after the room was set up.
        assert event["stream_ordering"] < live_event["stream_ordering"]
    oldest = await scene.world.archive.fetchval(
        'SELECT min("timestamp") FROM messages WHERE room_id = $1', scene.group.room_id
    )
    assert _ns(oldest) == HISTORY_START_NS


@pytest.mark.parametrize("name", ["redacted_before", "redacted_later"])
async def test_real_synapse__redacted_message_archived_with_original_content(
    scene: Scene, name: str
) -> None:
    message = scene.sent[name]
    redaction = await scene.world.synapse.fetchval(
        "SELECT redacts FROM redactions WHERE event_id = $1", scene.redactions[name]
    )
    row = await scene.archived(message.event_id)
    assert redaction == message.event_id
    assert row["body"] == message.content["body"]
    assert row["content"] == {"msgtype": "m.text", "body": message.content["body"]}


async def test_real_synapse__dm_archived_with_contact_jid_and_dm_room(scene: Scene) -> None:
    message = scene.sent["dm"]
    row = await scene.archived(message.event_id)
    portal = await scene.world.bridge.fetchrow(
        "SELECT id, receiver, mxid FROM portal WHERE mxid = $1", scene.dm.room_id
    )
    assert dict(portal) == {
        "id": scene.known.jid,
        "receiver": scene.sim.login_id,
        "mxid": scene.dm.room_id,
    }
    assert row["room_id"] == scene.dm.room_id != scene.group.room_id
    assert row["whatsapp_chat_id"] == scene.known.jid
    assert row["room_type"] == "dm"


async def test_real_synapse__cursor_saved_past_every_row(scene: Scene) -> None:
    newest = await scene.world.bridge.fetchval("SELECT max(rowid) FROM message")

    async def saved() -> bool:
        value = await scene.world.archive.fetchval(
            "SELECT (value->>'rowid')::bigint FROM archiver_state WHERE name = 'bridge_cursor'"
        )
        return bool(value == newest)

    await wait_until(saved, timeout_s=2, what="cursor at the newest rowid")


async def test_real_synapse__live_ghost_message_archived_within_a_second(
    real_world: World,
) -> None:
    sim = real_world.sim
    await sim.setup()
    contact = await sim.add_contact("Paul Live")
    chat = await sim.create_dm(contact)
    async with real_world.running() as svc:
        await asyncio.wait_for(svc.listener.connected.wait(), 10)
        await svc.sweeper.sweep_once()  # let the start-up sweep settle first
        sent = await sim.send_text(chat, contact, "are you there?")
        await real_world.wait_archived({sent.event_id}, timeout_s=5)
        elapsed_s = time.time() - sent.committed_at_s
    event = await real_world.synapse.fetchrow(READ_EVENT, sent.event_id)
    row = await real_world.archive.fetchrow(READ_ARCHIVED, sent.event_id)
    assert elapsed_s < 1.0
    assert row["room_id"] == event["room_id"] == chat.room_id
    assert row["sender"] == event["sender"] == contact.mxid
    assert row["room_type"] == "dm"
