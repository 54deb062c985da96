"""Encrypted portals on real PostgreSQL: the simulator's bridge sends Megolm-encrypted events
(vodozemac outbound sessions) into Synapse's tables, the inbound sessions sit in the bridge's
crypto_megolm_inbound_session (mautrix-go's v21 shape) as libolm pickles under the pickle key,
and the running archiver archives the plaintext exactly as it archives a clear portal."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from listener import service
from listener.e2ee import sessions
from listener.ops import doctor_facts, status, verify
from listener.sim import bridge as simulator
from listener.sim import megolm
from tests.conftest import World, wait_until
from tests.integration import test_media

PICKLE_KEY = "pickle-key-of-the-bridge-config-0123456789"
E2EE = {
    "bridge_pickle_key": PICKLE_KEY,
    "reconcile_grace_s": 0.0,
    "reconcile_interval_s": 0.3,
}


async def _encrypted_chat(world: World) -> simulator.Chat:
    await world.sim.ensure_world(groups=1, dms=0)
    chat = world.sim.chats[0]
    world.sim.encrypted_rooms.add(chat.room_id)
    return chat


async def _share_session(world: World, chat: simulator.Chat) -> None:
    """What the bridge does for its own outbound session: store the inbound copy."""
    outbound = world.sim.encryptor.session(chat.room_id)
    await megolm.store_session(world.bridge, outbound, PICKLE_KEY.encode())


async def _row(world: World, event_id: str) -> Any:
    return await world.archive.fetchrow("SELECT * FROM messages WHERE event_id = $1", event_id)


async def _wait(world: World, sql: str, *args: object, what: str) -> None:
    async def holds() -> bool:
        return bool(await world.archive.fetchval(sql, *args))

    await wait_until(holds, timeout_s=15, what=what)


async def test_e2ee__encrypted_portal_archived_as_plaintext(world: World) -> None:
    chat = await _encrypted_chat(world)
    # MSC4392 (crypto/encryptmegolm.go): the reply and the reaction's relation are sealed.
    world.sim.encryptor = megolm.Encryptor(msc4392=True)
    alice, bob = chat.members[0], chat.members[1]
    await _share_session(world, chat)
    async with world.running(**E2EE):
        text = await world.sim.send_text(chat, alice, "a secret")
        reply = await world.sim.send_text(chat, bob, "a reply", reply_to=text)
        await world.wait_archived({text.event_id, reply.event_id})
        await world.sim.edit(text, "a secret, edited")
        reaction = await world.sim.react(text, bob, "🔥")
        await _wait(
            world,
            "SELECT body = 'a secret, edited' FROM messages WHERE event_id = $1",
            text.event_id,
            what="the decrypted edit",
        )
        await _wait(
            world,
            "SELECT emoji = '🔥' FROM reactions WHERE reaction_event_id = $1",
            reaction,
            what="the decrypted reaction",
        )

    row = await _row(world, text.event_id)
    assert (row["decryption"], row["message_type"], row["edit_count"]) == ("decrypted", "m.text", 1)
    assert json.loads(row["original_content"])["body"] == "a secret"
    assert json.loads(row["encrypted_content"])["algorithm"] == megolm.ALGORITHM
    assert row["whatsapp_message_id"] == text.wa_message_id
    replied = await _row(world, reply.event_id)
    assert (replied["body"], replied["reply_to_event_id"]) == ("a reply", text.event_id)
    raw = await world.synapse.fetchval("SELECT json FROM event_json WHERE event_id = $1", reaction)
    assert json.loads(raw)["type"] == "m.room.encrypted"
    assert "m.relates_to" not in json.loads(raw)["content"]
    # Reactions and edits are never messages rows of their own, encrypted or not.
    assert await world.archived_count() == 2
    assert "a secret" not in json.dumps(dict(row)["encrypted_content"])


async def test_e2ee__late_session_is_decrypted_by_itself_and_nothing_doubles(world: World) -> None:
    chat = await _encrypted_chat(world)
    async with world.running(**E2EE) as svc:
        sent = await world.sim.send_text(chat, chat.members[0], "key comes later")
        await _wait(
            world,
            "SELECT decryption = 'no_session' FROM messages WHERE event_id = $1",
            sent.event_id,
            what="the message archived as no_session at once",
        )
        row = await _row(world, sent.event_id)
        assert row["message_type"] == "m.room.encrypted"
        assert row["megolm_session_id"] == world.sim.encryptor.session(chat.room_id).session_id

        await _share_session(world, chat)
        await _wait(
            world,
            "SELECT decryption = 'decrypted' FROM messages WHERE event_id = $1",
            sent.event_id,
            what="the late key picked up by the late-key pass",
        )
        assert svc.metrics.decryption_total.labels("decrypted")._value.get() >= 1

    row = await _row(world, sent.event_id)
    assert (row["body"], row["megolm_session_id"]) == ("key comes later", None)
    assert await world.archived_count() == 1


async def test_e2ee__matrix_users_message_without_bridge_row_is_decrypted_by_reconcile(
    world: World,
) -> None:
    """A Matrix user's message the bridge could not decrypt has no message row: it reaches
    the archive through the reconciliation pass, decrypted there."""
    chat = await _encrypted_chat(world)
    user = megolm.Encryptor(msc4392=True)  # another device, with its own session
    content = user.encrypt(chat.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    async with world.running(**E2EE):
        event_id = await world.writer.send_event(
            chat.room_id, world.sim.user_mxid, "m.room.encrypted", content
        )
        await world.wait_archived({event_id}, timeout_s=15)
        assert (await _row(world, event_id))["decryption"] == "no_session"
        await megolm.store_session(world.bridge, user.session(chat.room_id), PICKLE_KEY.encode())
        await _wait(
            world,
            "SELECT body = 'hi' AND decryption = 'decrypted' FROM messages WHERE event_id = $1",
            event_id,
            what="the Matrix user's message decrypted once its session arrived",
        )


async def test_e2ee__withheld_wrong_room_and_bad_key_are_recorded_not_fatal(world: World) -> None:
    chat = await _encrypted_chat(world)
    withheld_by = megolm.Encryptor()
    withheld_content = withheld_by.encrypt(
        chat.room_id, "m.room.message", {"msgtype": "m.text", "body": "no"}
    )
    await megolm.store_withheld(world.bridge, withheld_by.session(chat.room_id), "m.unverified")
    await _share_session(world, chat)
    forged = world.sim.encryptor.encrypt(
        chat.room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "replayed"},
        plaintext_room="!elsewhere:example.org",
    )
    async with world.running(**E2EE):
        withheld = await world.writer.send_event(
            chat.room_id, world.sim.user_mxid, "m.room.encrypted", withheld_content
        )
        moved = await world.writer.send_event(
            chat.room_id, world.sim.user_mxid, "m.room.encrypted", forged
        )
        await world.wait_archived({withheld, moved}, timeout_s=15)
    assert (await _row(world, withheld))["decryption"] == "withheld"
    rejected = await _row(world, moved)
    assert (rejected["decryption"], rejected["decryption_error"]) == ("error", "room_id mismatch")
    assert rejected["body"] is None

    async with world.running(**{**E2EE, "bridge_pickle_key": "not-the-key"}):
        sent = await world.sim.send_text(chat, chat.members[0], "x")
        await world.wait_archived({sent.event_id})
    assert (await _row(world, sent.event_id))["decryption"] == "bad_key"


async def test_session_store__reads_mautrix_go_rows_by_room_and_session(world: World) -> None:
    chat = await _encrypted_chat(world)
    await _share_session(world, chat)
    outbound = world.sim.encryptor.session(chat.room_id)
    store = sessions.SessionStore(world.bridge, account_id="")
    key = (chat.room_id, outbound.session_id)

    found = await store.fetch({key, ("!other:example.org", outbound.session_id)})

    assert set(found) == {key}
    assert found[key].pickle == megolm.libolm_pickle(outbound.session_key, PICKLE_KEY.encode())
    assert await store.present({key}) == {key}
    assert await sessions.SessionStore(world.bridge, account_id="other").fetch({key}) == {}


async def test_doctor_and_status__name_the_key_never_its_value_and_count_statuses(
    world: World,
) -> None:
    chat = await _encrypted_chat(world)
    await _share_session(world, chat)
    async with world.running(**E2EE):
        sent = await world.sim.send_text(chat, chat.members[0], "counted")
        await world.wait_archived({sent.event_id})

    wrong = world.settings(bridge_pickle_key="wrong-key-must-not-show")
    results = await doctor_facts.diagnose(wrong, max_clock_skew_s=60)
    [line] = [r.line() for r in results if r.check == "encrypted rooms"]
    assert line.startswith("FAIL")
    assert "BRIDGE_PICKLE_KEY does not open" in line
    assert all("wrong-key-must-not-show" not in r.line() for r in results)

    right = await doctor_facts.diagnose(world.settings(**E2EE), max_clock_skew_s=60)
    [line] = [r.line() for r in right if r.check == "encrypted rooms"]
    assert line == "OK    encrypted rooms: decrypting (1 decrypted)"

    snap = await status.snapshot(world.archive)
    assert snap.encrypted == {"decrypted": (1, 1)}
    assert "1 messages in encrypted rooms (1 decrypted)" in status.render(
        snap, heartbeat_interval_s=30
    )


async def test_retry_decryption__decrypts_what_waits_once_its_session_is_there(
    world: World,
) -> None:
    chat = await _encrypted_chat(world)
    async with world.running(**E2EE):
        sent = await world.sim.send_text(chat, chat.members[0], "by hand")
        await world.wait_archived({sent.event_id})
    await _share_session(world, chat)
    svc = service.Service(world.settings(**E2EE))
    await svc.open()
    try:
        stats = await svc.retry_decryption()
    finally:
        await svc.close()
    assert (stats.waiting, stats.retried) == (1, 1)
    assert (await _row(world, sent.event_id))["body"] == "by hand"


async def test_e2ee__rotation_two_senders_and_a_deletion_keep_clear_portal_rules(
    world: World,
) -> None:
    chat = await _encrypted_chat(world)
    await _share_session(world, chat)
    async with world.running(**E2EE):
        first = await world.sim.send_text(chat, chat.members[0], "before rotation")
        world.sim.encryptor.rotate(chat.room_id)  # the bridge starts a new outbound session
        await _share_session(world, chat)
        ghost = await world.sim.send_text(chat, chat.members[1], "after rotation")
        typed = await world.sim.send_from_matrix_user(chat, "typed in Matrix")
        await world.wait_archived({first.event_id, ghost.event_id, typed.event_id})
        await world.sim.revoke(first)
        await _wait(
            world,
            "SELECT deleted_at IS NOT NULL FROM messages WHERE event_id = $1",
            first.event_id,
            what="the deletion recorded",
        )

    rows = {
        r["event_id"]: r
        for r in await world.archive.fetch("SELECT * FROM messages ORDER BY event_id")
    }
    assert {e: (r["body"], r["decryption"]) for e, r in rows.items()} == {
        first.event_id: ("before rotation", "decrypted"),
        ghost.event_id: ("after rotation", "decrypted"),
        typed.event_id: ("typed in Matrix", "decrypted"),
    }
    assert rows[typed.event_id]["sender"] == world.sim.user_mxid
    sessions_used = {json.loads(r["encrypted_content"])["session_id"] for r in rows.values()}
    assert len(sessions_used) == 2


async def test_verify__reports_per_room_how_many_archived_messages_are_still_encrypted(
    world: World,
) -> None:
    chat = await _encrypted_chat(world)
    async with world.running(**E2EE):
        sent = await world.sim.send_text(chat, chat.members[0], "no key yet")
        await world.wait_archived({sent.event_id})

    report = await verify.compare(world.settings(), since=None, until=None)

    [room] = [r for r in report.rooms if r.room_id == chat.room_id]
    assert (room.archived, room.encrypted) == (1, 1)
    assert f"still encrypted: 1 archived messages in {chat.room_id}" in verify.render(report)


async def test_e2ee__encrypted_image_is_stored_as_plaintext_once_its_key_arrives(
    world: World, tmp_path: Path
) -> None:
    """The bridge's encrypted-room media: AES-CTR bytes uploaded as octet-stream, the
    EncryptedFile (and so the mxc) only inside the Megolm ciphertext."""
    chat = await _encrypted_chat(world)
    sender = chat.members[0]
    png = simulator.make_png(16, 12, random.Random(3))
    ciphertext, file = test_media.encrypt(png)
    mxc = await world.writer.upload_media(ciphertext, "application/octet-stream", None, sender.mxid)
    content = {
        "msgtype": "m.image",
        "body": "photo.png",
        "file": file | {"url": mxc},
        "info": {"mimetype": "image/png", "size": len(png)},
    }
    wire = world.sim.encryptor.encrypt(chat.room_id, "m.room.message", content)
    async with world.running(**E2EE, media_archive_path=tmp_path / "archive"):
        event_id = await world.writer.send_event(
            chat.room_id, sender.mxid, "m.room.encrypted", wire
        )
        await world.wait_archived({event_id}, timeout_s=15)
        assert await world.archive.fetchval("SELECT count(*) FROM media") == 0
        await _share_session(world, chat)

        async def stored() -> bool:
            status = await world.archive.fetchval(
                "SELECT status FROM media WHERE event_id = $1", event_id
            )
            return status == "stored"

        await wait_until(stored, timeout_s=20, what="the decrypted image stored")
    row = await world.archive.fetchrow("SELECT * FROM media WHERE event_id = $1", event_id)
    assert (row["encrypted"], row["mxc_url"]) == (True, mxc)
    assert (tmp_path / "archive" / row["storage_path"]).read_bytes() == png
    assert (await _row(world, event_id))["message_type"] == "m.image"
