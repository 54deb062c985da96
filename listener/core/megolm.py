"""Megolm-encrypted events (``m.room.encrypted``): what they carry, what their plaintext must be,
and the event the archive shows once decrypted. Pure: the cryptography lives in ``e2ee/``.

Facts from mautrix-go (the bridge's own decryptor, ``crypto/decryptmegolm.go``):
- the plaintext is ``{"room_id", "type", "content"}`` and must name the event's room, else the
  event is rejected (``ErrWrongRoom``);
- ``m.relates_to`` stays in the clear so the homeserver can aggregate; when the plaintext
  content lacks it, the cleartext one is copied in. With MSC4392 (``crypto/encryptmegolm.go``)
  the reply (``m.in_reply_to``) and a reaction's whole relation live only in the plaintext.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from listener.core import models, textsafe

ENCRYPTED = "m.room.encrypted"
MEGOLM_V1 = "m.megolm.v1.aes-sha2"
# mautrix-go rejects shorter ones as corrupted (crypto/decryptmegolm.go).
_SESSION_ID_LENGTH = 43
_MIN_CIPHERTEXT_LENGTH = 74


class Status(enum.StrEnum):
    """``messages.decryption`` (sql/archive/0006_e2ee.sql)."""

    DECRYPTED = "decrypted"
    NO_SESSION = "no_session"  # not (yet) in the bridge's store: retried when it arrives
    WITHHELD = "withheld"  # the sender refused the key, or the bridge redacted the session
    BAD_KEY = "bad_key"  # the stored session does not open with BRIDGE_PICKLE_KEY
    ERROR = "error"  # malformed ciphertext or plaintext, wrong room, bad signature


class Undecryptable(ValueError):
    """The event or its plaintext cannot be used; the message says why, without key material."""


@dataclasses.dataclass(frozen=True, slots=True)
class Encrypted:
    """The parts of an ``m.room.encrypted`` content that decryption needs."""

    session_id: str
    ciphertext: str
    relates_to: dict[str, Any] | None


def parse(content: dict[str, Any]) -> Encrypted:
    """The Megolm fields of an ``m.room.encrypted`` content; raise Undecryptable otherwise."""
    if content.get("algorithm") != MEGOLM_V1:
        raise Undecryptable("not m.megolm.v1.aes-sha2")
    session_id = content.get("session_id")
    ciphertext = content.get("ciphertext")
    if not isinstance(session_id, str) or len(session_id) != _SESSION_ID_LENGTH:
        raise Undecryptable("invalid session_id")
    if not isinstance(ciphertext, str) or len(ciphertext) < _MIN_CIPHERTEXT_LENGTH:
        raise Undecryptable("invalid ciphertext")
    relation = content.get("m.relates_to")
    return Encrypted(session_id, ciphertext, relation if isinstance(relation, dict) else None)


def session_id_of(content: dict[str, Any]) -> str | None:
    session_id = content.get("session_id")
    return session_id if isinstance(session_id, str) else None


def plaintext_event(
    plaintext: bytes, *, room_id: str, cleartext_relation: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """``(type, content)`` of a decrypted payload; raise Undecryptable when it is unusable."""
    try:
        payload = json.loads(plaintext)
    except (ValueError, RecursionError):
        raise Undecryptable("plaintext is not JSON") from None
    if not isinstance(payload, dict):
        raise Undecryptable("plaintext is not an object")
    if payload.get("room_id") != room_id:
        raise Undecryptable("room_id mismatch")
    event_type = payload.get("type")
    content = payload.get("content")
    if not isinstance(event_type, str) or not event_type or event_type == ENCRYPTED:
        raise Undecryptable("plaintext has no usable type")
    if not isinstance(content, dict):
        raise Undecryptable("plaintext content is not an object")
    if cleartext_relation is not None and not isinstance(content.get("m.relates_to"), dict):
        content = {**content, "m.relates_to": cleartext_relation}
    return event_type, content


def decrypted(
    event: models.SynapseEvent, pdu: dict[str, Any], event_type: str, content: dict[str, Any]
) -> models.SynapseEvent:
    """``event`` as if it had been sent in the clear, its ciphertext kept on the side."""
    encrypted = _content(pdu)
    json_text, _raw = textsafe.storable_json({**pdu, "type": event_type, "content": content})
    return dataclasses.replace(
        event,
        event_type=event_type,
        json_text=json_text or event.json_text,
        decryption=models.Decryption(
            Status.DECRYPTED, _encrypted_json(encrypted), session_id_of(encrypted)
        ),
    )


def failed(
    event: models.SynapseEvent, pdu: dict[str, Any], status: Status, error: str | None
) -> models.SynapseEvent:
    """``event`` unchanged (still ciphertext), with why it could not be decrypted."""
    encrypted = _content(pdu)
    return dataclasses.replace(
        event,
        decryption=models.Decryption(
            status, _encrypted_json(encrypted), session_id_of(encrypted), error
        ),
    )


def _content(pdu: dict[str, Any]) -> dict[str, Any]:
    content = pdu.get("content")
    return content if isinstance(content, dict) else {}


def _encrypted_json(content: dict[str, Any]) -> str:
    text, _raw = textsafe.storable_json(content)
    return text or "{}"


def message_fields(event: models.SynapseEvent) -> dict[str, Any]:
    """The ``messages`` decryption columns for ``event`` and its edits.

    The message's own outcome, unless it decrypted and one of its sender's edits did not: then
    that edit's, so the row waits for the edit's session (it may arrive late) too.
    """
    own = event.decryption
    if own is None:
        return {}
    shown = own
    if own.status == Status.DECRYPTED:
        for edit in event.edits:
            outcome = edit.decryption
            if edit.sender == event.sender and outcome and outcome.status != Status.DECRYPTED:
                shown = outcome
                break
    failing = shown.status != Status.DECRYPTED
    return {
        "decryption": shown.status,
        "encrypted_content_json": own.encrypted_content_json,
        "megolm_session_id": shown.session_id if failing else None,
        "decryption_error": shown.error if failing else None,
    }
