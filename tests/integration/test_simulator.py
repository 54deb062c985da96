"""The bridge simulator writes what mautrix-whatsapp writes, against a real Synapse and via SQL."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from listener.sim import bridge, synapse_writer
from tests.synapse_fixtures import sql_writer
from tests.synapse_server import SynapseServer

pytestmark = pytest.mark.synapse

EVENT_ID = re.compile(r"^\$[A-Za-z0-9_-]{43}$")
WA_MESSAGE_ID = re.compile(r"^[^:]+@(g\.us|s\.whatsapp\.net|lid):[^:]+@(s\.whatsapp\.net|lid):\w+$")

# The archiver-style reads, shared by the HTTP and SQL writer tests.
READ_EVENT = """
SELECT e.event_id, e.type, e.room_id, e.sender, e.origin_server_ts, e.outlier,
       e.rejection_reason, e.stream_ordering, e.contains_url, e.state_key,
       j.json, j.format_version
FROM events e JOIN event_json j USING (event_id) WHERE e.event_id = $1
"""
READ_ROW = "SELECT * FROM message WHERE rowid = $1"
READ_GHOST = "SELECT name, name_set FROM ghost WHERE bridge_id = '' AND id = $1"
READ_MEMBER_NAME = """
SELECT display_name FROM room_memberships
WHERE room_id = $1 AND user_id = $2 AND membership = 'join'
ORDER BY event_stream_ordering DESC LIMIT 1
"""
READ_MEDIA = "SELECT * FROM local_media_repository WHERE media_id = $1"
READ_RELATION = "SELECT relates_to_id, relation_type FROM event_relations WHERE event_id = $1"
READ_REDACTION = "SELECT redacts FROM redactions WHERE event_id = $1"


async def read_event(conn: Any, event_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(READ_EVENT, event_id)
    assert row is not None, f"no event {event_id}"
    record = dict(row)
    record["pdu"] = json.loads(record.pop("json"))
    return record


def media_file(store: Path, mxc: str) -> Path:
    media_id = mxc.rsplit("/", 1)[1]
    return store / synapse_writer.media_content_path(media_id)


async def make_world(
    sim: bridge.BridgeSimulator,
) -> tuple[bridge.Chat, bridge.Contact, bridge.Contact]:
    await sim.setup()
    known = await sim.add_contact("Lena Vogel")
    unsynced = await sim.add_contact("Jonas Unsynced", lid=True, synced=False)
    chat = await sim.create_group("Climbing crew", [known, unsynced])
    return chat, known, unsynced


@pytest.fixture
async def http_sim(
    bridge_pool: asyncpg.Pool, http_writer: synapse_writer.HttpSynapseWriter, rng: random.Random
) -> bridge.BridgeSimulator:
    # A login per test keeps tests independent on the one session Synapse.
    login = "49151" + "".join(random.choices("0123456789", k=8))
    user = "alice" + login[-6:]
    return bridge.BridgeSimulator(
        bridge_pool, http_writer, rng=rng, login_phone=login, user_localpart=user
    )


async def test_text__event_sent_first_then_row_with_real_formats(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool, synapse_db: asyncpg.Connection
) -> None:
    chat, known, _ = await make_world(http_sim)
    sent = await http_sim.send_text(chat, known, "hello from WhatsApp")

    row = await bridge_pool.fetchrow(READ_ROW, sent.rowid)
    event = await read_event(synapse_db, sent.event_id)
    assert EVENT_ID.match(sent.event_id)
    assert (row["bridge_id"], row["part_id"], row["edit_count"]) == ("", "", 0)
    assert row["mxid"] == sent.event_id
    assert row["room_id"] == chat.portal_id
    assert row["room_receiver"] == ""
    assert chat.portal_id.startswith("1203630")
    assert WA_MESSAGE_ID.match(row["id"])
    assert row["id"] == sent.wa_message_id
    assert row["timestamp"] % 1_000_000_000 == 0
    assert json.loads(row["metadata"])["sender_device_id"] in (0, 1, 23)
    assert event["origin_server_ts"] == row["timestamp"] // 1_000_000
    assert event["sender"] == known.mxid == row["sender_mxid"]
    assert event["pdu"]["content"] == {"msgtype": "m.text", "body": "hello from WhatsApp"}
    assert (event["outlier"], event["rejection_reason"]) == (False, None)
    assert sent.committed_at_s <= time.time()


async def test_reply__sets_reply_to_id_and_in_reply_to(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool, synapse_db: asyncpg.Connection
) -> None:
    chat, known, unsynced = await make_world(http_sim)
    first = await http_sim.send_text(chat, known, "who is coming?")
    reply = await http_sim.send_text(chat, unsynced, "me", reply_to=first)

    row = await bridge_pool.fetchrow(READ_ROW, reply.rowid)
    event = await read_event(synapse_db, reply.event_id)
    assert row["reply_to_id"] == first.wa_message_id
    assert row["reply_to_part_id"] is None
    relates = event["pdu"]["content"]["m.relates_to"]
    assert relates == {"m.in_reply_to": {"event_id": first.event_id}}
    # Plain replies are not relations in Synapse's sense.
    assert await synapse_db.fetchrow(READ_RELATION, reply.event_id) is None


async def test_captioned_image__bytes_land_at_synapse_media_store_path(
    http_sim: bridge.BridgeSimulator,
    synapse_db: asyncpg.Connection,
    synapse_server: SynapseServer,
    rng: random.Random,
) -> None:
    chat, known, _ = await make_world(http_sim)
    data = bridge.make_png(64, 48, rng)
    media = bridge.Media("image", data, "image/png", "IMG-0001.png", "view from the top", 64, 48)
    sent = await http_sim.send_media(chat, known, media)

    content = (await read_event(synapse_db, sent.event_id))["pdu"]["content"]
    assert content["msgtype"] == "m.image"
    assert (content["body"], content["filename"]) == ("view from the top", "IMG-0001.png")
    path = media_file(synapse_server.media_store_path, content["url"])
    assert path.read_bytes() == data
    media_row = await synapse_db.fetchrow(READ_MEDIA, content["url"].rsplit("/", 1)[1])
    assert media_row["media_type"] == "image/png"
    assert media_row["upload_name"] == "IMG-0001.png"
    assert media_row["media_length"] == len(data)
    assert media_row["user_id"] == known.mxid


async def test_voice_note_and_sticker__event_shapes(
    http_sim: bridge.BridgeSimulator, synapse_db: asyncpg.Connection, rng: random.Random
) -> None:
    chat, known, _ = await make_world(http_sim)
    voice = bridge.Media("voice", rng.randbytes(300), "audio/ogg", "voice.ogg", duration_ms=3000)
    sticker = bridge.Media("sticker", bridge.make_png(32, 32, rng), "image/png", "s.png")
    sent_voice = await http_sim.send_media(chat, known, voice)
    sent_sticker = await http_sim.send_media(chat, known, sticker)

    voice_event = await read_event(synapse_db, sent_voice.event_id)
    assert voice_event["pdu"]["content"]["msgtype"] == "m.audio"
    assert "org.matrix.msc3245.voice" in voice_event["pdu"]["content"]
    sticker_event = await read_event(synapse_db, sent_sticker.event_id)
    assert sticker_event["type"] == "m.sticker"
    assert sticker_event["contains_url"] is True


async def test_history_sync__old_timestamp_new_rowid(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool, synapse_db: asyncpg.Connection
) -> None:
    chat, known, _ = await make_world(http_sim)
    live = await http_sim.send_text(chat, known, "live message")
    old_ns = 1_600_000_000 * 1_000_000_000
    backfilled = await http_sim.history_sync(chat, 3, old_ns)

    assert all(m.rowid > live.rowid for m in backfilled)
    first = await read_event(synapse_db, backfilled[0].event_id)
    assert first["origin_server_ts"] == 1_600_000_000_000
    assert (
        first["stream_ordering"] > (await read_event(synapse_db, live.event_id))["stream_ordering"]
    )
    row = await bridge_pool.fetchrow(READ_ROW, backfilled[0].rowid)
    assert row["timestamp"] == old_ns


async def test_unsynced_contact__ghost_name_empty_but_synapse_has_display_name(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool, synapse_db: asyncpg.Connection
) -> None:
    chat, _, unsynced = await make_world(http_sim)
    sent = await http_sim.send_text(chat, unsynced, "hi, new number")

    ghost = await bridge_pool.fetchrow(READ_GHOST, unsynced.ghost_id)
    assert (ghost["name"], ghost["name_set"]) == ("", False)
    assert unsynced.ghost_id.startswith("lid-")
    assert ":" + unsynced.jid + ":" in sent.wa_message_id
    display = await synapse_db.fetchval(READ_MEMBER_NAME, chat.room_id, unsynced.mxid)
    assert display == "Jonas Unsynced"


async def test_matrix_user_message__real_sender_and_login_ghost(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool, synapse_db: asyncpg.Connection
) -> None:
    chat, _, _ = await make_world(http_sim)
    sent = await http_sim.send_from_matrix_user(chat, "typed in Element")

    row = await bridge_pool.fetchrow(READ_ROW, sent.rowid)
    assert row["sender_mxid"] == http_sim.user_mxid
    assert row["sender_id"] == http_sim.login_id
    assert (await read_event(synapse_db, sent.event_id))["sender"] == http_sim.user_mxid


async def test_dm__portal_keyed_by_contact_jid_with_login_receiver(
    http_sim: bridge.BridgeSimulator, bridge_pool: asyncpg.Pool
) -> None:
    await http_sim.setup()
    contact = await http_sim.add_contact("Mia Direct")
    dm = await http_sim.create_dm(contact)
    sent = await http_sim.send_text(dm, contact, "just us")

    portal = await bridge_pool.fetchrow(
        "SELECT * FROM portal WHERE bridge_id = '' AND id = $1", dm.portal_id
    )
    assert (portal["receiver"], portal["room_type"]) == (http_sim.login_id, "dm")
    assert portal["other_user_id"] == contact.ghost_id
    assert portal["mxid"] == dm.room_id
    assert dm.portal_id.endswith("@s.whatsapp.net")
    row = await bridge_pool.fetchrow(READ_ROW, sent.rowid)
    assert row["room_receiver"] == http_sim.login_id


# ------------------------------------------------------------------ SQL writer


@pytest.fixture(params=["subset", "real_schema"])
def sql_target(
    request: pytest.FixtureRequest, tmp_path: Path, rng: random.Random
) -> tuple[asyncpg.Pool, synapse_writer.SqlSynapseWriter]:
    fixture = "synapse_subset_pool" if request.param == "subset" else "synapse_real_schema_pool"
    pool: asyncpg.Pool = request.getfixturevalue(fixture)
    return pool, sql_writer(pool, tmp_path / "media_store", rng)


async def test_sql_writer__rows_read_like_real_synapse(
    sql_target: tuple[asyncpg.Pool, synapse_writer.SqlSynapseWriter],
    bridge_pool: asyncpg.Pool,
    rng: random.Random,
) -> None:
    pool, writer = sql_target
    sim = bridge.BridgeSimulator(bridge_pool, writer, rng=rng)
    chat, known, unsynced = await make_world(sim)
    text = await sim.send_text(chat, known, "hello")
    thread = await sim.send_text(chat, unsynced, "in thread", thread_root=text)
    png = bridge.make_png(64, 48, rng)
    image = await sim.send_media(
        chat, known, bridge.Media("image", png, "image/png", "a.png", "caption", 64, 48)
    )
    redaction_id = await writer.redact(chat.room_id, thread.event_id, unsynced.mxid, "oops")

    events = [await read_event(pool, m.event_id) for m in (text, thread, image)]
    for event in events:
        assert EVENT_ID.match(event["event_id"])
        assert event["format_version"] == 4
        assert (event["outlier"], event["rejection_reason"], event["state_key"]) == (
            False, None, None,
        )  # fmt: skip
        assert "event_id" not in event["pdu"]
        assert event["pdu"]["room_id"] == chat.room_id
    assert [e["stream_ordering"] for e in events] == sorted(e["stream_ordering"] for e in events)
    assert events[0]["origin_server_ts"] == text.timestamp_ns // 1_000_000
    assert events[2]["contains_url"] is True
    assert events[2]["pdu"]["content"]["body"] == "caption"
    assert media_file(writer.media_store_path, events[2]["pdu"]["content"]["url"]).read_bytes() \
        == png  # fmt: skip
    assert await pool.fetchval(READ_REDACTION, redaction_id) == thread.event_id
    # The thread relation existed, and went away with the redaction (as in Synapse).
    assert await pool.fetchrow(READ_RELATION, thread.event_id) is None
    display = await pool.fetchval(READ_MEMBER_NAME, chat.room_id, unsynced.mxid)
    assert display == "Jonas Unsynced"
    ghost = await bridge_pool.fetchrow(READ_GHOST, unsynced.ghost_id)
    assert ghost["name"] == ""


async def test_sql_writer__thread_relation_row(
    synapse_subset_pool: asyncpg.Pool, bridge_pool: asyncpg.Pool, tmp_path: Path, rng: random.Random
) -> None:
    writer = sql_writer(synapse_subset_pool, tmp_path, rng)
    sim = bridge.BridgeSimulator(bridge_pool, writer, rng=rng)
    chat, known, _ = await make_world(sim)
    root = await sim.send_text(chat, known, "root")
    comment = await sim.send_text(chat, known, "comment", thread_root=root)

    relation = await synapse_subset_pool.fetchrow(READ_RELATION, comment.event_id)
    assert tuple(relation) == (root.event_id, "m.thread")
    row = await bridge_pool.fetchrow(READ_ROW, comment.rowid)
    assert row["thread_root_id"] == root.wa_message_id


@pytest.mark.parametrize("one_statement", [False, True])
async def test_insert_many_in_one_transaction__all_rows_commit_together(
    synapse_subset_pool: asyncpg.Pool,
    bridge_pool: asyncpg.Pool,
    tmp_path: Path,
    rng: random.Random,
    one_statement: bool,
) -> None:
    writer = sql_writer(synapse_subset_pool, tmp_path, rng)
    sim = bridge.BridgeSimulator(bridge_pool, writer, rng=rng)
    chat, _, _ = await make_world(sim)
    sent = await sim.insert_many_in_one_transaction(chat, 2000, one_statement=one_statement)

    assert len({m.committed_at_s for m in sent}) == 1
    assert len({m.rowid for m in sent}) == 2000
    mxids = await bridge_pool.fetchval("SELECT count(DISTINCT mxid) FROM message")
    events = await synapse_subset_pool.fetchval(
        "SELECT count(*) FROM events e JOIN event_json j USING (event_id) "
        "WHERE e.type = 'm.room.message'"
    )
    assert mxids == events == 2000


async def test_run_traffic__paced_mixed_messages_with_callback(
    synapse_subset_pool: asyncpg.Pool, bridge_pool: asyncpg.Pool, tmp_path: Path, rng: random.Random
) -> None:
    writer = sql_writer(synapse_subset_pool, tmp_path, rng)
    sim = bridge.BridgeSimulator(bridge_pool, writer, rng=rng)
    seen: list[bridge.SentMessage] = []

    began = time.monotonic()
    sent = await sim.run_traffic(100, 1.5, on_sent=seen.append)
    elapsed = time.monotonic() - began

    assert seen == sent
    # Never faster than the pace (150 in 1.5 s); on a loaded machine it falls behind instead
    # of bursting, so only a generous floor.
    assert 30 <= len(sent) <= 150
    assert elapsed < 15  # world setup + pacing, no runaway
    types = {(m.event_type, m.content.get("msgtype")) for m in sent}
    assert ("m.room.message", "m.text") in types
    assert len(types) >= 3
    assert any(m.sender_mxid == sim.user_mxid for m in sent)
    assert any(not m.sender.synced for m in sent)
    assert any(m.reply_to_id for m in sent)
    assert len({m.chat.portal_id for m in sent}) == len(sim.chats) == 5


async def test_run_traffic__against_real_synapse(
    http_sim: bridge.BridgeSimulator, synapse_db: asyncpg.Connection
) -> None:
    await http_sim.ensure_world(groups=1, dms=1, group_size=2)  # keep setup HTTP calls few
    sent = await http_sim.run_traffic(30, 1.0)
    assert len(sent) >= 25
    ids = [m.event_id for m in sent]
    found = await synapse_db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1)", ids)
    assert found == len(sent)
