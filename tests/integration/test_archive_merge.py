"""The archive schema's merge rules (sql/archive/0002_fidelity.sql), which both sinks rely on:
any order of replays converges to the same row."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg
import pytest

from listener.core import models
from listener.sinks import postgres
from tests.conftest import World

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _message(**changes: object) -> models.ArchivedMessage:
    base = models.ArchivedMessage(
        event_id="$m",
        room_id="!r:example.org",
        room_name="Room",
        sender="@whatsapp_1:example.org",
        sender_display_name="One",
        timestamp=T0,
        message_type="m.text",
        content_json='{"body":"v0","msgtype":"m.text"}',
        content_raw=None,
        body="v0",
        whatsapp_message_id="chat:1:ABC",
        whatsapp_chat_id="chat@g.us",
        whatsapp_sender_id="1",
        part_id="",
        bridge_id="",
        bridge_rowid=7,
        room_type="",
        reply_to_event_id=None,
        thread_root_event_id=None,
        has_matrix_event=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


EDITED = {
    "content_json": '{"body":"v1","msgtype":"m.text"}',
    "body": "v1",
    "original_content_json": '{"body":"v0","msgtype":"m.text"}',
    "edit_count": 1,
    "edited_at": T0.replace(minute=5),
    "latest_edit_event_id": "$e1",
}


async def _write(world: World, *messages: models.ArchivedMessage) -> None:
    sink = postgres.PostgresSink(world.archive_url)
    await sink.open()
    try:
        for message in messages:
            await sink.write(models.ArchiveBatch(messages=[message]))
    finally:
        await sink.close()


async def _row(world: World) -> dict[str, object]:
    row = await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = '$m'")
    assert row is not None
    return dict(row)


async def test_merge__stale_pre_edit_record_does_not_revert_content(world: World) -> None:
    await _write(world, _message(), _message(**EDITED), _message())
    row = await _row(world)
    assert (row["body"], row["edit_count"], row["latest_edit_event_id"]) == ("v1", 1, "$e1")


async def test_merge__synapse_only_record_keeps_bridge_ids(world: World) -> None:
    synapse_only = _message(
        whatsapp_message_id=None,
        whatsapp_chat_id=None,
        whatsapp_sender_id=None,
        part_id=None,
        bridge_id=None,
        bridge_rowid=None,
        timestamp=T0.replace(microsecond=0),
    )
    await _write(world, _message(timestamp=T0.replace(microsecond=123456)), synapse_only)
    row = await _row(world)
    assert (row["whatsapp_message_id"], row["bridge_rowid"]) == ("chat:1:ABC", 7)
    assert row["timestamp"] == T0.replace(microsecond=123456)


async def test_merge__deletion_never_undone_and_pruned_content_never_blanks(
    world: World,
) -> None:
    deleted = _message(deleted_at=T0.replace(hour=1), redaction_event_id="$red")
    pruned = _message(
        deleted_at=T0.replace(hour=1),
        redaction_event_id="$red",
        content_json=None,
        body=None,
        message_type=None,
    )
    await _write(world, _message(), deleted, _message(), pruned)
    row = await _row(world)
    assert (row["deleted_at"], row["redaction_event_id"]) == (T0.replace(hour=1), "$red")
    assert row["body"] == "v0"


async def test_merge__replay_writes_no_new_row_version(world: World) -> None:
    await _write(world, _message(**EDITED))
    before = await world.archive.fetchval("SELECT xmin::text FROM messages")
    await _write(world, _message(**EDITED), _message())
    assert await world.archive.fetchval("SELECT xmin::text FROM messages") == before


CIPHERTEXT = {
    "message_type": "m.room.encrypted",
    "content_json": '{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgA","session_id":"S"}',
    "body": None,
    "decryption": "no_session",
    "encrypted_content_json": '{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgA"}',
    "megolm_session_id": "S",
}
DECRYPTED = {
    "decryption": "decrypted",
    "encrypted_content_json": '{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgA"}',
}


async def test_merge__late_decryption_replaces_the_ciphertext(world: World) -> None:
    await _write(world, _message(**CIPHERTEXT), _message(**DECRYPTED))
    row = await _row(world)
    assert (row["body"], row["message_type"], row["decryption"]) == ("v0", "m.text", "decrypted")
    assert row["megolm_session_id"] is None
    assert row["encrypted_content"] is not None


async def test_merge__decrypted_plaintext_never_reverts_to_ciphertext(world: World) -> None:
    """A record computed after the bridge deleted the session, or without the pickle key."""
    without_key = _message(**{**CIPHERTEXT, "decryption": None, "encrypted_content_json": None})
    await _write(world, _message(**DECRYPTED), _message(**CIPHERTEXT), without_key)
    row = await _row(world)
    assert (row["body"], row["message_type"], row["decryption"]) == ("v0", "m.text", "decrypted")
    assert row["megolm_session_id"] is None


async def test_merge__a_decrypted_message_can_wait_for_an_edits_session(world: World) -> None:
    edit_waits = _message(**{**DECRYPTED, "decryption": "no_session", "megolm_session_id": "E"})
    await _write(world, _message(**DECRYPTED), edit_waits)
    row = await _row(world)
    assert (row["body"], row["decryption"], row["megolm_session_id"]) == ("v0", "no_session", "E")


async def test_merge__decryption_status_is_one_of_five(world: World) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await world.archive.execute(
            'INSERT INTO messages (event_id, "timestamp", decryption, has_matrix_event)'
            " VALUES ('$x', now(), 'maybe', true)"
        )
