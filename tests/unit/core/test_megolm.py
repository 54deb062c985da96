"""listener.core.megolm: what an m.room.encrypted event carries and what its plaintext must be
(the rules of mautrix-go's crypto/decryptmegolm.go). Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from listener.core import megolm, models

ROOM = "!enc:example.org"
OTHER_ROOM = "!other:example.org"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}}, "not m.megolm"),
        (
            {"algorithm": megolm.MEGOLM_V1, "session_id": "short", "ciphertext": "A" * 80},
            "session_id",
        ),
        ({"algorithm": megolm.MEGOLM_V1, "session_id": "S" * 43, "ciphertext": "AA"}, "ciphertext"),
    ],
)
def test_parse__rejects_what_mautrix_go_rejects(content: dict[str, Any], reason: str) -> None:
    with pytest.raises(megolm.Undecryptable, match=reason):
        megolm.parse(content)


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not an object"),
        (
            json.dumps({"room_id": OTHER_ROOM, "type": "m.room.message", "content": {}}).encode(),
            "room_id",
        ),
        (json.dumps({"room_id": ROOM, "type": "m.room.encrypted", "content": {}}).encode(), "type"),
        (
            json.dumps({"room_id": ROOM, "type": "m.room.message", "content": []}).encode(),
            "content",
        ),
    ],
)
def test_plaintext_event__rejects_unusable_payloads(plaintext: bytes, reason: str) -> None:
    with pytest.raises(megolm.Undecryptable, match=reason):
        megolm.plaintext_event(plaintext, room_id=ROOM, cleartext_relation=None)


def test_plaintext_event__copies_the_cleartext_relation_only_when_the_plaintext_has_none() -> None:
    thread = {"rel_type": "m.thread", "event_id": "$root"}
    inner = {"rel_type": "m.replace", "event_id": "$orig"}
    bare = json.dumps({"room_id": ROOM, "type": "m.room.message", "content": {"body": "x"}})
    own = json.dumps(
        {"room_id": ROOM, "type": "m.room.message", "content": {"m.relates_to": inner}}
    )

    _t, copied = megolm.plaintext_event(bare.encode(), room_id=ROOM, cleartext_relation=thread)
    _t, kept = megolm.plaintext_event(own.encode(), room_id=ROOM, cleartext_relation=thread)

    assert copied["m.relates_to"] == thread
    assert kept["m.relates_to"] == inner


def _event(
    status: str | None, *, session: str = "S0", edits: tuple[models.SynapseEvent, ...] = ()
) -> models.SynapseEvent:
    encrypted = json.dumps({"session_id": session})
    outcome = models.Decryption(status, encrypted, session) if status else None
    return models.SynapseEvent(
        event_id=f"${session}",
        room_id=ROOM,
        event_type="m.room.message",
        sender="@a:example.org",
        origin_server_ts_ms=0,
        stream_ordering=0,
        json_text="{}",
        outlier=False,
        rejection_reason=None,
        edits=edits,
        decryption=outcome,
    )


def test_message_fields__clear_events_have_none() -> None:
    assert megolm.message_fields(_event(None)) == {}


def test_message_fields__a_decrypted_message_waits_for_its_edits_session() -> None:
    edit = _event("no_session", session="S1")
    fields = megolm.message_fields(_event("decrypted", edits=(edit,)))
    assert (fields["decryption"], fields["megolm_session_id"]) == ("no_session", "S1")
    assert json.loads(fields["encrypted_content_json"])["session_id"] == "S0"


def test_message_fields__decrypted_names_no_session() -> None:
    fields = megolm.message_fields(_event("decrypted", edits=(_event("decrypted", session="S1"),)))
    assert (fields["decryption"], fields["megolm_session_id"]) == ("decrypted", None)
