"""The archive says which bridge and network each message came from (migration 0007)."""

from __future__ import annotations

import asyncpg

from listener.schema import migrate
from tests import pg
from tests.conftest import World


async def test_the_pipeline_writes_the_bridge_the_network_and_the_bridges_ids(
    world: World,
) -> None:
    await world.sim.ensure_world(groups=1, dms=1)
    chat = world.sim.chats[0]
    async with world.running():
        sent = await world.sim.send_text(chat, chat.members[0], "hello")
        await world.wait_archived({sent.event_id})
    row = await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = $1", sent.event_id)
    assert (row["bridge"], row["network"]) == ("whatsapp", "whatsapp")
    assert row["network_message_id"] == row["whatsapp_message_id"] is not None
    assert row["network_chat_id"] == row["whatsapp_chat_id"] == chat.portal_id
    assert row["network_sender_id"] == row["whatsapp_sender_id"] is not None
    stats = await world.archive.fetchrow(
        "SELECT bridge, network FROM room_stats WHERE room_id = $1", chat.room_id
    )
    assert tuple(stats) == ("whatsapp", "whatsapp")
    # An update that does not know the origin (a record built before labelling) keeps it.
    await world.archive.execute(
        "UPDATE messages SET network = NULL, network_chat_id = NULL WHERE event_id = $1",
        sent.event_id,
    )
    kept = await world.archive.fetchrow(
        "SELECT network, network_chat_id FROM messages WHERE event_id = $1", sent.event_id
    )
    assert tuple(kept) == ("whatsapp", chat.portal_id)


async def test_the_migration_labels_what_was_archived_before_without_touching_updated_at() -> None:
    name = pg.unique_name("t_nets")
    url = await pg.create_database(name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE archive_schema_migrations (version TEXT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for path in migrate.migration_files():
            if path.stem >= "0007":
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO archive_schema_migrations VALUES ($1)", path.stem)
        await conn.execute(
            'INSERT INTO messages (event_id, room_id, "timestamp", body, whatsapp_message_id,'
            " whatsapp_chat_id, whatsapp_sender_id, updated_at) SELECT '$m' || g, '!r', now(),"
            " 'x', 'msg' || g, 'chat@g.us', 'sender' || g, '2024-01-01 00:00+00'"
            " FROM generate_series(1, 20) g"
        )
        assert "0007_networks" in await migrate.migrate(conn)
        rows = await conn.fetch("SELECT * FROM messages ORDER BY event_id")
        assert {(r["bridge"], r["network"]) for r in rows} == {("whatsapp", "whatsapp")}
        assert all(r["network_message_id"] == r["whatsapp_message_id"] for r in rows)
        assert all(r["network_chat_id"] == "chat@g.us" for r in rows)
        assert {r["updated_at"].year for r in rows} == {2024}  # no trigger ran
        stats = await conn.fetchrow("SELECT message_count, network FROM room_stats")
        assert tuple(stats) == (20, "whatsapp")
        # The triggers are back on: a new row is counted, an update is merged.
        await conn.execute(
            "INSERT INTO messages (event_id, room_id, \"timestamp\") VALUES ('$new', '!r', now())"
        )
        assert await conn.fetchval("SELECT message_count FROM room_stats") == 21
    finally:
        await conn.close()
        await pg.drop_database(name)
