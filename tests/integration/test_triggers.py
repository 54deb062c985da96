"""sql/triggers.sql, sql/uninstall_triggers.sql and sql/views.sql against real PostgreSQL.

Every install goes through the real operator path (``psql -f``) or the CLI path
(``sqlfiles.run_sql_file``), usually both. Notifications are collected up to a marker NOTIFY sent
in a later transaction: PostgreSQL delivers notifications in commit order, so everything before
the marker is exactly what the statements under test sent, with no sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from listener.core import payload
from listener.schema import sqlfiles
from tests import pg

DEFAULT_CHANNEL = "archiver_db"
MARKER = "test-marker"
TIMEOUT_S = 10.0
INSTALLERS = ("psql", "asyncpg")
VIEW_COLUMNS = (
    "rowid",
    "whatsapp_id",
    "matrix_event_id",
    "whatsapp_room_id",
    "matrix_room_id",
    "room_name",
    "room_type",
    "whatsapp_sender_id",
    "matrix_sender_id",
    "sender_name",
    "sender_identifiers",
    "message_time",
    "reply_to_id",
    "thread_root_id",
    "metadata",
)

SEED = """
INSERT INTO portal (bridge_id, id, receiver, mxid, name, topic, avatar_id, avatar_hash, avatar_mxc,
                    name_set, avatar_set, topic_set, in_space, room_type, metadata)
VALUES ('', 'chat@g.us', '', '!room:example.org', 'Chat', '', '', '', '',
        true, false, false, false, '', '{}');
INSERT INTO ghost (bridge_id, id, name, avatar_id, avatar_hash, avatar_mxc, name_set, avatar_set,
                   contact_info_set, is_bot, identifiers, metadata)
VALUES ('', '4915', 'Bob', '', '', '', true, false, true, false, '["tel:+4915"]', '{}'),
       ('', 'lid-1', '', '', '', '', false, false, false, false, '[]', '{}');
"""

INSERT_GENERATED = """
INSERT INTO message (bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id, sender_mxid,
                     timestamp, edit_count, metadata)
SELECT '', 'wa-' || u, '', '$ev-' || u, 'chat@g.us', '', '4915', '@whatsapp_4915:example.org',
       1700000000123456789, 0, '{}'
FROM (SELECT gen_random_uuid()::text AS u FROM generate_series(1, $1::int)) AS s
RETURNING rowid
"""

INSERT_EXPLICIT = """
INSERT INTO message (rowid, bridge_id, id, part_id, mxid, room_id, room_receiver, sender_id,
                     sender_mxid, timestamp, edit_count, metadata)
SELECT r, '', 'wa-' || r, '', '$ev-' || r, 'chat@g.us', '', '4915', '@whatsapp_4915:example.org',
       1700000000123456789, 0, '{}'
FROM unnest($1::bigint[]) AS r
RETURNING rowid
"""


@pytest.fixture(scope="session")
async def bridge_template() -> AsyncIterator[str]:
    fixture = (pg.REPO / "listener" / "sim" / "fixtures" / "bridge_v29.sql").read_text(
        encoding="utf-8"
    )

    async def setup(conn: asyncpg.Connection) -> None:
        await conn.execute(fixture)
        await conn.execute(SEED)

    name = await pg.build_template(pg.unique_name("tpl_bridge_triggers"), setup)
    yield name
    await pg.drop_database(name)


@pytest.fixture
async def bridge_url(bridge_template: str) -> AsyncIterator[str]:
    name = pg.unique_name("bridge_triggers")
    url = await pg.create_database(name, template=bridge_template)
    yield url
    await pg.drop_database(name)


@pytest.fixture
async def writer(bridge_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(bridge_url)
    yield conn
    await conn.close()


@dataclass
class Listener:
    """A separate connection LISTENing on one channel; ``sent`` collects up to a marker."""

    conn: asyncpg.Connection
    channel: str
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def on_notify(self, _conn: object, _pid: int, _channel: str, message: str) -> None:
        self.queue.put_nowait(message)

    async def sent(self, writer: asyncpg.Connection) -> list[str]:
        """Everything notified on ``channel`` by transactions that committed before this call."""
        await writer.execute("SELECT pg_notify($1, $2)", self.channel, MARKER)
        received = []
        while (message := await asyncio.wait_for(self.queue.get(), TIMEOUT_S)) != MARKER:
            received.append(message)
        return received


async def listen(url: str, channel: str = DEFAULT_CHANNEL) -> Listener:
    conn = await asyncpg.connect(url)
    listener = Listener(conn=conn, channel=channel)
    await conn.add_listener(channel, listener.on_notify)
    return listener


@pytest.fixture
async def listener(bridge_url: str) -> AsyncIterator[Listener]:
    listener = await listen(bridge_url)
    yield listener
    await listener.conn.close()


async def run_psql(url: str, name: str, variables: dict[str, str]) -> str:
    """``psql -f sql/<name>`` exactly as the operator runs it; returns stderr."""
    args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(sqlfiles.sql_path(name))]
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    proc = await asyncio.create_subprocess_exec(
        "psql", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT_S * 3)
    if proc.returncode != 0:
        raise RuntimeError(f"psql -f {name} exited {proc.returncode}: {stderr.decode()}")
    return stderr.decode()


async def install(url: str, installer: str, name: str = "triggers.sql", **variables: str) -> None:
    if installer == "psql":
        await run_psql(url, name, variables)
    else:
        conn = await asyncpg.connect(url)
        try:
            await sqlfiles.run_sql_file(conn, name, variables)
        finally:
            await conn.close()


async def insert(conn: asyncpg.Connection, count: int) -> list[int]:
    return [row["rowid"] for row in await conn.fetch(INSERT_GENERATED, count)]


async def insert_rowids(conn: asyncpg.Connection, rowids: Sequence[int]) -> list[int]:
    return [row["rowid"] for row in await conn.fetch(INSERT_EXPLICIT, list(rowids))]


def parsed(messages: list[str]) -> list[payload.Notification]:
    return [payload.parse_notification(message) for message in messages]


def covered(ranges: Sequence[tuple[int, int]]) -> list[int]:
    return [rowid for lo, hi in ranges for rowid in range(lo, hi + 1)]


async def trigger_names(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.message'::regclass"
        " AND NOT tgisinternal ORDER BY tgname"
    )
    return [row["tgname"] for row in rows]


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_trigger__single_insert_sends_one_notification(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, installer)
    [rowid] = await insert(writer, 1)

    messages = await listener.sent(writer)

    assert parsed(messages) == [payload.Notification("INSERT", "message", ((rowid, rowid),))]
    assert json.loads(messages[0]) == {
        "v": 1,
        "table": "message",
        "op": "INSERT",
        "ranges": [[rowid, rowid]],
    }


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_trigger__thousand_row_statement_sends_one_small_notification(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, installer)
    rowids = await insert(writer, 1000)

    messages = await listener.sent(writer)

    assert len(messages) == 1
    assert len(messages[0].encode()) < 8000
    assert covered(parsed(messages)[0].ranges) == sorted(rowids)


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_trigger__non_contiguous_rowids_become_islands(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, installer)
    every_7th = [7 * i for i in range(1, 51)]
    mixed = [1000, 1001, 1002, 1003, 1005, 2000, 2001]

    await insert_rowids(writer, every_7th)
    await insert_rowids(writer, list(reversed(mixed)))

    first, second = parsed(await listener.sent(writer))
    assert first.ranges == tuple((r, r) for r in every_7th)
    assert second.ranges == ((1000, 1003), (1005, 1005), (2000, 2001))


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_trigger__huge_sparse_statement_collapses_to_covering_range(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, installer)
    rowids = [10_000_000 + 7 * i for i in range(5000)]

    await insert_rowids(writer, rowids)

    messages = await listener.sent(writer)
    assert len(messages) == 1
    assert len(messages[0].encode()) < 8000
    assert parsed(messages)[0].ranges == ((min(rowids), max(rowids)),)


async def test_trigger__many_small_islands_stay_exact_while_they_fit(
    bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "asyncpg")
    rowids = [2 * i for i in range(1, 401)]  # 400 islands, about 4 KB

    await insert_rowids(writer, rowids)

    [notification] = parsed(await listener.sent(writer))
    assert covered(notification.ranges) == rowids


async def test_trigger__statement_inserting_nothing_sends_nothing(
    bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "asyncpg")
    await insert_rowids(writer, [5])
    await listener.sent(writer)  # drain the notification for rowid 5

    assert await insert(writer, 0) == []
    conflicting = INSERT_EXPLICIT.replace("RETURNING", "ON CONFLICT DO NOTHING RETURNING")
    assert await writer.fetch(conflicting, [5]) == []

    assert await listener.sent(writer) == []


async def test_trigger__rolled_back_insert_sends_nothing(
    bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "asyncpg")
    transaction = writer.transaction()
    await transaction.start()
    await insert(writer, 3)
    await transaction.rollback()

    assert await listener.sent(writer) == []


async def test_trigger__notifies_on_commit_once_per_statement(
    bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "asyncpg")
    async with writer.transaction():
        first = await insert(writer, 2)
        second = await insert(writer, 1)

    assert [covered(n.ranges) for n in parsed(await listener.sent(writer))] == [first, second]


@pytest.mark.parametrize(("first", "second"), [("psql", "asyncpg"), ("asyncpg", "psql")])
async def test_install__rerunning_is_harmless(
    first: str, second: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, first)
    await install(bridge_url, second)
    await install(bridge_url, second)

    assert await trigger_names(writer) == [
        "archiver_db_message_delete",
        "archiver_db_message_insert",
        "archiver_db_message_update",
    ]
    rowids = await insert(writer, 2)
    assert [covered(n.ranges) for n in parsed(await listener.sent(writer))] == [rowids]


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_install__is_atomic_when_it_fails(installer: str) -> None:
    name = pg.unique_name("no_bridge")
    url = await pg.create_database(name)  # no public.message: CREATE TRIGGER fails
    try:
        with pytest.raises((RuntimeError, asyncpg.UndefinedTableError)):
            await install(url, installer)
        conn = await asyncpg.connect(url)
        try:
            schema = "SELECT count(*) FROM pg_namespace WHERE nspname = 'archiver_db'"
            assert await conn.fetchval(schema) == 0
        finally:
            await conn.close()
    finally:
        await pg.drop_database(name)


async def test_run_sql_file__leaves_the_connection_usable_after_a_failure() -> None:
    name = pg.unique_name("no_bridge")
    url = await pg.create_database(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            with pytest.raises(asyncpg.UndefinedTableError):
                await sqlfiles.run_sql_file(conn, "triggers.sql", {})
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        await pg.drop_database(name)


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize(
    ("channel", "error"),
    [("", "channel name cannot be empty"), ("c" * 70, "channel name too long")],
)
async def test_trigger__never_fails_the_bridge_insert(
    installer: str, channel: str, error: str, bridge_url: str, writer: asyncpg.Connection
) -> None:
    await install(bridge_url, installer, channel=channel)
    warnings: list[str] = []
    writer.add_log_listener(lambda _conn, message: warnings.append(str(message)))

    rowids = await insert(writer, 3)

    check = await asyncpg.connect(bridge_url)
    try:
        committed = await check.fetchval(
            "SELECT count(*) FROM message WHERE rowid = ANY($1::bigint[])", rowids
        )
    finally:
        await check.close()
    assert committed == 3
    assert any(error in warning and "archiver_db" in warning for warning in warnings)


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_install__custom_channel(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    custom = await listen(bridge_url, "archiver_custom")
    try:
        await install(bridge_url, installer, channel="archiver_custom")
        [rowid] = await insert(writer, 1)

        assert parsed(await custom.sent(writer))[0].ranges == ((rowid, rowid),)
        assert await listener.sent(writer) == []
    finally:
        await custom.conn.close()


async def _archiver_objects(conn: asyncpg.Connection) -> dict[str, int]:
    return {
        "schemas": await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'archiver_db'"
        ),
        "functions": await conn.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname IN ('notify_rowids', 'notify_table')"
        ),
        "triggers": len(await trigger_names(conn)),
    }


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_uninstall__removes_everything_and_inserts_still_work(
    installer: str, bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "psql")
    await install(bridge_url, installer, "uninstall_triggers.sql")
    await install(bridge_url, installer, "uninstall_triggers.sql")  # idempotent

    assert await _archiver_objects(writer) == {"schemas": 0, "functions": 0, "triggers": 0}
    assert len(await insert(writer, 2)) == 2
    assert await listener.sent(writer) == []


async def test_uninstall__keeps_the_schema_while_views_live_in_it(
    bridge_url: str, writer: asyncpg.Connection
) -> None:
    await install(bridge_url, "psql")
    await install(bridge_url, "psql", "views.sql")

    await install(bridge_url, "asyncpg", "uninstall_triggers.sql")

    assert await _archiver_objects(writer) == {"schemas": 1, "functions": 0, "triggers": 0}
    assert await writer.fetchval("SELECT count(*) FROM archiver_db.v_messages_enriched") == 0


@pytest.mark.parametrize("installer", INSTALLERS)
async def test_views__left_join_keeps_rows_without_portal_and_blanks_empty_names(
    installer: str, bridge_url: str, writer: asyncpg.Connection
) -> None:
    await install(bridge_url, installer, "views.sql")
    await install(bridge_url, installer, "views.sql")  # idempotent
    # The bridge's FKs make an orphan impossible in normal operation; bypass them (superuser)
    # to prove the view does not depend on them.
    await writer.execute("SET session_replication_role = replica")
    await writer.execute(
        """
        INSERT INTO message (rowid, bridge_id, id, part_id, mxid, room_id, room_receiver,
                             sender_id, sender_mxid, timestamp, edit_count, reply_to_id, metadata)
        VALUES (42, '', 'wa-42', '', '$ev-42', 'gone@g.us', '', 'lid-1',
                '@whatsapp_lid-1:example.org', 1700000000123456789, 0, 'wa-41', '{"k": 1}')
        """
    )
    await writer.execute("RESET session_replication_role")

    row = await writer.fetchrow("SELECT * FROM archiver_db.v_messages_enriched WHERE rowid = 42")

    assert row is not None
    assert row["whatsapp_room_id"] == "gone@g.us"
    assert row["matrix_room_id"] is None
    assert row["room_name"] is None
    assert row["sender_name"] is None
    assert row["sender_identifiers"] == "[]"
    assert row["reply_to_id"] == "wa-41"
    assert json.loads(row["metadata"]) == {"k": 1}
    assert row["message_time"].timestamp() == pytest.approx(1700000000.123457, abs=1e-6)
    assert row["message_time"].microsecond == 123457


async def test_views__joins_portal_and_ghost_on_the_bridge_keys(
    bridge_url: str, writer: asyncpg.Connection
) -> None:
    await install(bridge_url, "psql", "views.sql")
    [rowid] = await insert(writer, 1)

    row = await writer.fetchrow(
        "SELECT * FROM archiver_db.v_messages_enriched WHERE rowid = $1", rowid
    )

    assert row is not None
    assert (row["matrix_room_id"], row["room_name"], row["room_type"]) == (
        "!room:example.org",
        "Chat",
        "",
    )
    assert (row["sender_name"], row["matrix_sender_id"]) == ("Bob", "@whatsapp_4915:example.org")
    assert tuple(row.keys()) == VIEW_COLUMNS


async def test_trigger__update_and_delete_send_their_rowids(
    bridge_url: str, writer: asyncpg.Connection, listener: Listener
) -> None:
    await install(bridge_url, "asyncpg")
    await insert_rowids(writer, [1, 2, 3, 9])
    await writer.execute("UPDATE message SET edit_count = 1 WHERE rowid IN (1, 2, 9)")
    await writer.execute("DELETE FROM message WHERE rowid IN (3, 9)")

    assert [(n.table, n.op, n.ranges) for n in parsed(await listener.sent(writer))] == [
        ("message", "INSERT", ((1, 3), (9, 9))),
        ("message", "UPDATE", ((1, 2), (9, 9))),
        ("message", "DELETE", ((3, 3), (9, 9))),
        # The FK cascade from message to reaction runs a (here empty) DELETE on reaction.
        ("reaction", "DELETE", ()),
    ]
    await install(bridge_url, "psql", "uninstall_triggers.sql")
    assert await _archiver_objects(writer) == {"schemas": 0, "functions": 0, "triggers": 0}
