"""listener.e2ee.decryptor with real Megolm: events encrypted by vodozemac's outbound sessions,
inbound sessions stored as libolm pickles (the format mautrix-go writes), archived through the
same enrichment as clear events."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import pytest

from listener.core import enrich, models
from listener.e2ee import decryptor, sessions
from listener.sim import megolm as sim_megolm

ROOM = "!enc:example.org"
OTHER_ROOM = "!other:example.org"
SENDER = "@whatsapp_4915112345678:example.org"
KEY = b"bridge-pickle-key-from-config.yaml"


class FakeSessions:
    """The bridge's crypto_megolm_inbound_session, in memory (same protocol as SessionStore)."""

    def __init__(self) -> None:
        self.rows: dict[sessions.SessionKey, sessions.StoredSession] = {}
        self.fetches = 0

    def put(self, outbound: sim_megolm.OutboundSession, key: bytes = KEY) -> None:
        pickle = sim_megolm.libolm_pickle(outbound.session_key, key)
        self.rows[(outbound.room_id, outbound.session_id)] = sessions.StoredSession(pickle, None)

    async def fetch(
        self, keys: Collection[sessions.SessionKey]
    ) -> dict[sessions.SessionKey, sessions.StoredSession]:
        self.fetches += 1
        return {k: self.rows[k] for k in keys if k in self.rows}


def _event(
    encryptor: sim_megolm.Encryptor,
    event_type: str,
    content: dict[str, Any],
    *,
    event_id: str = "$e1",
    plaintext_room: str = "",
    edits: tuple[models.SynapseEvent, ...] = (),
) -> models.SynapseEvent:
    encrypted = encryptor.encrypt(ROOM, event_type, content, plaintext_room=plaintext_room)
    pdu = {"type": "m.room.encrypted", "room_id": ROOM, "sender": SENDER, "content": encrypted}
    return models.SynapseEvent(
        event_id=event_id,
        room_id=ROOM,
        event_type="m.room.encrypted",
        sender=SENDER,
        origin_server_ts_ms=1_700_000_000_000,
        stream_ordering=1,
        json_text=json.dumps(pdu),
        outlier=False,
        rejection_reason=None,
        edits=edits,
    )


async def _decrypt(
    store: FakeSessions, *events: models.SynapseEvent, key: bytes = KEY
) -> list[models.SynapseEvent]:
    d = decryptor.Decryptor(store, pickle_key=key, cache_size=8)
    return await d.decrypt_events(events)


def _archived(event: models.SynapseEvent) -> models.ArchivedMessage:
    return enrich.from_synapse_only(event, None, None)


async def test_decrypt__text_is_archived_as_its_plaintext_with_the_ciphertext_kept() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "secret hello"})
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, event)
    record = _archived(shown)

    assert (record.message_type, record.body, record.decryption) == (
        "m.text",
        "secret hello",
        "decrypted",
    )
    assert record.megolm_session_id is None
    assert (
        json.loads(record.encrypted_content_json or "")["session_id"]
        == enc.session(ROOM).session_id
    )
    assert "secret hello" not in (record.encrypted_content_json or "")


@pytest.mark.parametrize("msc4392", [False, True])
async def test_decrypt__reply_survives_a_sealed_relation(msc4392: bool) -> None:
    enc, store = sim_megolm.Encryptor(msc4392=msc4392), FakeSessions()
    content = {
        "msgtype": "m.text",
        "body": "> quoted\n\nanswer",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$original"}},
    }
    event = _event(enc, "m.room.message", content)
    store.put(enc.session(ROOM))
    cleartext = json.loads(event.json_text)["content"]
    assert ("m.relates_to" in cleartext) is not msc4392

    [shown] = await _decrypt(store, event)

    assert _archived(shown).reply_to_event_id == "$original"


async def test_decrypt__thread_relation_kept_in_the_clear_is_copied_into_the_plaintext() -> None:
    """mautrix-go's decryptor copies the cleartext m.relates_to when the plaintext lacks it."""
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "in thread"})
    pdu = json.loads(event.json_text)
    pdu["content"]["m.relates_to"] = {"rel_type": "m.thread", "event_id": "$root"}
    event = models.SynapseEvent(**{**_fields(event), "json_text": json.dumps(pdu)})
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, event)

    assert _archived(shown).thread_root_event_id == "$root"


async def test_decrypt__sealed_reaction_becomes_an_m_reaction_with_its_key() -> None:
    enc, store = sim_megolm.Encryptor(msc4392=True), FakeSessions()
    relation = {"rel_type": "m.annotation", "event_id": "$target", "key": "👍"}
    event = _event(enc, "m.reaction", {"m.relates_to": relation})
    store.put(enc.session(ROOM))
    assert "m.relates_to" not in json.loads(event.json_text)["content"]

    [shown] = await _decrypt(store, event)
    reaction = enrich.reaction(shown)

    assert shown.event_type == "m.reaction"
    assert reaction is not None
    assert (reaction.message_event_id, reaction.emoji) == ("$target", "👍")


async def test_decrypt__edit_chain_shows_the_latest_new_content() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    edits = tuple(
        _event(
            enc,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": f"* v{n}",
                "m.new_content": {"msgtype": "m.text", "body": f"v{n}"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$e1"},
            },
            event_id=f"$edit{n}",
        )
        for n in (1, 2)
    )
    edits = tuple(
        models.SynapseEvent(**{**_fields(e), "origin_server_ts_ms": 1_700_000_000_000 + n})
        for n, e in enumerate(edits, start=1)
    )
    original = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "v0"}, edits=edits)
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, original)
    record = _archived(shown)

    assert (record.body, record.edit_count, record.latest_edit_event_id) == ("v2", 2, "$edit2")
    assert json.loads(record.original_content_json or "")["body"] == "v0"


async def test_decrypt__image_keeps_its_encrypted_file() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    file = {
        "url": "mxc://example.org/abcdefghijklmnopqrstuvwx",
        "key": {"kty": "oct", "alg": "A256CTR", "k": "A" * 43, "ext": True, "key_ops": ["decrypt"]},
        "iv": "AAAAAAAAAAAAAAAAAAAAAA",
        "hashes": {"sha256": "B" * 43},
        "v": "v2",
    }
    content = {"msgtype": "m.image", "body": "photo.jpg", "file": file, "info": {"size": 3}}
    event = _event(enc, "m.room.message", content)
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, event)
    record = _archived(shown)

    assert record.message_type == "m.image"
    assert json.loads(record.content_json or "")["file"]["url"] == file["url"]


async def test_decrypt__session_rotation_uses_each_session() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    first = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "one"}, event_id="$1")
    store.put(enc.session(ROOM))
    enc.rotate(ROOM)
    second = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "two"}, event_id="$2")
    store.put(enc.session(ROOM))

    shown = await _decrypt(store, first, second)

    assert [_archived(e).body for e in shown] == ["one", "two"]


async def test_decrypt__missing_session_is_no_session_then_decrypts_once_it_arrives() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "late key"})
    d = decryptor.Decryptor(store, pickle_key=KEY, cache_size=8)

    [before] = await d.decrypt_events([event])
    record = _archived(before)
    assert (record.decryption, record.message_type) == ("no_session", "m.room.encrypted")
    assert record.megolm_session_id == enc.session(ROOM).session_id

    store.put(enc.session(ROOM))
    [after] = await d.decrypt_events([event])
    assert (_archived(after).decryption, _archived(after).body) == ("decrypted", "late key")


async def test_decrypt__wrong_pickle_key_is_bad_key_and_never_shows_the_key() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "x"})
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, event, key=b"not-the-bridge-key")
    record = _archived(shown)

    assert record.decryption == "bad_key"
    assert "not-the-bridge-key" not in repr(record)


async def test_decrypt__damaged_pickle_is_an_error_once_the_key_opened_another() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    good = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "ok"}, event_id="$ok")
    store.put(enc.session(ROOM))
    enc.rotate(ROOM)
    bad = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "x"}, event_id="$bad")
    pickle = sim_megolm.libolm_pickle(enc.session(ROOM).session_key, KEY)
    flipped = pickle[:20] + ("A" if pickle[20] != "A" else "B") + pickle[21:]
    store.rows[(ROOM, enc.session(ROOM).session_id)] = sessions.StoredSession(flipped, None)
    unreadable = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "y"}, event_id="$u")

    shown = await _decrypt(store, good, bad, unreadable)

    assert [e.decryption.status for e in shown if e.decryption] == ["decrypted", "error", "error"]


async def test_decrypt__withheld_session_is_withheld() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "x"})
    key = (ROOM, enc.session(ROOM).session_id)
    store.rows[key] = sessions.StoredSession(None, "m.unverified")

    [shown] = await _decrypt(store, event)

    assert shown.decryption is not None
    assert (shown.decryption.status, shown.decryption.error) == (
        "withheld",
        "withheld: m.unverified",
    )


async def test_decrypt__plaintext_naming_another_room_is_rejected() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(
        enc, "m.room.message", {"msgtype": "m.text", "body": "moved"}, plaintext_room=OTHER_ROOM
    )
    store.put(enc.session(ROOM))

    [shown] = await _decrypt(store, event)
    record = _archived(shown)

    assert (record.decryption, record.decryption_error) == ("error", "room_id mismatch")
    assert record.message_type == "m.room.encrypted"
    assert record.body is None


async def test_decrypt__index_before_the_stored_sessions_first_is_no_session() -> None:
    """The bridge holds the session from a later index (a forwarded key, or ratchet on
    decrypt): earlier messages wait for a better copy."""
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    early = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "early"}, event_id="$0")
    later_key = enc.session(ROOM).session.session_key.to_base64()  # now at index 1
    late = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "late"}, event_id="$1")
    pickle = sim_megolm.libolm_pickle(later_key, KEY)
    store.rows[(ROOM, enc.session(ROOM).session_id)] = sessions.StoredSession(pickle, None)

    shown = await _decrypt(store, early, late)

    assert [_archived(e).decryption for e in shown] == ["no_session", "decrypted"]


async def test_decrypt__sessions_are_cached_and_the_cache_is_bounded() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    d = decryptor.Decryptor(store, pickle_key=KEY, cache_size=2)
    events = []
    for n in range(3):
        enc.rotate(ROOM)
        content = {"msgtype": "m.text", "body": f"{n}"}
        events.append(_event(enc, "m.room.message", content, event_id=f"${n}"))
        store.put(enc.session(ROOM))

    await d.decrypt_events(events)
    fetches = store.fetches
    again = await d.decrypt_events(events[-2:])

    assert d.cached_sessions == 2
    assert store.fetches == fetches + 1  # the query carries no session: all were cached
    assert [_archived(e).body for e in again] == ["1", "2"]


async def test_decrypt__clear_and_pruned_events_pass_unchanged() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    event = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "x"})
    pruned = models.SynapseEvent(
        **{**_fields(event), "json_text": json.dumps({"type": "m.room.encrypted", "content": {}})}
    )
    clear = models.SynapseEvent(
        **{**_fields(event), "event_type": "m.room.message", "event_id": "$clear"}
    )

    shown = await _decrypt(store, pruned, clear)

    assert shown == [pruned, clear]


def _fields(event: models.SynapseEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in models.SynapseEvent.__dataclass_fields__}


async def test_decrypt__a_better_session_replaces_a_cached_one_that_starts_too_late() -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    early = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "early"}, event_id="$0")
    later_key = enc.session(ROOM).session.session_key.to_base64()
    late = _event(enc, "m.room.message", {"msgtype": "m.text", "body": "late"}, event_id="$1")
    key = (ROOM, enc.session(ROOM).session_id)
    store.rows[key] = sessions.StoredSession(sim_megolm.libolm_pickle(later_key, KEY), None)
    d = decryptor.Decryptor(store, pickle_key=KEY, cache_size=8)
    await d.decrypt_events([late])  # caches the session that starts at index 1

    store.put(enc.session(ROOM))  # the bridge stores a copy from index 0 (e.g. key backup)
    [first] = await d.decrypt_events([early])
    [again] = await d.decrypt_events([early])

    assert first.decryption is not None
    assert first.decryption.status == "no_session"
    assert _archived(again).body == "early"


async def test_decrypt__bad_key_is_logged_once_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    enc, store = sim_megolm.Encryptor(), FakeSessions()
    events = [
        _event(enc, "m.room.message", {"msgtype": "m.text", "body": "x"}, event_id=f"${n}")
        for n in range(3)
    ]
    store.put(enc.session(ROOM))
    d = decryptor.Decryptor(store, pickle_key=b"wrong-key-value", cache_size=8)

    await d.decrypt_events(events)
    await d.decrypt_events(events)

    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "BRIDGE_PICKLE_KEY" in errors[0].getMessage()
    assert "wrong-key-value" not in caplog.text
